"""What the cascade path can do now (ListLanguages): asked of the ASR and TTS services and of
this service's text models."""

from __future__ import annotations

from dataclasses import dataclass, field

from speechmesh.runtime import errors
from speechmesh.translate.cascade.peers import CascadePeers
from speechmesh.translate.cascade.plan import language_key
from speechmesh.translate.models import TranslateModels


@dataclass
class CascadeReach:
    available: bool = False
    #: Why the cascade cannot run, or cannot speak, naming the service; empty when it can.
    reason: str = ""
    speech_in: list[str] = field(default_factory=list)
    text_out: list[str] = field(default_factory=list)
    speech_out: list[str] = field(default_factory=list)
    speaker_voice: bool = False


async def cascade_reach(peers: CascadePeers, models: TranslateModels, caller: str) -> CascadeReach:
    reach = CascadeReach()
    try:
        asr = [m for m in await peers.models("asr", caller) if m.default]
    except errors.ApiError as error:
        reach.reason = error.message
        return reach
    if not asr:
        reach.reason = "the ASR service has no default model ready"
        return reach
    reach.available = True
    recognizer = asr[0]
    reach.speech_in = sorted(recognizer.language_codes)
    text_out = set(reach.speech_in)
    if recognizer.supports_translation:
        text_out.add("en")
    for model in models.ready():
        if model.can("t2tt"):
            text_out.update(model.engine.languages.text_out)
    reach.text_out = sorted(text_out)
    try:
        voices = await peers.models("tts", caller)
    except errors.ApiError as error:
        reach.reason = f"{error.message} (the cascade translates into text only)"
        return reach
    spoken = {language_key(code) for info in voices for code in info.language_codes}
    reach.speech_out = [tag for tag in reach.text_out if language_key(tag) in spoken]
    reach.speaker_voice = any(info.supports_voice_cloning for info in voices)
    return reach
