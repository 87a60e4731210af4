"""Encoding audio as it is produced: the chunks of a stream form one continuous recording.

`StreamEncoder.encode(samples)` returns the bytes that can be sent now and `finish()` the rest;
concatenated, they are one file in the requested encoding. Container headers come once, at the
start; a WAV header states an unknown length (0xFFFFFFFF), as live WAV streams do. FLAC, Ogg Opus
and MP3 are written by FFmpeg into a sink that cannot seek, so nothing already sent is rewritten.
Resampling keeps its state across chunks (soxr's stream resampler), so chunk edges are seamless.
"""

from __future__ import annotations

import struct

import av
import numpy as np
import soxr

from speechmesh.dsp.audio import AudioError, _check_sample_rate, _encoder, content_type

_UNKNOWN = 0xFFFFFFFF


class _Sink:
    """A write-only file for FFmpeg; what was written is taken with `take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def _wav_header(rate: int) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", _UNKNOWN)
    )


class StreamEncoder:
    def __init__(self, sample_rate: int, encoding: str = "wav", output_rate: int | None = None):
        content_type(encoding)  # rejects unknown encodings
        if output_rate is not None:
            _check_sample_rate(output_rate)
        self.encoding = encoding
        self.rate = 48000 if encoding == "ogg_opus" else output_rate or sample_rate
        self._resampler = (
            soxr.ResampleStream(sample_rate, self.rate, 1, dtype="float32")
            if self.rate != sample_rate
            else None
        )
        self._started = False
        self._finished = False
        self._container = None
        self._stream = None
        self._sink = _Sink()
        if encoding in ("flac", "ogg_opus", "mp3"):
            self._open_ffmpeg()

    def _open_ffmpeg(self) -> None:
        if self.encoding == "flac":
            codec, fmt = _encoder("flac"), "flac"
        elif self.encoding == "ogg_opus":
            codec, fmt = _encoder("libopus", "opus"), "ogg"
        else:
            codec, fmt = _encoder("libmp3lame"), "mp3"
            if self.rate not in codec.audio_rates:
                raise AudioError(
                    f"mp3 output supports sample rates {sorted(codec.audio_rates)}, got {self.rate}"
                )
        # Ogg pages are flushed every 20 ms of audio, not every second: chunks leave promptly.
        options = {"page_duration": "20000"} if fmt == "ogg" else {}
        self._container = av.open(self._sink, mode="w", format=fmt, options=options)
        self._stream = self._container.add_stream(codec.name, rate=self.rate, layout="mono")
        if fmt == "mp3":
            self._stream.bit_rate = 128_000
        elif fmt == "flac":
            self._stream.format = "s16"

    def encode(self, samples: np.ndarray) -> bytes:
        """Bytes for float32 mono `samples` at the input rate (possibly empty: the codec may
        hold samples back until it has a whole frame)."""
        if self._finished:
            raise RuntimeError("the stream encoder is finished")
        x = np.asarray(samples, dtype=np.float32)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        return self._write(x)

    def finish(self) -> bytes:
        """The rest of the recording: samples the resampler and codec still hold, and any
        trailer. The encoder cannot be used after."""
        if self._finished:
            return b""
        tail = b""
        if self._resampler is not None:
            tail = self._write(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._finished = True
        if self._container is None:
            return tail + (b"" if self._started else self._header())
        if self._started:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        return tail + self._sink.take()

    def _header(self) -> bytes:
        self._started = True
        return _wav_header(self.rate) if self.encoding == "wav" else b""

    def _write(self, x: np.ndarray) -> bytes:
        head = b"" if self._started else self._header()
        if not len(x):
            return head
        x = np.clip(x, -1, 1)
        if self._container is None:  # wav, pcm
            return head + np.round(x * 32767).astype("<i2").tobytes()
        frame = av.AudioFrame.from_ndarray(x[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = self.rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return head + self._sink.take()
