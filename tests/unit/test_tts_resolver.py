"""The TTS voice resolver and voice library: which model and voice a request means, stored
voices per owner, and the request field every mistake names. Runs on tiny random CSM (default,
clones) and VITS (presets) loaded in-process, without a server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2

from speechmesh.dsp.audio import RawFormat
from speechmesh.runtime import errors
from speechmesh.tts.engines.base import InvalidOptionError
from speechmesh.tts.resolver import (
    Reference,
    VoiceRequest,
    VoiceResolver,
    option_fields,
    parse_voice_name,
    speaks,
)
from speechmesh.tts.voice_library import NewVoice, VoiceLibrary
from tests.sounds import REFERENCE, voice_like

TRANSCRIPT = "This is my voice."


@pytest.fixture(scope="module")
def resolver(tiny_tts_models) -> VoiceResolver:
    return VoiceResolver(tiny_tts_models, tiny_tts_models.settings)


@pytest.fixture(scope="module")
def library(resolver) -> VoiceLibrary:
    return VoiceLibrary(resolver)


@pytest.fixture(scope="module")
def csm(tiny_tts_models):
    return tiny_tts_models.default


@pytest.fixture(scope="module")
def vits(tiny_tts_models):
    (model,) = [m for m in tiny_tts_models.models.values() if m.engine.family == "vits"]
    return model


def field_of(error: errors.ApiError) -> str:
    """The field an INVALID_ARGUMENT names."""
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error.message
    (detail,) = error.details
    assert isinstance(detail, error_details_pb2.BadRequest)
    return detail.field_violations[0].field


async def refused(call) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as raised:
        await call
    return raised.value


# -- model and voice resolution --------------------------------------------------------------


async def test_no_voice_is_the_models_own_or_its_first_preset(resolver, csm, vits):
    model, voice = await resolver.resolve(VoiceRequest(), "")
    assert model is csm
    assert (voice.language, voice.prompt, voice.preset, voice.label) == ("en", None, None, "")
    model, voice = await resolver.resolve(VoiceRequest(model=vits.name), "")
    first = vits.engine.preset_voices[0].name
    assert model is vits and voice.preset == first and voice.label == first


async def test_a_preset_picks_the_model_that_has_it(resolver, csm, vits):
    preset = vits.engine.preset_voices[0].name
    model, voice = await resolver.resolve(VoiceRequest(preset=preset), "")
    assert model is vits and voice.preset == preset and voice.label == preset
    # A named model is taken as named: its engine refuses a preset it lacks when it speaks.
    model, _ = await resolver.resolve(VoiceRequest(model=csm.name, preset=preset), "")
    assert model is csm
    error = await refused(resolver.resolve(VoiceRequest(preset="nobody"), "", "config."))
    assert field_of(error) == "config.preset_voice" and "ListModels" in error.message


async def test_unknown_model_is_not_found(resolver):
    error = await refused(resolver.resolve(VoiceRequest(model="nope"), ""))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_languages_match_by_primary_subtag(resolver, csm):
    _, voice = await resolver.resolve(VoiceRequest(language=" en-GB "), "")
    assert voice.language == "en"
    assert speaks(csm, "EN", "f") == "en" and speaks(csm, "", "f") == "en"
    error = await refused(resolver.resolve(VoiceRequest(language="fr"), "", "config."))
    assert field_of(error) == "config.language_code" and "does not speak" in error.message


async def test_an_inline_reference_is_prepared_by_a_cloning_model(resolver, csm, vits):
    asked = VoiceRequest(reference=Reference(REFERENCE, f"  {TRANSCRIPT} "))
    model, voice = await resolver.resolve(asked, "")
    assert model is csm and voice.label == "inline" and voice.language == "en"
    assert voice.prompt is not None and voice.prompt.engine == "csm"
    assert voice.prompt.transcript == TRANSCRIPT
    at = "config."
    cases = [
        (Reference(REFERENCE, TRANSCRIPT), vits.name, "config.model", "cannot clone"),
        (Reference(b"", TRANSCRIPT), "", "config.reference_audio.audio", "empty"),
        (Reference(b"not audio" * 50, TRANSCRIPT), "", "config.reference_audio.audio", ""),
        (Reference(REFERENCE, " "), "", "config.reference_audio.transcript", "transcript"),
        (
            Reference(REFERENCE, TRANSCRIPT, language="ja"),
            "",
            "config.reference_audio.language_code",
            "does not speak",
        ),
    ]
    for reference, model_name, field, mention in cases:
        asked = VoiceRequest(model=model_name, reference=reference)
        error = await refused(resolver.resolve(asked, "", at))
        assert field_of(error) == field and mention in error.message, error.message


async def test_raw_references_are_decoded_in_their_format(resolver, csm):
    samples = voice_like(4.0, 16000)
    pcm = (samples * 32767).astype("<i2").tobytes()
    raw = RawFormat("linear16", 16000, 1)
    audio = await resolver.reference_audio(csm, pcm, raw, "reference_audio")
    assert audio.dtype == np.float32 and len(audio) / csm.engine.sample_rate > 3.0


async def test_stored_voices_belong_to_their_owner(resolver, library, csm, vits):
    await library.create(NewVoice("resolved", TRANSCRIPT, REFERENCE, language="en-US"), "alice")
    model, voice = await resolver.resolve(VoiceRequest(voice="voices/resolved"), "alice")
    assert model is csm and voice.label == "voices/resolved" and voice.language == "en"
    assert voice.prompt is not None and voice.prompt.engine == "csm"
    _, voice = await resolver.resolve(VoiceRequest(voice="voices/resolved", language="EN"), "alice")
    assert voice.language == "EN"  # the request's own tag, as the engine takes it
    assert await resolver.has_voice("resolved", "alice")
    assert not await resolver.has_voice("resolved", "bob")
    assert not await resolver.has_voice("Not An Id", "alice")
    error = await refused(resolver.resolve(VoiceRequest(voice="voices/resolved"), "bob"))
    assert error.code == grpc.StatusCode.NOT_FOUND and "voices/resolved" in error.message
    other = VoiceRequest(voice="voices/resolved", model=vits.name)
    error = await refused(resolver.resolve(other, "alice", "config."))
    assert field_of(error) == "config.model" and "prepared for a csm" in error.message
    for name in ("resolved", "voices/", "voices/9-lives"):
        error = await refused(resolver.resolve(VoiceRequest(voice=name), "alice", "config."))
        assert field_of(error) == "config.voice"
    await library.delete("voices/resolved", "alice")


async def test_an_unreadable_prompt_is_data_loss(resolver, library):
    await library.create(NewVoice("broken", TRANSCRIPT, REFERENCE), "carol")
    (prompt,) = resolver.store.root.glob("o-*/broken/prompt.npz")
    prompt.write_bytes(b"not a zip")
    error = await refused(resolver.resolve(VoiceRequest(voice="voices/broken"), "carol"))
    assert error.code == grpc.StatusCode.DATA_LOSS and "delete and recreate" in error.message
    await library.delete("voices/broken", "carol")


def test_voice_names_and_engine_options_name_their_fields():
    assert parse_voice_name("voices/jane", "name") == "jane"
    for name in ("jane", "voices/", "voices/Jane"):
        with pytest.raises(errors.ApiError) as raised:
            parse_voice_name(name, "name")
        assert field_of(raised.value) == "name"
    for option, at, field in (
        ("transcript", "config.", "config.reference_audio.transcript"),
        ("preset_voice", "streaming_config.config.", "streaming_config.config.preset_voice"),
        ("text", "config.", "text"),
        ("something_new", "", "something_new"),
    ):
        with pytest.raises(errors.ApiError) as raised, option_fields(at):
            raise InvalidOptionError(option, "no")
        assert field_of(raised.value) == field


# -- the voice library -----------------------------------------------------------------------


async def test_create_get_list_delete(library, csm):
    new = NewVoice("lib-one", TRANSCRIPT, REFERENCE, display_name="One", language="en")
    voice = await library.create(new, "dave")
    assert (voice.name, voice.model, voice.engine, voice.language) == (
        "voices/lib-one",
        csm.name,
        "csm",
        "en",
    )
    assert voice.transcript == TRANSCRIPT and voice.display_name == "One"
    assert (await library.get("voices/lib-one", "dave")).create_time == voice.create_time
    random = await library.create(NewVoice("", TRANSCRIPT, REFERENCE), "dave")
    voices, token = await library.list(1, "", "dave")
    assert [v.name for v in voices] == ["voices/lib-one"] and token
    voices, token = await library.list(0, token, "dave")
    assert [v.name for v in voices] == [random.name] and token == ""
    assert (await library.list(0, "", "erin")) == ([], "")
    error = await refused(library.create(new, "dave"))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and "already exists" in error.message
    for name in ("voices/lib-one", random.name):
        await library.delete(name, "dave")
    for call in (library.get("voices/lib-one", "dave"), library.delete("voices/lib-one", "dave")):
        error = await refused(call)
        assert error.code == grpc.StatusCode.NOT_FOUND and "ListVoices" in error.message


async def test_library_mistakes_name_their_fields(library, vits):
    cases = [
        (NewVoice("9-lives", TRANSCRIPT, REFERENCE), "voice_id"),
        (NewVoice("ok", "", REFERENCE), "voice.transcript"),
        (NewVoice("ok", TRANSCRIPT, REFERENCE, display_name="x" * 129), "voice.display_name"),
        (NewVoice("ok", TRANSCRIPT, REFERENCE, model=vits.name), "voice.model"),
        (NewVoice("ok", TRANSCRIPT, REFERENCE, language="ja"), "voice.language_code"),
        (NewVoice("ok", TRANSCRIPT, b""), "reference_audio"),
        (NewVoice("ok", TRANSCRIPT, REFERENCE[:2000]), "reference_audio"),
    ]
    for new, field in cases:
        assert field_of(await refused(library.create(new, "frank"))) == field
    assert field_of(await refused(library.get("people/x", "frank"))) == "name"
    assert field_of(await refused(library.delete("voices/", "frank"))) == "name"
    assert field_of(await refused(library.list(-1, "", "frank"))) == "page_size"
    assert field_of(await refused(library.list(0, "zz", "frank"))) == "page_token"
