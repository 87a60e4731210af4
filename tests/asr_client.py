"""Small helpers tests use to talk to the ASR service."""

from __future__ import annotations

import asyncio
import pathlib

import numpy as np
import soundfile as sf

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.audio.v1 import audio_pb2


def stub(channel) -> asr_pb2_grpc.AsrServiceStub:
    return asr_pb2_grpc.AsrServiceStub(channel)


def pcm16(path: pathlib.Path) -> tuple[bytes, int]:
    """A file's first channel as raw LINEAR16 bytes, and its sample rate."""
    samples, rate = sf.read(path, dtype="int16", always_2d=True)
    return np.ascontiguousarray(samples[:, 0]).tobytes(), rate


def stream_config(rate: int, **kwargs) -> asr_pb2.StreamingRecognizeRequest:
    config = kwargs.pop("config", asr_pb2.RecognitionConfig())
    config.audio_format.CopyFrom(
        audio_pb2.AudioFormat(encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate)
    )
    return asr_pb2.StreamingRecognizeRequest(
        streaming_config=asr_pb2.StreamingRecognitionConfig(config=config, **kwargs)
    )


async def chunked(
    first,
    data: bytes,
    rate: int,
    chunk_s: float = 0.1,
    speed: float = 1.0,
    tail_silence_s: float = 0.0,
):
    """The config message, then 16-bit audio in chunks, paced at `speed` x real time."""
    yield first
    step = int(rate * chunk_s) * 2
    data = data + bytes(int(rate * tail_silence_s) * 2)
    for offset in range(0, len(data), step):
        yield asr_pb2.StreamingRecognizeRequest(audio=data[offset : offset + step])
        if speed:
            await asyncio.sleep(chunk_s / speed)


def normalize(text: str) -> str:
    """Whisper's English normalizer: case, punctuation, numbers and spellings made alike."""
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer({})(text)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate after `normalize`."""
    import jiwer

    return jiwer.wer([normalize(r) for r in references], [normalize(h) for h in hypotheses])
