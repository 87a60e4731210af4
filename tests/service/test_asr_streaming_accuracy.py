"""Streaming finals are as accurate as offline recognition of the same audio (real weights).

Two recordings with pauses: jfk.flac, where the speaker pauses mid-sentence ("And so, my fellow
Americans, ... ask not what your country can do for you, ... ask what you can do for your
country"), and a 60 s passage built here from the LibriVox clips joined by 1.2 s pauses. Each
is streamed in real time (100 ms chunks, each when a microphone would have captured it: how
soon a pause's decode returns decides whether an utterance ends there) and recognized whole
with Recognize; the finals' word error rate may exceed offline's by at most
one point.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechmesh.asr.v1 import asr_pb2
from tests.asr_client import chunked, stream_config, stub
from tests.conftest import AUDIO, requires_shared
from tests.service.test_asr_real_weights import manifest, wer

pytestmark = [requires_shared, pytest.mark.real_weights]

RATE = 16000
JFK = (
    "and so my fellow americans ask not what your country can do for you"
    " ask what you can do for your country"
)


def _mono16k(path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, RATE).astype(np.float32)


def passage() -> tuple[np.ndarray, str]:
    """The five LibriVox clips, twice, 1.2 s of silence between them: 59 s and its words."""
    truth = manifest()
    paths = sorted(p for p in truth if p.startswith("librivox/")) * 2
    pause = np.zeros(int(1.2 * RATE), dtype=np.float32)
    parts = []
    for path in paths:
        parts += [_mono16k(AUDIO / path), pause]
    return np.concatenate(parts[:-1]), " ".join(truth[p] for p in paths)


async def _offline(channel, audio: np.ndarray) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format="WAV", subtype="PCM_16")
    response = await stub(channel).Recognize(
        asr_pb2.RecognizeRequest(audio=buffer.getvalue()), timeout=300
    )
    return response.transcript


async def _streamed(
    channel, audio: np.ndarray, speed: float = 1.0
) -> list[asr_pb2.StreamingRecognitionResult]:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    first = stream_config(RATE, interim_results=True)
    responses = stub(channel).StreamingRecognize(
        chunked(first, pcm, RATE, chunk_s=0.1, speed=speed, tail_silence_s=1.0), timeout=300
    )
    return [r.result async for r in responses if r.HasField("result") and r.result.is_final]


@pytest.mark.parametrize(
    ("recording", "speed"),
    [("jfk", 1.0), ("passage", 1.0), ("jfk", 0.0), ("passage", 0.0)],
    ids=["jfk", "passage", "jfk-as-fast-as-possible", "passage-as-fast-as-possible"],
)
async def test_streaming_finals_as_accurate_as_offline(real_asr, recording, speed):
    """Also as fast as possible: every pause's decode then returns after speech resumed, so
    the finals are decoded at the utterances' ends, after their context, not at the pauses."""
    _, channel = real_asr
    if recording == "jfk":
        audio, reference = _mono16k(AUDIO / "fw" / "jfk.flac"), JFK
    else:
        audio, reference = passage()
    offline = await _offline(channel, audio)
    finals = await _streamed(channel, audio, speed)
    streamed = " ".join(f.transcript for f in finals)
    offline_wer, stream_wer = wer([reference], [offline]), wer([reference], [streamed])
    assert stream_wer <= offline_wer + 0.01, (
        f"streaming WER {stream_wer:.3f} vs offline {offline_wer:.3f}",
        [f.transcript for f in finals],
        offline,
    )
    assert [f.utterance_index for f in finals] == sorted(f.utterance_index for f in finals)
