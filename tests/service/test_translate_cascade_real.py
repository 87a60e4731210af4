"""The cascade end to end on real weights (issue 14): the German reading of the MIT licence
(../shared/audio/fw/multilingual.mp3) becomes English speech. Whisper base's translate task makes
the English (no text model is needed), the real VITS voice vits-en-joe speaks it, and
whisper-tiny.en, listening to the result, must hear the cascade's own English text."""

from __future__ import annotations

import pytest

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
from tests.asr_client import normalize, wer
from tests.conftest import SHARED, TINY_EN, running_asr, running_translate, running_tts
from tests.whisper_base import german_half_wav

JOE = SHARED / "models" / "vits-en-joe"
#: The licence's own words the translated text must carry (at least 4 of them).
LICENCE_WORDS = ["software", "documentation", "copy", "modify", "distribute", "sell"]

pytestmark = [
    pytest.mark.real_weights,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        not (JOE.is_dir() and TINY_EN.is_dir()), reason=f"real weights not found at {SHARED}"
    ),
]


async def test_german_speech_becomes_english_speech(whisper_base, tiny_nllb_checkpoint, tmp_path):
    async with (
        running_asr(whisper_base) as (base_host, _),
        running_tts(JOE, tmp_path / "voices") as (tts_host, _),
        running_asr(TINY_EN) as (_, listener),
    ):
        peers = {"asr": f"127.0.0.1:{base_host.port}", "tts": f"127.0.0.1:{tts_host.port}"}
        async with running_translate(tiny_nllb_checkpoint, peers=peers) as (_, channel):
            api = translate_pb2_grpc.TranslateServiceStub(channel)
            reply = await api.TranslateSpeech(
                translate_pb2.TranslateSpeechRequest(
                    audio=german_half_wav(),
                    config=translate_pb2.SpeechTranslationConfig(
                        target_language_code="en",
                        output_modalities=[
                            translate_pb2.MODALITY_TEXT,
                            translate_pb2.MODALITY_SPEECH,
                        ],
                    ),
                ),
                timeout=600,
            )
        heard = await asr_pb2_grpc.AsrServiceStub(listener).Recognize(
            asr_pb2.RecognizeRequest(
                audio=reply.translated_audio, config=asr_pb2.RecognitionConfig(language_code="en")
            ),
            timeout=300,
        )
    # The only speech model here is a text model: the path chosen is the cascade.
    assert reply.path == translate_pb2.SPEECH_TRANSLATION_PATH_CASCADE
    assert reply.source_language_code == "de" and reply.source_language_probability > 0.5
    models = reply.cascade_models
    assert (models.translation_model, models.synthesis_model) == ("", "vits-en-joe")
    text = normalize(reply.translated_text)
    carried = [word for word in LICENCE_WORDS if word in text.split()]
    assert len(carried) >= 4, (carried, reply.translated_text)
    # vits-en-joe cannot clone: every segment falls back to its preset, saying why.
    for segment in reply.segments:
        assert segment.voice.kind == translate_pb2.SegmentVoice.KIND_PRESET
        assert "cannot clone" in segment.voice.fallback_reason
    error = wer([reply.translated_text], [heard.transcript])
    print(f"cascade: {reply.translated_text!r}\nheard: {heard.transcript!r}\nwer {error:.3f}")
    assert error <= 0.15, (
        reply.translated_text,
        heard.transcript,
    )
