"""Translator: the service's limits (texts, characters, seconds of audio) and a call's recording
decoded, held to the limit and metered, over the real batcher with a stand-in engine."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from speechmesh.inference.batcher import MicroBatcher
from speechmesh.runtime import errors
from speechmesh.translate.engines.base import (
    InvalidOptionError,
    Languages,
    TranslationJob,
    TranslationOutput,
)
from speechmesh.translate.translator import Limits, Translator
from tests.unit.support import new_call, rtf_count, wav

RATE = 16000


class TaggingEngine:
    """Translates by tagging: text becomes "[target] text", speech "[target] N samples", and
    speech output is 0.1 s of silence."""

    name = "tagging"
    tasks = frozenset({"t2tt", "s2tt", "t2st", "s2st"})
    languages = Languages(["en"], ["fr"], ["en"], ["fr"])
    input_sample_rate = RATE
    output_sample_rate = 8000
    max_input_tokens = 64
    max_speech_seconds = 30.0

    def __init__(self):
        self.voices = ["narrator"]

    def language_code(self, tag: str, modality: str, direction: str) -> str:
        if tag not in ("en", "fr"):
            raise InvalidOptionError(f"{'source' if direction == 'in' else 'target'}_language", tag)
        return tag

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def run_batch(self, jobs: list[TranslationJob]) -> list[TranslationOutput]:
        outputs = []
        for job in jobs:
            said = job.text if job.audio is None else f"{len(job.audio)} samples"
            audio = np.zeros(800, np.float32) if job.task.endswith("st") else None
            outputs.append(TranslationOutput(f"[{job.target}] {said}", audio))
        return outputs


@contextlib.asynccontextmanager
async def translator(**limits):
    engine = TaggingEngine()
    batcher = MicroBatcher("unit-translator", engine.run_batch)
    try:
        yield Translator(engine, batcher, vad=None, limits=Limits(**limits))
    finally:
        await batcher.close()


def option_error(raised: pytest.ExceptionInfo) -> tuple[str, str]:
    assert isinstance(raised.value, InvalidOptionError)
    return raised.value.option, str(raised.value)


async def test_text_calls_are_held_to_the_limits_and_counted():
    stats = new_call()
    async with translator(max_texts=2, max_text_characters=12) as tr:
        done = await tr.translate_texts(["Hello.", "Bye."], "en", "fr")
        assert [t.text for t in done] == ["[fr] Hello.", "[fr] Bye."]
        assert stats.characters == 10
        with pytest.raises(InvalidOptionError) as raised:
            await tr.translate_texts([], "en", "fr")
        assert option_error(raised) == ("text", "is empty; send 1 or more texts to translate")
        with pytest.raises(InvalidOptionError) as raised:
            await tr.translate_texts(["a", "b", "c"], "en", "fr")
        assert option_error(raised) == ("text", "has 3 entries; at most 2 per call")
        with pytest.raises(InvalidOptionError) as raised:
            await tr.translate_texts(["Hello there.", "!"], "en", "fr")
        assert option_error(raised) == (
            "text",
            "hold 13 characters in all; at most 12 per call (send several calls)",
        )
        assert stats.characters == 13  # counted even when refused


async def test_text_to_speech_is_held_to_its_limit():
    stats = new_call()
    async with translator(max_speech_text_characters=10) as tr:
        speech = await tr.text_to_speech("Hello.", "en", "fr", "")
        assert (speech.text, speech.voice, speech.sample_rate) == ("[fr] Hello.", "narrator", 8000)
        for blank in ("", "  \n"):
            with pytest.raises(InvalidOptionError) as raised:
                await tr.text_to_speech(blank, "en", "fr", "")
            assert option_error(raised) == ("text", "is empty; send 1 or more characters to speak")
        with pytest.raises(InvalidOptionError) as raised:
            await tr.text_to_speech("Hello there", "en", "fr", "")
        assert option_error(raised) == ("text", "is 11 characters; at most 10 per call")
        assert stats.characters == 11


async def test_recordings_are_decoded_limited_and_metered():
    stats = new_call()
    before = rtf_count("translate", "UnitTranslate")
    async with translator(max_audio_seconds=5) as tr:
        options = tr.speech_options("en", "fr", want_speech=True)
        result = await tr.translate_recording(wav(1.0, 8000), None, options, method="UnitTranslate")
        assert result.text == "[fr] 16000 samples"  # resampled to the engine's input rate
        assert result.duration == 1.0 and result.sample_rate == 8000
        assert stats.audio_seconds == 1.0 and stats.characters == len(result.text)
        assert rtf_count("translate", "UnitTranslate") == before + 1
        for data, mention in (
            (b"", "is empty"),
            (b"not audio", "could not decode"),
            (wav(6.2), "is 6 s long; at most 5 s per request (split it)"),
        ):
            with pytest.raises(errors.ApiError) as error:
                await tr.translate_recording(data, None, options, method="UnitTranslate")
            assert error.value.message.startswith("audio: ") and mention in error.value.message
