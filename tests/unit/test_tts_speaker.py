"""Speaker: a request's text spoken in its voice and encoded, unary and as a stream, with every
mistake naming the request field (tiny random CSM and VITS loaded in-process, no server)."""

from __future__ import annotations

import io

import grpc
import pytest
import soundfile as sf

from speechmesh.dsp.endpointing import ForceEndpoint
from speechmesh.runtime import errors
from speechmesh.tts.resolver import VoiceRequest, VoiceResolver
from speechmesh.tts.speaker import Speaker, SynthesisRequest
from speechmesh.tts.streaming import CHUNK_SECONDS
from speechmesh.tts.synthesizer import Style
from tests.unit.forms import violation


@pytest.fixture(scope="module")
def speaker(tiny_tts_models) -> Speaker:
    models = tiny_tts_models
    return Speaker(models, models.settings, VoiceResolver(models, models.settings))


def request(at: str = "config.", **voice) -> SynthesisRequest:
    return SynthesisRequest(
        VoiceRequest(**voice), Style(seed=7), at=at, output_field=at + "output_audio_config"
    )


async def test_synthesize_speaks_every_sentence_and_encodes(speaker):
    result = await speaker.synthesize("One. Two.", request(), "")
    assert result.model == speaker.models.default.name and result.seed == 7
    assert [s.text for s in result.speech.sentences] == ["One.", "Two."]
    info = sf.info(io.BytesIO(result.audio))
    assert result.encoding == "wav" and info.samplerate == result.sample_rate
    assert info.duration == pytest.approx(result.speech.seconds, abs=0.01)
    again = await speaker.synthesize("One. Two.", request(), "")
    assert again.audio == result.audio  # same seed, same speech


async def test_synthesize_mistakes_name_their_fields(speaker):
    limit = speaker.settings.max_text_characters
    for text, field in ((" ", "text"), ("a" * (limit + 1), "text")):
        with pytest.raises(errors.ApiError) as error:
            await speaker.synthesize(text, request(), "")
        assert violation(error) == field
    cases = [
        (request(preset="default", model=speaker.models.default.name), "config.preset_voice"),
        (request(at="", language="fr"), "language_code"),
    ]
    for asked, field in cases:
        with pytest.raises(errors.ApiError) as error:
            await speaker.synthesize("Hi.", asked, "")
        assert violation(error) == field
    mp3 = SynthesisRequest(VoiceRequest(), Style(), "mp3", 12345, output_field="out")
    with pytest.raises(errors.ApiError) as error:
        await speaker.synthesize("Hi.", mp3, "")
    assert violation(error) == "out.sample_rate_hertz"
    with pytest.raises(errors.ApiError) as raised:
        await speaker.synthesize("Hi.", request(voice="voices/ghost"), "")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


async def inputs(*items):
    for item in items:
        yield item


async def test_a_stream_sends_short_chunks_sentence_by_sentence(speaker):
    stream = await speaker.open_stream(request("streaming_config.config."), "")
    chunks = [c async for c in stream.chunks(inputs("First one. Sec", "ond", ForceEndpoint))]
    assert stream.sentences == 2 and stream.characters == len("First one. Second")
    assert stream.model == speaker.models.default.name and stream.seed == 7
    assert [c.text for c in chunks if c.text] == ["First one.", "Second"]
    assert [c.sentence_index for c in chunks if c.sentence_end] == [0, 1]
    assert all(c.duration is not None and c.duration <= CHUNK_SECONDS for c in chunks)
    ends = [c.offset + c.duration for c in chunks]
    assert ends[-1] == pytest.approx(stream.seconds, abs=0.001)
    audio, rate = sf.read(io.BytesIO(b"".join(c.audio for c in chunks)))
    assert rate == stream.sample_rate and len(audio) / rate == pytest.approx(stream.seconds, 0.01)


async def test_stream_mistakes_name_the_stream_fields(speaker):
    with pytest.raises(errors.ApiError) as error:
        await speaker.open_stream(request("streaming_config.config.", language="ja"), "")
    assert violation(error) == "streaming_config.config.language_code"
    asked = request("streaming_config.config.", preset="x", model=speaker.models.default.name)
    stream = await speaker.open_stream(asked, "")
    with pytest.raises(errors.ApiError) as error:
        [c async for c in stream.chunks(inputs("Hello."))]
    assert violation(error) == "streaming_config.config.preset_voice"
