"""Multilingual Whisper base through the ASR service on real human speech (issue 14): language
detection of English and German (the two readings of the MIT licence in
../shared/audio/fw/multilingual.mp3, cut at the pause between them) and French
(../shared/audio/sr/french.aiff), and Whisper's translate task from the German reading to English.
Both inference runtimes serve the checkpoint (CTranslate2 is the one `engine=auto` picks).
Whisper base is built once into a cache that outlives the run (tests/whisper_base.py); without
../shared the tests skip, and a failed build fails them."""

from __future__ import annotations

import pytest

from speechmesh.asr.v1 import asr_pb2
from tests.asr_client import normalize, stub, wer
from tests.conftest import ASR_ENGINES, AUDIO, running_asr
from tests.whisper_base import english_half_wav, german_half_wav

# The first run builds the checkpoint (a download of about 140 MB) inside the first test.
pytestmark = [pytest.mark.real_weights, pytest.mark.timeout(900)]

#: The English reading, as read: the licence without its '(the "Software")'.
ENGLISH = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this"
    " software and associated documentation files to deal in the Software without restriction,"
    " including without limitation the rights to use, copy, modify, merge, publish, distribute,"
    " sublicense, and/or sell copies of the Software, and to permit persons to whom the Software"
    " is furnished to do so, subject to the following conditions: The above copyright notice"
    " and this permission notice shall be included in all copies or substantial portions of the"
    " Software."
)
#: Words of the German reading (the licence's usual German translation) that Whisper base
#: gets right on either runtime.
GERMAN_WORDS = ["software", "dokumentationsdateien", "genehmigung", "veröffentlichen", "verkaufen"]
#: The English words the translation of the German reading must contain: the licence's own.
TRANSLATED_WORDS = ["software", "documentation", "copy", "modify", "distribute", "sell"]


@pytest.fixture(scope="module", params=ASR_ENGINES)
async def base_asr(request, whisper_base):
    """ASR serving Whisper base on each runtime: (engine, channel)."""
    async with running_asr(whisper_base, engine=request.param) as (_, channel):
        yield request.param, channel


@pytest.fixture(scope="module")
async def german_reply(base_asr) -> asr_pb2.RecognizeResponse:
    """The German reading recognized (language detected) on each runtime, once."""
    _, channel = base_asr
    return await recognize(channel, german_half_wav())


async def recognize(channel, audio: bytes, **config) -> asr_pb2.RecognizeResponse:
    request = asr_pb2.RecognizeRequest(audio=audio, config=asr_pb2.RecognitionConfig(**config))
    return await stub(channel).Recognize(request, timeout=300)


async def test_model_is_multilingual(base_asr):
    engine, channel = base_asr
    listed = await stub(channel).ListModels(asr_pb2.ListModelsRequest())
    (model,) = listed.models
    assert model.runtime == engine
    assert not model.random_weights
    assert model.supports_language_detection and model.supports_translation
    assert {"en", "de", "fr"} <= set(model.language_codes)
    assert len(model.language_codes) >= 99


async def test_english_reading_detected_and_transcribed(base_asr):
    _, channel = base_asr
    reply = await recognize(channel, english_half_wav())
    assert reply.language_code == "en", reply
    assert reply.language_probability > 0.8
    assert 29.9 <= reply.audio_duration.ToTimedelta().total_seconds() <= 30.1
    assert wer([ENGLISH], [reply.transcript]) <= 0.1, reply.transcript


async def test_german_reading_detected_and_transcribed(german_reply):
    reply = german_reply
    assert reply.language_code == "de", reply
    assert reply.language_probability > 0.8
    words = reply.transcript.lower()
    assert all(word in words for word in GERMAN_WORDS), reply.transcript


async def test_french_detected_and_transcribed(base_asr):
    _, channel = base_asr
    reply = await recognize(channel, (AUDIO / "sr" / "french.aiff").read_bytes())
    assert reply.language_code == "fr", reply
    assert "dictée" in reply.transcript.lower(), reply.transcript
    assert reply.language_probability > 0.8


async def test_german_reading_translated_to_english(base_asr):
    _, channel = base_asr
    reply = await recognize(channel, german_half_wav(), task=asr_pb2.RECOGNITION_TASK_TRANSLATE)
    english = set(normalize(reply.transcript).split())
    missing = [w for w in TRANSLATED_WORDS if not english & {w, w + "s", w + "d", w + "ed"}]
    assert not missing, reply.transcript
    assert reply.language_code == "de"  # the language spoken, detected
    assert "genehmigung" not in reply.transcript.lower()  # no German left


async def test_german_reading_keeps_its_last_words(german_reply):
    reply = german_reply
    assert "anderen zu übertragen" in reply.transcript, reply.transcript


async def test_nothing_made_up_past_the_end_of_the_audio(german_reply):
    reply = german_reply
    end = reply.audio_duration.ToNanoseconds()
    made_up = [
        s.text
        for s in reply.segments
        if s.end_offset.ToNanoseconds() <= s.start_offset.ToNanoseconds()
        or s.start_offset.ToNanoseconds() >= end
    ]
    assert not made_up, reply.transcript
