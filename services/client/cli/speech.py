"""`speechmesh speak` (text to speech, whole or sentence by sentence) and `speechmesh voices`
(create, list and delete stored voices)."""

from __future__ import annotations

import argparse
import codecs
import json
import sys
from collections.abc import Iterator

from speechmesh.client._requests import voice_name
from speechmesh.client.audio import decode, read_bytes
from speechmesh.client.cli import output
from speechmesh.client.cli.failures import Context, tts_languages
from speechmesh.client.cli.output import (
    OK,
    UsageError,
    audio_format,
    audio_output,
    err,
    input_text,
    seconds,
    table,
)
from speechmesh.client.errors import SpeechmeshError
from speechmesh.client.sync import Client


def _voice_options(client: Client, voice: str | None) -> dict:
    """A preset voice of a model by its name, else a stored voice."""
    if not voice:
        return {}
    try:
        presets = {v for model in client.tts.models() for v in model.preset_voices}
    except SpeechmeshError:
        presets = set()
    return {"preset_voice": voice} if voice in presets else {"voice": voice}


def _stdin_pieces() -> Iterator[str]:
    """Standard input as text pieces as they arrive (a language model's tokens, lines)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or not hasattr(stream, "read1"):
        yield from sys.stdin
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while data := stream.read1(4096):
        text = decoder.decode(data)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def speak(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, tts_languages(client))
    ctx.voice = args.voice
    fmt = audio_format(args.out, args.format)
    out = args.out or ("-" if not output.isatty(sys.stdout) else f"speech.{fmt}")
    options = dict(
        _voice_options(client, args.voice),
        language=args.language,
        model=args.model,
        format=fmt,
        sample_rate=args.sample_rate,
        speed=args.speed or 0.0,
        temperature=args.temperature,
        seed=args.seed or 0,
    )
    if args.stream:
        return _speak_stream(args, client, out, options)
    text = input_text(args.text)
    if not text.strip():
        raise UsageError("nothing to say: TEXT is empty")
    speech = client.tts.synthesize(text, **options)
    with audio_output(out) as stream:
        stream.write(speech.audio)
    if out != "-" or output.isatty(sys.stderr):
        _wrote(out, speech.duration, len(speech.sentences), speech.sample_rate, fmt, speech.seed)
    return OK


def _speak_stream(args: argparse.Namespace, client: Client, out: str, options: dict) -> int:
    pieces = _stdin_pieces() if args.text == "-" else iter([args.text])
    synthesis = client.tts.stream(pieces, **options)
    chatty = output.isatty(sys.stderr)
    with audio_output(out) as stream:
        for chunk in synthesis:
            stream.write(chunk.audio)
            stream.flush()
            if chatty and chunk.text:
                print(f"  sentence {chunk.sentence_index + 1}: {chunk.text}", file=sys.stderr)
    summary = synthesis.summary
    if summary is not None and (out != "-" or chatty):
        _wrote(
            out,
            summary.duration,
            summary.sentence_count,
            summary.sample_rate,
            options["format"],
            summary.seed,
        )
    return OK


def _wrote(out: str, duration: float, sentences: int, rate: int, fmt: str, seed: int) -> None:
    err(
        f"wrote {'standard output' if out == '-' else out}: {seconds(duration)},"
        f" {sentences} sentence(s), {rate} Hz {fmt}, seed {seed}"
    )


def voices_create(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, tts_languages(client))
    audio = read_bytes(args.audio)
    decode(audio, args.audio)
    voice = client.tts.create_voice(
        args.name,
        audio,
        args.transcript,
        language=args.language,
        display_name=args.display_name,
        model=args.model,
    )
    print(
        f"created {voice.name}: {voice.reference_duration:.1f} s reference in"
        f" {voice.language or '?'}, for {voice.engine} model {voice.model}"
    )
    return OK


def voices_list(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    voices = client.tts.list_voices()
    if args.json:
        print(json.dumps([v.to_dict() for v in voices], ensure_ascii=False, indent=2))
        return OK
    if not voices:
        print(
            "no stored voices; add one with"
            " `speechmesh voices create NAME --audio FILE --transcript TEXT`",
            file=sys.stderr,
        )
        return OK
    rows = [["NAME", "LANGUAGE", "SECONDS", "ENGINE", "CREATED", "TRANSCRIPT"]]
    for v in voices:
        created = v.created.strftime("%Y-%m-%d %H:%M") if v.created else ""
        transcript = v.transcript if len(v.transcript) <= 40 else v.transcript[:39] + "…"
        rows.append(
            [v.id, v.language, f"{v.reference_duration:.1f}", v.engine, created, transcript]
        )
    table(rows)
    return OK


def voices_delete(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.voice = args.name
    client.tts.delete_voice(args.name)
    print(f"deleted {voice_name(args.name)}")
    return OK
