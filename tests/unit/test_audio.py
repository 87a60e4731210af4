"""Tests for speechmesh.dsp.audio: decoding, streaming decoding and encoding."""

from __future__ import annotations

import csv
import io
import struct
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from speechmesh.dsp.audio import (
    OUTPUT_ENCODINGS,
    AudioError,
    RawFormat,
    StreamDecoder,
    content_type,
    decode_audio,
    encode_audio,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_AUDIO = REPO_ROOT.parent / "shared" / "audio"


def sine(freq: float = 440.0, rate: int = 16000, seconds: float = 1.0, amp: float = 0.5):
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def flac_bytes(samples: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="FLAC")
    return buf.getvalue()


# Reference G.711 compressors (ITU-T G.711 as in Sun's g711.c), int16 sample -> byte.
def _segment(value: int, ends: tuple[int, ...]) -> int:
    return next((i for i, end in enumerate(ends) if value <= end), len(ends))


def mulaw_compress(pcm: int) -> int:
    pcm >>= 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _segment(pcm, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def alaw_compress(pcm: int) -> int:
    pcm >>= 3
    mask = 0xD5
    if pcm < 0:
        pcm, mask = -pcm - 1, 0x55
    seg = _segment(pcm, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (1 if seg < 2 else seg)) & 0xF)) ^ mask


COMPRESSORS = {"mulaw": mulaw_compress, "alaw": alaw_compress}


# --- decoding containers -------------------------------------------------------------------


@pytest.mark.parametrize("encoding", OUTPUT_ENCODINGS)
def test_encode_decode_round_trip(encoding: str) -> None:
    data = encode_audio(sine(rate=24000), 24000, encoding)
    raw = RawFormat("linear16", 24000) if encoding == "pcm" else None
    audio = decode_audio(data, raw)
    assert audio.sample_rate == 16000
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(1.0, abs=0.03)
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(440, abs=5)
    assert audio.source_sample_rate == (48000 if encoding == "ogg_opus" else 24000)
    assert audio.source_channels == 1


def test_encode_resamples_to_output_rate() -> None:
    data = encode_audio(sine(rate=24000), 24000, "wav", output_rate=16000)
    audio = decode_audio(data, target_rate=None)
    assert audio.sample_rate == audio.source_sample_rate == 16000
    assert len(audio.samples) == 16000


def test_encode_rejects_bad_requests() -> None:
    with pytest.raises(AudioError, match="encoding"):
        encode_audio(sine(), 16000, "aac")
    with pytest.raises(AudioError, match="mp3"):
        encode_audio(sine(), 16000, "mp3", output_rate=96000)
    with pytest.raises(AudioError, match="sample_rate_hertz"):
        encode_audio(sine(), 16000, "wav", output_rate=1000)
    with pytest.raises(AudioError, match="no samples"):
        encode_audio(np.zeros(0, np.float32), 16000, "mp3")


def test_content_types() -> None:
    assert [content_type(e) for e in OUTPUT_ENCODINGS] == [
        "audio/wav",
        "audio/flac",
        "audio/ogg",
        "audio/mpeg",
        "audio/L16",
    ]
    with pytest.raises(AudioError):
        content_type("aac")


def test_stereo_file_is_mixed_down() -> None:
    stereo = np.stack([sine(amp=0.5), np.full(16000, 0.25, np.float32)], axis=1)
    audio = decode_audio(wav_bytes(stereo, 16000))
    assert audio.source_channels == 2
    np.testing.assert_allclose(audio.samples, (stereo[:, 0] + 0.25) / 2, atol=1e-4)


def test_resampling_44100_to_16000() -> None:
    audio = decode_audio(flac_bytes(sine(rate=44100), 44100))
    assert audio.source_sample_rate == 44100
    assert abs(len(audio.samples) - 16000) <= 1
    assert dominant_frequency(audio.samples, 16000) == pytest.approx(440, abs=2)
    assert np.abs(audio.samples).max() <= 1.0


def test_target_rate_none_keeps_source_rate() -> None:
    audio = decode_audio(wav_bytes(sine(rate=22050), 22050), target_rate=None)
    assert audio.sample_rate == 22050 and len(audio.samples) == 22050


def test_wav_header_claiming_more_data_decodes_what_is_there() -> None:
    data = wav_bytes(sine(), 16000)[: 44 + 2 * 100]
    assert len(decode_audio(data, target_rate=None).samples) == 100


# --- raw samples ---------------------------------------------------------------------------


def test_raw_linear16_and_float32() -> None:
    values = np.array([0, 16384, -32768, 32767], dtype="<i2")
    audio = decode_audio(values.tobytes(), RawFormat("linear16", 16000))
    np.testing.assert_array_equal(audio.samples, [0.0, 0.5, -1.0, 32767 / 32768])
    floats = np.array([0.25, -0.5, 1.5], dtype="<f4")
    audio = decode_audio(floats.tobytes(), RawFormat("float32", 16000))
    np.testing.assert_array_equal(audio.samples, [0.25, -0.5, 1.0])  # clipped


def test_raw_stereo_is_averaged() -> None:
    frames = np.array([[16384, -8192], [-32768, 0]], dtype="<i2")  # interleaved L, R
    audio = decode_audio(frames.tobytes(), RawFormat("linear16", 8000, channels=2), None)
    np.testing.assert_array_equal(audio.samples, [0.125, -0.5])
    assert audio.source_channels == 2


@pytest.mark.parametrize(
    ("encoding", "byte", "value"),
    [
        ("mulaw", 0xFF, 0),
        ("mulaw", 0x7F, 0),
        ("mulaw", 0x00, -32124),
        ("mulaw", 0x80, 32124),
        ("alaw", 0xD5, 8),
        ("alaw", 0x55, -8),
        ("alaw", 0xAA, 32256),
        ("alaw", 0x2A, -32256),
    ],
)
def test_g711_known_values(encoding: str, byte: int, value: int) -> None:
    audio = decode_audio(bytes([byte]), RawFormat(encoding, 8000), target_rate=None)
    assert audio.samples.tolist() == [value / 32768]


@pytest.mark.parametrize("encoding", ["mulaw", "alaw"])
def test_g711_matches_reference_compressor(encoding: str) -> None:
    compress = COMPRESSORS[encoding]
    every_byte = bytes(range(256))
    expanded = decode_audio(every_byte, RawFormat(encoding, 8000), None).samples
    recompressed = [compress(round(v * 32768)) for v in expanded]
    negative_zero = {0x7F} if encoding == "mulaw" else set()  # mu-law -0 compresses to +0
    assert [b for b, r in zip(every_byte, recompressed, strict=True) if b != r] == [*negative_zero]

    x = sine(rate=8000)
    data = bytes(compress(round(v * 32767)) for v in x)
    audio = decode_audio(data, RawFormat(encoding, 8000), None)
    np.testing.assert_allclose(audio.samples, x, atol=0.016)  # half the largest step at 0.5


# --- errors --------------------------------------------------------------------------------


def test_empty_audio() -> None:
    with pytest.raises(AudioError, match="empty"):
        decode_audio(b"")


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, int(rng.integers(1, 20000)), dtype=np.uint8).tobytes()
    with pytest.raises(AudioError, match="not a supported container"):
        decode_audio(data)


@pytest.mark.parametrize("length", [4, 20, 30])
def test_truncated_wav_header(length: int) -> None:
    with pytest.raises(AudioError, match="could not decode"):
        decode_audio(wav_bytes(sine(), 16000)[:length])


def test_wav_without_samples() -> None:
    with pytest.raises(AudioError, match="no samples"):
        decode_audio(wav_bytes(sine(), 16000)[:44])


@pytest.mark.parametrize("fraction", [0.01, 0.5])
def test_truncated_flac(fraction: float) -> None:
    data = flac_bytes(sine(), 16000)
    with pytest.raises(AudioError):
        decode_audio(data[: int(len(data) * fraction)])


def test_file_without_audio_stream() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuvj420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(AudioError, match="no audio stream"):
        decode_audio(buf.getvalue())


@pytest.mark.parametrize(
    ("data", "raw"),
    [
        (b"\x00" * 3, RawFormat("linear16", 16000)),
        (b"\x00" * 6, RawFormat("linear16", 16000, channels=2)),
        (b"\x00" * 6, RawFormat("float32", 16000)),
    ],
)
def test_raw_bad_byte_count(data: bytes, raw: RawFormat) -> None:
    with pytest.raises(AudioError, match="multiple of"):
        decode_audio(data, raw)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (RawFormat("linear16", 4000), "sample_rate_hertz"),
        (RawFormat("linear16", 384000), "sample_rate_hertz"),
        (RawFormat("linear16", 16000, channels=0), "channel_count"),
        (RawFormat("linear16", 16000, channels=9), "channel_count"),
        (RawFormat("pcm24", 16000), "encoding"),
    ],
)
def test_raw_bad_format(raw: RawFormat, field: str) -> None:
    with pytest.raises(AudioError, match=field):
        decode_audio(b"\x00" * 72, raw)
    with pytest.raises(AudioError, match=field):
        StreamDecoder(raw)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float32_not_finite(bad: float) -> None:
    data = np.array([0.0, bad], dtype="<f4").tobytes()
    with pytest.raises(AudioError, match="NaN"):
        decode_audio(data, RawFormat("float32", 16000))
    with pytest.raises(AudioError, match="NaN"):
        StreamDecoder(RawFormat("float32", 16000)).feed(data)


# --- streaming -----------------------------------------------------------------------------


def feed_in_chunks(decoder: StreamDecoder, data: bytes, size: int) -> np.ndarray:
    out = [decoder.feed(data[i : i + size]) for i in range(0, len(data), size)]
    return np.concatenate([*out, decoder.flush()])


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "ULAW", "ALAW"])
@pytest.mark.parametrize("chunk", [1, 7, 100, 3200])
def test_stream_wav_matches_whole_file(subtype: str, chunk: int) -> None:
    data = wav_bytes(sine(rate=44100, seconds=0.3), 44100, subtype)
    decoder = StreamDecoder(None)
    streamed = feed_in_chunks(decoder, data, chunk)
    whole = decode_audio(data).samples
    assert streamed.dtype == np.float32
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-4)
    assert decoder.samples_in == round(44100 * 0.3)
    assert decoder.format == RawFormat(
        {"PCM_16": "linear16", "FLOAT": "float32", "ULAW": "mulaw", "ALAW": "alaw"}[subtype],
        44100,
    )


def wav_with_extra_chunks(pcm: bytes, data_size: int) -> bytes:
    """16 kHz mono 16-bit WAV with an odd-sized LIST chunk before and a chunk after the data."""
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = (
        b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"LIST" + struct.pack("<I", 5) + b"INFOx\x00"  # odd size + pad byte
        + b"data" + struct.pack("<I", data_size) + pcm
        + b"junk" + struct.pack("<I", 4) + b"\x7f\x7f\x7f\x7f"
    )  # fmt: skip
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_stream_wav_skips_other_chunks(chunk: int) -> None:
    pcm = (sine(seconds=0.05) * 32767).astype("<i2").tobytes()
    streamed = feed_in_chunks(StreamDecoder(None), wav_with_extra_chunks(pcm, len(pcm)), chunk)
    expected = decode_audio(pcm, RawFormat("linear16", 16000)).samples
    np.testing.assert_array_equal(streamed, expected)


def test_stream_wav_with_unknown_data_size_reads_to_the_end() -> None:
    pcm = (sine(seconds=0.05) * 32767).astype("<i2").tobytes()
    streamed = feed_in_chunks(StreamDecoder(None), wav_with_extra_chunks(pcm, 0xFFFFFFFF), 100)
    assert len(streamed) == (len(pcm) + 12) // 2  # the trailing 12-byte chunk is read as samples


def test_stream_raw_linear16_odd_chunks() -> None:
    x = sine(rate=8000, seconds=0.5)
    data = (x * 32767).astype("<i2").tobytes()
    raw = RawFormat("linear16", 8000)
    decoder = StreamDecoder(raw)
    streamed = feed_in_chunks(decoder, data, 333)
    whole = decode_audio(data, raw).samples
    assert decoder.samples_in == len(x)
    assert len(streamed) == len(whole) == 8000
    np.testing.assert_allclose(streamed, whole, atol=1e-4)


def test_stream_raw_at_target_rate_passes_through() -> None:
    data = np.array([16384, -16384, 0], dtype="<i2").tobytes()
    decoder = StreamDecoder(RawFormat("linear16", 16000))
    assert decoder.feed(data[:3]).tolist() == [0.5]
    assert decoder.feed(data[3:]).tolist() == [-0.5, 0.0]
    assert decoder.flush().size == 0


@pytest.mark.parametrize("first", [b"fLaC\x00\x00\x00\x22", b"ID3\x04", b"OggS"])
def test_stream_without_encoding_requires_wav(first: bytes) -> None:
    with pytest.raises(AudioError, match="WAV"):
        StreamDecoder(None).feed(first)


def test_stream_rejects_unsupported_wav() -> None:
    data = wav_bytes(sine(), 16000, "PCM_24")
    with pytest.raises(AudioError, match="unsupported WAV sample format"):
        StreamDecoder(None).feed(data)


def test_stream_ending_inside_wav_header() -> None:
    decoder = StreamDecoder(None)
    assert decoder.feed(wav_bytes(sine(), 16000)[:30]).size == 0
    with pytest.raises(AudioError, match="WAV header"):
        decoder.flush()


# --- real recordings -----------------------------------------------------------------------


def manifest() -> dict[str, dict[str, str]]:
    with open(SHARED_AUDIO / "MANIFEST.tsv", newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f, delimiter="\t")}


@pytest.mark.parametrize(
    "path",
    [
        "fw/jfk.flac",
        "fw/hotwords.mp3",
        "fw/stereo_diarization.wav",
        "sr/french.aiff",
        "sr/chinese.flac",
        *(f"librivox/sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890)),
        *(f"librivox/sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (920, 930)),
    ],
)
@pytest.mark.real_weights
@pytest.mark.skipif(not SHARED_AUDIO.is_dir(), reason=f"{SHARED_AUDIO} is absent")
def test_real_recordings(path: str) -> None:
    row = manifest()[path]
    audio = decode_audio((SHARED_AUDIO / path).read_bytes())
    assert audio.duration == pytest.approx(float(row["seconds"]), abs=0.1)
    assert audio.source_sample_rate == int(row["sample_rate"])
    assert audio.source_channels == int(row["channels"])
    assert audio.sample_rate == 16000
    assert 0 < np.abs(audio.samples).max() <= 1.0
