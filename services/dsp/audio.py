"""Audio decoding, streaming decoding and encoding for the speech services.

Everything works on float32 mono samples in [-1, 1]. Containers are read with
soundfile (libsndfile) and, failing that, PyAV (FFmpeg); raw samples are
interpreted here; resampling is done with soxr.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np
import soundfile as sf
import soxr
from av.codec.codec import UnknownCodecError


class AudioError(ValueError):
    """Input audio that cannot be used; message says what is wrong and how to fix it.

    The message is shown to API callers.
    """


RAW_ENCODINGS = ("linear16", "float32", "mulaw", "alaw")
OUTPUT_ENCODINGS = ("wav", "flac", "ogg_opus", "mp3", "pcm")

MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_CHANNELS = 8

_SAMPLE_BYTES = {"linear16": 2, "float32": 4, "mulaw": 1, "alaw": 1}
_CONTENT_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg_opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "pcm": "audio/L16",
}
# WAV (format tag, bits per sample) -> raw encoding, for streamed WAV files.
_WAV_FORMATS = {(1, 16): "linear16", (3, 32): "float32", (7, 8): "mulaw", (6, 8): "alaw"}
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_UNDECODABLE = (
    "could not decode audio: not a supported container (WAV, FLAC, MP3, OGG, WebM, M4A, AIFF); "
    "for raw samples set the audio format's encoding and sample rate"
)
_EMPTY = np.zeros(0, dtype=np.float32)


def _check_sample_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample_rate_hertz must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE}, got {rate}"
        )


@dataclass(frozen=True)
class RawFormat:
    """Headerless interleaved samples."""

    encoding: str  # one of RAW_ENCODINGS
    sample_rate: int
    channels: int = 1

    def validate(self) -> None:
        if self.encoding not in RAW_ENCODINGS:
            raise AudioError(
                f"unsupported raw audio encoding {self.encoding!r}; "
                f"use one of {', '.join(RAW_ENCODINGS)}"
            )
        _check_sample_rate(self.sample_rate)
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise AudioError(
                f"channel_count must be between 1 and {MAX_CHANNELS}, got {self.channels}"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes per interleaved frame (one sample of every channel)."""
        return _SAMPLE_BYTES[self.encoding] * self.channels


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32 mono, 1-D, in [-1, 1]
    sample_rate: int
    source_sample_rate: int
    source_channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def _mulaw_table() -> np.ndarray:
    """G.711 mu-law byte -> float, as in the ITU reference (Sun g711.c ulaw2linear)."""
    u = ~np.arange(256, dtype=np.uint8)
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F).astype(np.int32) << 3) + 0x84) << exponent
    linear = np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return (linear / 32768).astype(np.float32)


def _alaw_table() -> np.ndarray:
    """G.711 A-law byte -> float, as in the ITU reference (Sun g711.c alaw2linear)."""
    a = np.arange(256, dtype=np.uint8) ^ 0x55
    segment = ((a >> 4) & 0x07).astype(np.int32)
    magnitude = ((a & 0x0F).astype(np.int32) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude <<= np.maximum(segment - 1, 0)
    linear = np.where(a & 0x80, magnitude, -magnitude)
    return (linear / 32768).astype(np.float32)


_G711 = {"mulaw": _mulaw_table(), "alaw": _alaw_table()}


def _raw_frames(data: bytes, raw: RawFormat) -> np.ndarray:
    """Interleaved raw bytes (a whole number of frames) -> float32 array (frames, channels)."""
    if raw.encoding == "linear16":
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    elif raw.encoding == "float32":
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    else:
        samples = _G711[raw.encoding][np.frombuffer(data, dtype=np.uint8)]
    return samples.reshape(-1, raw.channels)


def _pyav_frames(data: bytes) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any FFmpeg-readable container -> (frames, channels)."""
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise AudioError("could not decode audio: the file has no audio stream")
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # any sample format -> float planar
            frames = [out for frame in container.decode(stream) for out in to_float.resample(frame)]
            frames += to_float.resample(None)
    except AudioError:
        raise
    except Exception as exc:  # FFmpeg rejects the bytes: not a container, corrupt, truncated
        raise AudioError(_UNDECODABLE) from exc
    if not frames:
        raise AudioError("audio contains no samples")
    planes = np.concatenate([frame.to_ndarray() for frame in frames], axis=1)
    return planes.T, frames[0].sample_rate


def _container_frames(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a container (format detected from the bytes) -> (frames, channels) and rate."""
    try:
        return sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # libsndfile cannot read it (MP3, Opus, WebM, M4A, ...): FFmpeg may
        return _pyav_frames(data)


def _resample(samples: np.ndarray, rate: int, target_rate: int | None) -> np.ndarray:
    if target_rate is None or target_rate == rate:
        return samples
    return soxr.resample(samples, rate, target_rate, quality="HQ")


def decode_audio(
    data: bytes, raw: RawFormat | None = None, target_rate: int | None = 16000
) -> Audio:
    """Decode a container file (raw None) or raw interleaved samples to float32 mono.

    The result is resampled to target_rate unless that is None.
    """
    if not data:
        raise AudioError("audio is empty: send the audio bytes (got 0 bytes)")
    if raw is None:
        frames, rate = _container_frames(data)
    else:
        raw.validate()
        if len(data) % raw.frame_bytes:
            raise AudioError(
                f"raw {raw.encoding} audio with {raw.channels} channel(s) must be a multiple of "
                f"{raw.frame_bytes} bytes, got {len(data)}; check the encoding and channel_count"
            )
        frames, rate = _raw_frames(data, raw), raw.sample_rate
    if frames.size == 0:
        raise AudioError("audio contains no samples")
    if not np.isfinite(frames).all():
        raise AudioError("audio contains NaN or infinite sample values")
    mono = frames.mean(axis=1, dtype=np.float32)
    samples = np.clip(_resample(mono, rate, target_rate), -1, 1).astype(np.float32)
    return Audio(samples, target_rate or rate, rate, frames.shape[1])


class StreamDecoder:
    """Decodes live audio arriving in chunks of any size to float32 mono at target_rate.

    With raw None the stream must be a WAV file (16-bit PCM, 32-bit float, mu-law or A-law);
    its header may be split across chunks. Partial samples are kept for the next chunk.
    """

    def __init__(self, raw: RawFormat | None, target_rate: int = 16000) -> None:
        self._target_rate = target_rate
        self._header = bytearray()  # WAV header bytes not parsed yet
        self._riff_checked = False
        self._in_data = raw is not None  # past the WAV header
        self._skip = 0  # bytes of the current WAV chunk still to discard
        self._data_left: int | None = None  # bytes left in the WAV data chunk; None: unbounded
        self._pending = bytearray()  # sample bytes short of a whole frame
        self._samples_in = 0
        self._format: RawFormat | None = None
        self._resampler: soxr.ResampleStream | None = None
        if raw is not None:
            self._start(raw)

    @property
    def samples_in(self) -> int:
        """Input frames consumed so far, at the source rate."""
        return self._samples_in

    @property
    def format(self) -> RawFormat | None:
        """The source format; for WAV streams None until its 'fmt ' chunk has been read."""
        return self._format

    def feed(self, chunk: bytes) -> np.ndarray:
        """Decode the next chunk; returns the samples ready so far (possibly none)."""
        if not self._in_data:
            self._header += chunk
            self._in_data = self._read_wav_header()
            if not self._in_data:
                return _EMPTY
            chunk = bytes(self._header)
            self._header.clear()
        if self._data_left is not None:
            chunk = chunk[: self._data_left]
            self._data_left -= len(chunk)
        self._pending += chunk
        return self._convert()

    def flush(self) -> np.ndarray:
        """End of stream: the resampler's remaining samples (a trailing partial sample is lost)."""
        if not self._in_data and self._header:
            raise AudioError("the audio stream ended inside the WAV header")
        if self._resampler is None:
            return _EMPTY
        return self._output(self._resampler.resample_chunk(_EMPTY, last=True))

    def _start(self, raw: RawFormat) -> None:
        raw.validate()
        self._format = raw
        if raw.sample_rate != self._target_rate:
            self._resampler = soxr.ResampleStream(
                raw.sample_rate, self._target_rate, 1, dtype="float32", quality="HQ"
            )

    def _convert(self) -> np.ndarray:
        assert self._format is not None
        usable = len(self._pending) - len(self._pending) % self._format.frame_bytes
        if not usable:
            return _EMPTY
        frames = _raw_frames(bytes(self._pending[:usable]), self._format)
        del self._pending[:usable]
        if not np.isfinite(frames).all():
            raise AudioError("audio contains NaN or infinite sample values")
        self._samples_in += len(frames)
        mono = frames.mean(axis=1, dtype=np.float32)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono)
        return self._output(mono)

    @staticmethod
    def _output(samples: np.ndarray) -> np.ndarray:
        return np.clip(samples, -1, 1).astype(np.float32)

    def _read_wav_header(self) -> bool:
        """Consume WAV header bytes from self._header; True once the data chunk starts."""
        buf = self._header
        if not self._riff_checked:
            if len(buf) >= 4 and buf[:4] != b"RIFF":
                raise AudioError(
                    "streaming audio without a raw encoding must be a WAV file (RIFF header); "
                    "send other containers as raw samples with an encoding and sample rate"
                )
            if len(buf) < 12:
                return False
            if buf[8:12] != b"WAVE":
                raise AudioError("malformed WAV header: RIFF file is not of type WAVE")
            del buf[:12]
            self._riff_checked = True
        while True:
            skipped = min(self._skip, len(buf))
            del buf[:skipped]
            self._skip -= skipped
            if self._skip or len(buf) < 8:
                return False
            chunk_id = bytes(buf[:4])
            (size,) = struct.unpack_from("<I", buf, 4)
            if chunk_id == b"data":
                if self._format is None:
                    raise AudioError("malformed WAV header: 'data' chunk before 'fmt ' chunk")
                del buf[:8]
                self._data_left = None if size in (0, 0xFFFFFFFF) else size  # live: size unknown
                return True
            if chunk_id == b"fmt ":
                if not 16 <= size <= 1024:
                    raise AudioError(f"malformed WAV header: 'fmt ' chunk of {size} bytes")
                if len(buf) < 8 + size:
                    return False
                self._start(_wav_format(bytes(buf[8 : 8 + size])))
            self._skip = 8 + size + size % 2  # chunks are padded to an even size


def _wav_format(fmt: bytes) -> RawFormat:
    """Parse a WAV 'fmt ' chunk body."""
    tag, channels, rate = struct.unpack_from("<HHI", fmt)
    (bits,) = struct.unpack_from("<H", fmt, 14)
    if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the sub-format GUID
    encoding = _WAV_FORMATS.get((tag, bits))
    if encoding is None:
        raise AudioError(
            f"unsupported WAV sample format (format tag {tag}, {bits} bits); stream 16-bit PCM, "
            "32-bit float, mu-law or A-law WAV, or send raw samples with an encoding"
        )
    return RawFormat(encoding, rate, channels)


def content_type(encoding: str) -> str:
    """MIME type of audio produced by encode_audio with this encoding."""
    if encoding not in _CONTENT_TYPES:
        raise AudioError(f"unknown output encoding {encoding!r}; use one of {OUTPUT_ENCODINGS}")
    return _CONTENT_TYPES[encoding]


def _encoder(*names: str) -> av.Codec:
    """The first of these FFmpeg encoders that PyAV provides."""
    for name in names:
        try:
            return av.Codec(name, "w")
        except UnknownCodecError:
            continue
    raise AudioError(f"no encoder available for {names[0]} on this server")


def _encode_pyav(samples: np.ndarray, rate: int, container_format: str, codec: av.Codec) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_format) as container:
        stream = container.add_stream(codec.name, rate=rate, layout="mono")
        if container_format == "mp3":
            stream.bit_rate = 128_000
        frame = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


def encode_audio(
    samples: np.ndarray, sample_rate: int, encoding: str = "wav", output_rate: int | None = None
) -> bytes:
    """Encode float32 mono samples; resampled to output_rate when given.

    ogg_opus is always encoded at 48000 Hz, the rate Opus decoders produce.
    """
    content_type(encoding)  # rejects unknown encodings
    if not len(samples):
        raise AudioError("no samples to encode")
    if output_rate is not None:
        _check_sample_rate(output_rate)
    rate = output_rate or sample_rate
    if encoding == "ogg_opus":
        rate = 48000
    x = np.clip(_resample(np.asarray(samples, dtype=np.float32), sample_rate, rate), -1, 1)
    if encoding == "pcm":
        return np.round(x * 32767).astype("<i2").tobytes()
    if encoding in ("wav", "flac"):
        buf = io.BytesIO()
        sf.write(buf, x, rate, format=encoding.upper(), subtype="PCM_16")
        return buf.getvalue()
    if encoding == "ogg_opus":
        return _encode_pyav(x, rate, "ogg", _encoder("libopus", "opus"))
    lame = _encoder("libmp3lame")
    if rate not in lame.audio_rates:
        raise AudioError(f"mp3 output supports sample rates {sorted(lame.audio_rates)}, got {rate}")
    return _encode_pyav(x, rate, "mp3", lame)
