import struct

import numpy as np
import pytest

from speechmesh.dsp.audio import AudioError, decode_audio, encode_audio
from speechmesh.dsp.stream_encoder import StreamEncoder

RATE = 24000


def _tone(seconds: float = 2.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _stream(encoder: StreamEncoder, samples: np.ndarray, chunk: int = 2400) -> list[bytes]:
    parts = [encoder.encode(samples[i : i + chunk]) for i in range(0, len(samples), chunk)]
    return [*parts, encoder.finish()]


@pytest.mark.parametrize(
    ("encoding", "output_rate", "rate"),
    [
        ("wav", None, RATE),
        ("wav", 16000, 16000),
        ("flac", None, RATE),
        ("ogg_opus", None, 48000),
        ("mp3", None, RATE),
        ("mp3", 44100, 44100),
    ],
)
def test_chunks_concatenate_to_one_recording(encoding, output_rate, rate):
    samples = _tone()
    parts = _stream(StreamEncoder(RATE, encoding, output_rate), samples)
    # Audio leaves with the chunks, not all at the end.
    assert sum(1 for p in parts[:-1] if p) >= len(parts) // 2
    audio = decode_audio(b"".join(parts), None, None)
    assert audio.sample_rate == rate
    assert audio.duration == pytest.approx(2.0, abs=0.08)  # mp3 pads a frame or two
    # The same sound: a 220 Hz tone at its level.
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert np.fft.rfftfreq(len(audio.samples), 1 / rate)[np.argmax(spectrum)] == pytest.approx(
        220, abs=2
    )
    assert np.sqrt(np.mean(audio.samples**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


def test_wav_header_states_unknown_length_and_data_matches_one_shot():
    samples = _tone()
    data = b"".join(_stream(StreamEncoder(RATE, "wav"), samples))
    assert data[:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", data[40:44])[0] == 0xFFFFFFFF
    streamed = np.frombuffer(data[44:], "<i2") / 32767
    assert len(streamed) == len(samples)
    assert np.max(np.abs(streamed - samples)) < 1e-4


def test_pcm_is_raw_samples_and_resampling_is_seamless():
    samples = _tone()
    streamed = b"".join(_stream(StreamEncoder(RATE, "pcm", 16000), samples, chunk=777))
    whole = encode_audio(samples, RATE, "pcm", 16000)
    a = np.frombuffer(streamed, "<i2").astype(np.float32)
    b = np.frombuffer(whole, "<i2").astype(np.float32)
    assert abs(len(a) - len(b)) <= 2
    n = min(len(a), len(b))
    assert np.max(np.abs(a[200 : n - 200] - b[200 : n - 200])) < 40  # of 32767


def test_finish_is_final_and_empty_streams_are_valid():
    encoder = StreamEncoder(RATE, "wav")
    header = encoder.finish()
    assert len(header) == 44 and encoder.finish() == b""
    with pytest.raises(RuntimeError):
        encoder.encode(_tone(0.1))


def test_bad_options_are_refused():
    with pytest.raises(AudioError):
        StreamEncoder(RATE, "aiff")
    with pytest.raises(AudioError, match="mp3"):
        StreamEncoder(RATE, "mp3", 12345)
