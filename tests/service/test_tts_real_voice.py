"""A real English voice end to end: `vits-en-joe` (a Piper VITS voice whose tokenizer phonemizes
with the `phonemizer` package and espeak-ng) speaks sentences of our own through the TTS service,
and whisper-tiny.en hears them back through the ASR service (issue 14's round trip)."""

from __future__ import annotations

import pytest

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc
from tests.asr_client import wer
from tests.conftest import SHARED, TINY_EN, running_asr, running_tts

JOE = SHARED / "models" / "vits-en-joe"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back after lunch tomorrow.",
    "We walked along the river until the sun went down.",
    "Speech recognition works best with clear audio.",
]

pytestmark = pytest.mark.skipif(
    not (JOE.is_dir() and TINY_EN.is_dir()), reason=f"real voices not found at {SHARED}"
)


async def test_vits_joe_speaks_what_whisper_hears(tmp_path):
    heard = []
    async with (
        running_tts(JOE, tmp_path / "voices") as (_, tts_channel),
        running_asr(TINY_EN) as (_, asr_channel),
    ):
        tts = tts_pb2_grpc.TtsServiceStub(tts_channel)
        asr = asr_pb2_grpc.AsrServiceStub(asr_channel)
        models = await tts.ListModels(tts_pb2.ListModelsRequest())
        assert not models.models[0].random_weights
        for sentence in SENTENCES:
            speech = await tts.Synthesize(tts_pb2.SynthesizeRequest(text=sentence))
            assert speech.audio_duration.seconds >= 1
            reply = await asr.Recognize(
                asr_pb2.RecognizeRequest(
                    audio=speech.audio, config=asr_pb2.RecognitionConfig(language_code="en")
                )
            )
            heard.append(reply.transcript)
    assert wer(SENTENCES, heard) <= 0.05, heard
