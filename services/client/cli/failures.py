"""Failed calls explained in the terms of the command that made them: which option was wrong,
what the service knows instead, how to start the gateway."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable

from speechmesh.client.cli.output import FAILED, USAGE, err, hint
from speechmesh.client.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    SpeechmeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from speechmesh.client.languages import close_matches, describe
from speechmesh.client.sync import Client

START_HINT = (
    "Start it with `make run` (in a speechmesh checkout) or `speechmesh up`"
    " (`speechmesh up --offline` serves tiny test models, no downloads), or point --target"
    " (SPEECHMESH_TARGET) at a running gateway."
)
#: Request fields (their last parts) -> the option that sets them, for error messages.
FIELD_FLAGS = {
    "language_code": "--language",
    "transcription.language": "--language",  # a realtime session's fields
    "transcription.model": "--model",
    "transcription.prompt": "--prompt",
    "target_language_code": "--to",
    "source_language_code": "--from",
    "voice": "--voice",
    "preset_voice": "--voice",
    "voice_id": "NAME",
    "voice.transcript": "--transcript",
    "voice.language_code": "--language",
    "reference_audio": "--audio",
    "model": "--model",
    "speed": "--speed",
    "seed": "--seed",
    "temperature": "--temperature",
    "task": "--translate",
    "prompt": "--prompt",
    "text": "TEXT",
    "texts": "TEXT",
    "audio": "FILE",
    "output_audio_config.encoding": "--format",
    "output_audio_config.sample_rate_hertz": "--sample-rate",
    # long-running jobs
    "files": "FILE",
    "content": "FILE",
    "upload": "FILE",
    "uri": "FILE",
    "filter": "--state",
    "file_index": "--file-index",
    "format": "--format",
    "request_id": "--request-id",
}


class Context:
    """What a command was doing, to explain a failure in its own terms."""

    def __init__(self, args: argparse.Namespace, service: str):
        self.args = args
        self.service = service
        #: option -> (value given, function listing the known codes)
        self.languages: dict[str, tuple[str | None, Callable[[], list[str]]]] = {}
        self.voice: str | None = None
        self.client: Client | None = None


def asr_languages(client: Client) -> Callable[[], list[str]]:
    return lambda: sorted({code for m in client.asr.models() for code in m.languages})


def translate_languages(client: Client, kind: str) -> Callable[[], list[str]]:
    """The codes of one kind ("text_input", "speech_output", ...) of every translation model."""
    return lambda: sorted(
        {code for entry in client.translate.languages() for code in getattr(entry, kind)}
    )


def tts_languages(client: Client) -> Callable[[], list[str]]:
    return lambda: sorted({code for m in client.tts.models() for code in m.languages})


def flag(field: str) -> str:
    """The option that sets a request field ("config.language_code" -> "--language",
    "files[2].uri" -> "FILE")."""
    parts = [part.split("[", 1)[0] for part in field.split(".")]
    while parts and parts[0] in ("streaming_config", "config"):
        parts = parts[1:]
    short = ".".join(parts)
    return (
        FIELD_FLAGS.get(short)
        or FIELD_FLAGS.get(".".join(parts[-2:]))  # "session.audio.input.transcription.language"
        or FIELD_FLAGS.get(parts[-1] if parts else "", field)
        or field
    )


def explain(error: SpeechmeshError, ctx: Context) -> int:
    """Says what went wrong on standard error; the exit code."""
    target = ctx.client.target if ctx.client else ctx.args.target
    if isinstance(error, Unavailable) and error.connect_failed:
        err(f"cannot reach the speechmesh gateway at {target}: nothing answers there.")
        hint(START_HINT)
        hint(f"({error.message})")
        return FAILED
    if isinstance(error, Unavailable):
        err(f"the {ctx.service} service is not available at {target}: {error.message}")
        hint(
            "It may still be loading its model, or be down; `speechmesh health` shows every"
            " service."
        )
        return FAILED
    if isinstance(error, Unimplemented):
        err(f"{target} does not serve {ctx.service}: {error.message}")
        hint("`speechmesh up` runs every service behind one gateway.")
        return FAILED
    if isinstance(error, Unauthenticated):
        err(f"the gateway at {target} wants credentials: {error.message}")
        hint("Pass --api-key KEY (or set SPEECHMESH_API_KEY), or --token TOKEN (SPEECHMESH_TOKEN).")
        return FAILED
    if isinstance(error, InvalidArgument) and _explain_language(error, ctx):
        return USAGE
    if isinstance(error, NotFound) and ctx.voice and _explain_voice(error, ctx):
        return USAGE
    if error.field_violations:
        for violation in error.field_violations:
            err(f"{flag(violation.field)}: {violation.description}")
    else:
        err(f"{ctx.service} answered {error.code.name}: {error.message}")
    if error.retry_after:
        hint(f"Try again in {error.retry_after:g} s.")
    if isinstance(error, NotFound) and getattr(ctx.args, "name", "").startswith("operations/"):
        hint("`speechmesh jobs list` shows your jobs (finished ones are kept for a while).")
    usage = isinstance(error, (InvalidArgument, NotFound, AlreadyExists))
    return USAGE if usage else FAILED


def _explain_language(error: InvalidArgument, ctx: Context) -> bool:
    for violation in error.field_violations:
        option = flag(violation.field)
        if option not in ctx.languages:
            continue
        given, known_codes = ctx.languages[option]
        if not given:
            err(f"{option}: {violation.description}")
            return True
        try:
            known = known_codes()
        except SpeechmeshError:
            known = []
        err(f"{option} {given}: {violation.description}")
        matches = close_matches(given, known)
        if matches and given not in matches:
            hint(f"Did you mean {describe(matches)}?")
        elif known:
            shown = ", ".join(known[:40]) + (" ..." if len(known) > 40 else "")
            hint(f"Languages here: {shown}")
        hint("`speechmesh languages` lists what every service supports.")
        return True
    return False


def _explain_voice(error: NotFound, ctx: Context) -> bool:
    assert ctx.client is not None and ctx.voice is not None
    names: list[str] = []
    try:
        names = [voice.id for voice in ctx.client.tts.list_voices()]
        names += [v for model in ctx.client.tts.models() for v in model.preset_voices]
    except SpeechmeshError:
        pass
    err(f"no voice named {ctx.voice!r}: {error.message}")
    matches = difflib.get_close_matches(ctx.voice.removeprefix("voices/"), names, 3, 0.5)
    if matches:
        hint(f"Did you mean {', '.join(matches)}?")
    if names:
        hint(f"Voices here: {', '.join(dict.fromkeys(names))}")
    hint(
        "`speechmesh voices list` shows stored voices;"
        " `speechmesh voices create NAME --audio FILE --transcript TEXT` adds one."
    )
    return True
