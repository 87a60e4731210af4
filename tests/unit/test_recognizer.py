"""Recognizer.recognize_audio: a call's recording decoded, held to the service's limit, metered
and recognized, over the real batcher with a stand-in engine that says what it heard."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from speechmesh.asr.engines.base import DecodeJob, DecodeOptions, Segment, WindowResult
from speechmesh.asr.recognizer import Recognizer
from speechmesh.dsp.audio import RawFormat
from speechmesh.inference.batcher import MicroBatcher
from speechmesh.runtime import errors
from tests.unit.support import new_call, rtf_count, wav

RATE = 16000


class CountingEngine:
    """Answers each window with the number of samples it was given."""

    sample_rate = RATE
    window_seconds = 30.0
    supports_word_timestamps = False

    def decode_batch(self, jobs: list[DecodeJob]) -> list[WindowResult]:
        return [
            WindowResult([Segment(f"{len(job.audio)} samples", 0.0, 1.0, 0.9)], "en", 0.8)
            for job in jobs
        ]


@contextlib.asynccontextmanager
async def recognizer(max_audio_seconds: float = 5.0):
    engine = CountingEngine()
    batcher = MicroBatcher("unit-recognizer", engine.decode_batch)
    try:
        yield Recognizer(engine, batcher, vad=None, max_audio_seconds=max_audio_seconds)
    finally:
        await batcher.close()


async def test_recognizes_a_container_or_raw_recording_and_meters_the_call():
    stats = new_call()
    before = rtf_count("asr", "UnitRecognize")
    async with recognizer() as asr:
        transcript = await asr.recognize_audio(
            wav(1.0, 8000), None, DecodeOptions(), method="UnitRecognize"
        )
        assert transcript.text == "16000 samples"  # resampled to the engine's rate
        assert (transcript.language, transcript.duration) == ("en", 1.0)
        assert stats.audio_seconds == 1.0 and stats.characters == len("16000 samples")
        assert rtf_count("asr", "UnitRecognize") == before + 1
        pcm = np.zeros(4000, dtype="<i2").tobytes()
        raw = RawFormat("linear16", RATE, 1)
        transcript = await asr.recognize_audio(pcm, raw, DecodeOptions(), method="UnitRecognize")
        assert transcript.text == "4000 samples"


@pytest.mark.parametrize(
    ("data", "mention"),
    [
        (b"", "is empty"),
        (b"not audio at all", "could not decode"),
        (wav(6.2), "is 6 s long; at most 5 s per request (split it, or stream it)"),
    ],
)
async def test_bad_recordings_are_invalid_argument_naming_the_field(data, mention):
    async with recognizer() as asr:
        with pytest.raises(errors.ApiError) as error:
            await asr.recognize_audio(data, None, DecodeOptions(), method="Unit", field="file")
    assert error.value.message.startswith("file: ") and mention in error.value.message
    (detail,) = error.value.details
    assert detail.field_violations[0].field == "file"
