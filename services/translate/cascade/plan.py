"""A cascade request checked once, before any audio moves: which ASR, text and TTS models run
it, in which languages, and whose voice speaks (CascadeConfig -> CascadePlan).

The ASR and TTS services are asked for their models (CascadePeers.models); a stored voice is
looked up in the caller's namespace, so that a missing one is NOT_FOUND before the recording is
recognized. Languages compare by primary subtag ("en-US" is "en"; ISO 639-3 codes such as "eng"
are read as their ISO 639-1 tag).
"""

from __future__ import annotations

from dataclasses import dataclass

from speechmesh.inference.languages import primary_subtag
from speechmesh.runtime import errors
from speechmesh.translate import languages as seamless_languages
from speechmesh.translate.cascade.peers import CascadePeers
from speechmesh.translate.engines.base import InvalidOptionError
from speechmesh.translate.models import TranslateModel, TranslateModels


def language_key(tag: str) -> str:
    """The primary language of a BCP-47 tag or an ISO 639-3 code ('eng' -> 'en'); '' when
    it is not a tag."""
    try:
        primary = primary_subtag(tag)
    except ValueError:
        return ""
    if len(primary) == 3:
        try:
            return primary_subtag(seamless_languages.to_bcp47(primary))
        except ValueError:
            return primary
    return primary


def speaks(codes, tag: str) -> bool:
    """Whether `tag` is among `codes` by primary language."""
    key = language_key(tag)
    return any(language_key(code) == key for code in codes)


@dataclass(frozen=True)
class Voice:
    """Whose voice speaks: "speaker" (cloned), "stored" (a voices/ name) or "preset"."""

    kind: str
    name: str = ""
    #: The preset for segments the speaker's voice cannot be cloned for.
    fallback_preset: str = ""
    #: Why no segment can be cloned (the TTS model cannot clone); empty when they can.
    no_cloning: str = ""


@dataclass(frozen=True)
class CascadePlan:
    #: BCP-47 tags; `source` empty means detect.
    source: str
    target: str
    want_text: bool
    want_speech: bool
    want_transcript: bool
    #: ASR model name, and whether its translate task makes the English.
    recognition_model: str
    recognizer_translates: bool
    #: This service's text model, when one translates into `target`.
    text_model: TranslateModel | None
    #: TTS model name (empty: the TTS service picks, e.g. a stored voice's model).
    synthesis_model: str
    voice: Voice
    #: The languages the TTS model speaks.
    synthesis_languages: tuple[str, ...]
    #: The caller's identity, sent with every call to a peer.
    caller: str

    def needs_text_translation(self, source: str) -> bool:
        """Whether speech recognized in `source` must go through the text model."""
        if self.recognizer_translates:
            return False
        return language_key(source) != language_key(self.target)


async def cascade_plan(
    peers: CascadePeers,
    models: TranslateModels,
    config,
    *,
    want_text: bool,
    want_speech: bool,
    want_transcript: bool,
    caller: str,
    prefix: str = "",
) -> CascadePlan:
    """Checks `config` (a SpeechTranslationConfig) for the cascade path; errors name the fields
    under `prefix` (e.g. "streaming_config.")."""
    at = prefix + "config."
    source, target = config.source_language_code.strip(), config.target_language_code.strip()
    for field, tag in (("target_language_code", target), ("source_language_code", source)):
        if (tag or field.startswith("target")) and not language_key(tag):
            raise errors.invalid_argument(
                at + field, f"{tag!r} is not a BCP-47 language tag (examples: en, fr, pt-BR)"
            )
    cascade = config.cascade
    asr = _pick(await peers.models("asr", caller), cascade.recognition_model, "ASR", at)
    recognizer_translates = (
        language_key(target) == "en"
        and asr.supports_translation
        and not cascade.disable_recognizer_translation
        and language_key(source or "und") != "en"
    )
    if source and not speaks(asr.language_codes, source):
        raise errors.invalid_argument(
            at + "source_language_code",
            f"the ASR model {asr.name} does not recognize {source!r}; it knows"
            f" {_listed(asr.language_codes)}",
        )
    text_model = None
    if not recognizer_translates:
        text_model = _text_model(models, config.model, target, at)
        if text_model is None and source and language_key(source) != language_key(target):
            recognizer = "translates only into English" if asr.supports_translation else "does not"
            raise errors.invalid_argument(
                at + "target_language_code",
                f"no text model of this service translates into {target!r}, and the ASR model"
                f" {asr.name} {recognizer}; ListLanguages lists what the cascade produces",
            )
    synthesis_model, voice, synthesis_languages = "", Voice("preset"), ()
    if want_speech:
        synthesis_model, voice, synthesis_languages = await _synthesis(
            peers, cascade, target, caller, at
        )
    return CascadePlan(
        source,
        target,
        want_text,
        want_speech,
        want_transcript,
        asr.name,
        recognizer_translates,
        text_model,
        synthesis_model,
        voice,
        synthesis_languages,
        caller,
    )


def _pick(infos: list, name: str, title: str, at: str):
    """The peer model `name` (empty: its default) from its ListModels answer."""
    for info in infos:
        if (name and name in (info.name, info.source)) or (not name and info.default):
            return info
    names = ", ".join(info.name for info in infos) or "none"
    if not name:
        raise errors.unavailable(
            f"the {title} service has no default model ready (its models: {names})",
            5.0,
            "CASCADE_PEER_NOT_READY",
        )
    field = "recognition_model" if title == "ASR" else "synthesis_model"
    raise errors.not_found(
        "model",
        name,
        f"{at}cascade.{field}: the {title} service has no model {name!r} (it has {names})",
    )


def _text_model(models: TranslateModels, name: str, target: str, at: str) -> TranslateModel | None:
    """The model of this service that translates text into `target`: the named one, else a
    text-only model (the lighter text model), else the default, else the first that can; None
    when none can."""
    if name:
        candidates = [models.for_task(name, "t2tt", at + "model")]
    else:
        # A text-only model (the lighter text model setting) first, then the default.
        candidates = [m for m in models.ready() if m.can("t2tt")]
        candidates.sort(key=lambda m: (set(m.engine.tasks) != {"t2tt"}, m is not models.default))
    for model in candidates:
        try:
            model.engine.language_code(target, "text", "out")
        except InvalidOptionError:
            if name:
                raise errors.invalid_argument(
                    at + "target_language_code",
                    f"model {model.name} cannot translate into {target!r}",
                ) from None
            continue
        return model
    return None


async def _synthesis(peers: CascadePeers, cascade, target: str, caller: str, at: str):
    """(TTS model name, Voice, its languages) for speech output, checked against the TTS
    service."""
    infos = await peers.models("tts", caller)
    which = cascade.WhichOneof("voice_source")
    named = cascade.synthesis_model
    if which == "voice":
        stored = await peers.get_voice(cascade.voice, caller)  # NOT_FOUND passes through
        model = _pick(infos, named or stored.model, "TTS", at)
        voice = Voice("stored", cascade.voice)
    elif which == "preset_voice":
        # Presets share names across models ("default" of every single-voice VITS): the one
        # that also speaks the target first.
        owners = [i for i in infos if any(p.name == cascade.preset_voice for p in i.preset_voices)]
        owners.sort(key=lambda i: not speaks(i.language_codes, target))
        owner = owners[0] if owners else None
        model = _pick(infos, named or (owner.name if owner else ""), "TTS", at)
        _check_preset(model, cascade.preset_voice, at + "cascade.preset_voice")
        voice = Voice("preset", cascade.preset_voice)
    else:
        if named:
            model = _pick(infos, named, "TTS", at)
        else:
            default = _pick(infos, "", "TTS", at)
            cloners = [
                i for i in infos if i.supports_voice_cloning and speaks(i.language_codes, target)
            ]
            model = default if default.supports_voice_cloning or not cloners else cloners[0]
        no_cloning = (
            ""
            if model.supports_voice_cloning
            else f"the TTS model {model.name} cannot clone a voice"
        )
        voice = Voice("speaker", "", cascade.fallback_preset_voice, no_cloning)
    if cascade.fallback_preset_voice:
        _check_preset(model, cascade.fallback_preset_voice, at + "cascade.fallback_preset_voice")
    if not speaks(model.language_codes, target):
        raise errors.invalid_argument(
            at + "target_language_code",
            f"the TTS model {model.name} does not speak {target!r}; it speaks"
            f" {_listed(model.language_codes)}",
        )
    return model.name, voice, tuple(model.language_codes)


def _check_preset(model, name: str, field: str) -> None:
    presets = [p.name for p in model.preset_voices]
    if name not in presets:
        raise errors.invalid_argument(
            field,
            f"{name!r} is not a voice of the TTS model {model.name}"
            f" ({', '.join(presets) if presets else 'it has no preset voices'})",
        )


def _listed(codes) -> str:
    codes = sorted(codes)
    return ", ".join(codes[:20]) + (f" and {len(codes) - 20} more" if len(codes) > 20 else "")
