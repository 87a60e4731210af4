"""`speechmesh translate` (text) and `speechmesh translate-speech` (a recording, to text and
to speech)."""

from __future__ import annotations

import argparse
import json
import sys

from speechmesh.client.audio import decode
from speechmesh.client.cli.failures import Context, translate_languages
from speechmesh.client.cli.output import (
    OK,
    UsageError,
    audio_format,
    audio_output,
    err,
    input_bytes,
    seconds,
)
from speechmesh.client.sync import Client
from speechmesh.client.types import Translation

#: Lines of standard input translated in one call.
BATCH_LINES = 128


def translate(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--to"] = (args.to, translate_languages(client, "text_output"))
    ctx.languages["--from"] = (args.source, translate_languages(client, "text_input"))
    lines = sys.stdin.read().splitlines() if args.text == "-" else [args.text]
    wanted = [i for i, line in enumerate(lines) if line.strip()]
    if not wanted:
        raise UsageError("nothing to translate: TEXT is empty")
    translated: dict[int, Translation] = {}
    for start in range(0, len(wanted), BATCH_LINES):
        batch = wanted[start : start + BATCH_LINES]
        results = client.translate.text(
            [lines[i] for i in batch], to=args.to, source=args.source, model=args.model
        )
        translated.update(zip(batch, results, strict=True))
    if args.json:
        found = [
            {
                "text": lines[i],
                "translation": translated[i].text,
                "source_language": translated[i].source_language,
            }
            for i in wanted
        ]
        print(json.dumps(found, ensure_ascii=False, indent=2))
        return OK
    for i, line in enumerate(lines):
        print(translated[i].text if i in translated else line)
    return OK


def translate_speech(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    speech = args.out is not None
    text = args.text or not speech
    kind = "speech_output" if speech else "text_output"
    ctx.languages["--to"] = (args.to, translate_languages(client, kind))
    ctx.languages["--from"] = (args.source, translate_languages(client, "speech_input"))
    audio = input_bytes(args.file)
    if args.file != "-":
        decode(audio, args.file)  # a clear message for a file that is not audio
    fmt = audio_format(args.out, args.format)
    result = client.translate.speech(
        audio,
        to=args.to,
        source=args.source,
        text=text,
        speech=speech,
        source_transcript=args.transcript,
        format=fmt if speech else None,
        voice=args.voice,
        model=args.model,
    )
    lines = sys.stderr if args.out == "-" else sys.stdout
    if args.transcript:
        prefix = f"[{result.source_language or args.source or '?'}] " if text else ""
        print(prefix + result.source_transcript, file=lines)
    if text:
        prefix = f"[{result.target_language}] " if args.transcript else ""
        print(prefix + result.text, file=lines)
    if speech and result.audio is not None:
        with audio_output(args.out) as stream:
            stream.write(result.audio.audio)
        if args.out != "-":
            err(
                f"wrote {args.out}: {seconds(result.audio.duration)} of {result.target_language}"
                f" speech, {result.audio.sample_rate} Hz {fmt}"
            )
    return OK
