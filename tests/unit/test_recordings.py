"""speechmesh.runtime.recordings: a call's recording decoded, held to the limit and metered."""

from __future__ import annotations

import time
import types

import numpy as np
import pytest

from speechmesh.dsp.audio import RawFormat
from speechmesh.runtime import errors
from speechmesh.runtime.recordings import decode_recording, meter, on_recording
from tests.unit.support import new_call, rtf_count, wav


async def test_decodes_and_resamples_off_the_loop_and_counts_the_seconds():
    stats = new_call()
    audio = await decode_recording(wav(1.5, 8000), None, 16000, max_seconds=2)
    assert audio.samples.dtype == np.float32 and len(audio.samples) == 24000
    assert stats.audio_seconds == pytest.approx(1.5)
    pcm = (np.zeros(8000, dtype="<i2")).tobytes()
    raw = await decode_recording(pcm, RawFormat("linear16", 8000, 1), 16000, max_seconds=2)
    assert raw.duration == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("data", "mention"),
    [
        (b"", "is empty; send the recording's bytes"),
        (b"RIFF" + bytes(64), "could not decode"),
        (wav(3.2), "is 3 s long; at most 2 s per request (split it, or stream it)"),
    ],
)
async def test_mistakes_name_the_field(data, mention):
    with pytest.raises(errors.ApiError) as error:
        await decode_recording(
            data, None, 16000, max_seconds=2, field="file", advice="split it, or stream it"
        )
    assert error.value.message.startswith("file: ")
    assert mention in error.value.message
    (detail,) = error.value.details
    assert detail.field_violations[0].field == "file"


async def test_too_long_counts_the_seconds_it_refuses():
    stats = new_call()
    with pytest.raises(errors.ApiError):
        await decode_recording(wav(3), None, 16000, max_seconds=2)
    assert stats.audio_seconds == pytest.approx(3.0)


async def test_meter_records_the_real_time_factor_and_characters():
    stats = new_call()
    before = rtf_count("asr", "UnitMeter")
    meter("asr", "UnitMeter", time.perf_counter() - 0.5, 2.0, "hello there")
    assert rtf_count("asr", "UnitMeter") == before + 1
    assert stats.characters == len("hello there")
    meter("asr", "UnitMeter", time.perf_counter(), 0.0, "")  # no audio: no ratio
    assert rtf_count("asr", "UnitMeter") == before + 1


async def test_on_recording_runs_the_work_on_the_samples_and_meters_its_text():
    stats = new_call()
    before = rtf_count("translate", "UnitOnRecording")
    seen = []

    async def work(samples):
        seen.append(len(samples))
        return types.SimpleNamespace(text="bonjour")

    result = await on_recording(
        wav(0.5), None, 16000, work, service="translate", method="UnitOnRecording", max_seconds=1
    )
    assert (result.text, seen) == ("bonjour", [8000])
    assert (stats.audio_seconds, stats.characters) == (0.5, len("bonjour"))
    assert rtf_count("translate", "UnitOnRecording") == before + 1
    with pytest.raises(errors.ApiError):  # refused before any work
        await on_recording(
            wav(1.5),
            None,
            16000,
            work,
            service="translate",
            method="UnitOnRecording",
            max_seconds=1,
        )
    assert seen == [8000]
