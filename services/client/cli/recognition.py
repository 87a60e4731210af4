"""`speechmesh transcribe`: a recording to text, subtitles or JSON, whole or as a live stream."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterator

from speechmesh.client.audio import STREAM_RATE, chunks, decode, file_chunks, to_linear16
from speechmesh.client.cli import output
from speechmesh.client.cli.failures import Context, asr_languages
from speechmesh.client.cli.output import OK, input_bytes
from speechmesh.client.formats import ProgressBar, SubtitleWriter, words_text, write_transcript
from speechmesh.client.sync import Client
from speechmesh.client.types import StreamingResult

#: Files shorter than this get no progress bar.
PROGRESS_MIN_SECONDS = 30.0
#: Long files go to the service in pieces of about this many seconds (the progress steps).
PIECE_SECONDS = 60.0


def transcribe(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, asr_languages(client))
    options = dict(
        language=args.language,
        model=args.model,
        translate=args.translate,
        words=args.words,
        prompt=args.prompt,
    )
    if args.stream:
        return _transcribe_stream(args, client, options)
    data = input_bytes(args.file)
    if args.raw_rate:
        transcript = client.asr.recognize(
            data, encoding="linear16", sample_rate=args.raw_rate, **options
        )
    else:
        bar = ProgressBar(sys.stderr, "transcribing") if output.isatty(sys.stderr) else None

        def progress(done: float, total: float) -> None:
            if bar is not None and total >= PROGRESS_MIN_SECONDS:
                bar.update(done, total)

        try:
            if args.file == "-":
                decode(data, "standard input")  # name the input in the message if not audio
            transcript = client.asr.recognize_file(
                data if args.file == "-" else args.file,
                progress=progress,
                piece_seconds=PIECE_SECONDS,
                **options,
            )
        finally:
            if bar is not None:
                bar.close()
    write_transcript(sys.stdout, transcript, args.format, args.words)
    return OK


def _stdin_chunks(args: argparse.Namespace) -> tuple[Iterator[bytes], str | None, int | None]:
    """Audio from standard input as it arrives: raw LINEAR16 (--raw-rate), a live WAV stream
    (sent as it comes, header first), or any other container (read whole, then sent)."""
    stream = sys.stdin.buffer
    read = getattr(stream, "read1", stream.read)

    def rest() -> Iterator[bytes]:
        return iter(lambda: read(6400), b"")

    if args.raw_rate:
        return rest(), "linear16", args.raw_rate
    head = stream.read(4)
    if head == b"RIFF":
        return itertools.chain([head], rest()), None, None
    samples = decode(head + stream.read(), "standard input")
    return chunks(to_linear16(samples)), "linear16", STREAM_RATE


def _final_line(event: StreamingResult) -> str:
    """A final result as a line of JSON."""
    line = {
        "utterance": event.utterance_index,
        "start": round(event.start, 3),
        "end": round(event.end, 3),
        "text": event.text,
        "language": event.language,
    }
    if event.words:
        line["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in event.words
        ]
    return json.dumps(line, ensure_ascii=False)


def _transcribe_stream(args: argparse.Namespace, client: Client, options: dict) -> int:
    out = sys.stdout
    live = output.isatty(out) and args.format == "text"
    if args.file == "-":
        pieces, encoding, rate = _stdin_chunks(args)
    else:
        pieces = file_chunks(args.file, realtime=not args.fast)
        encoding, rate = "linear16", STREAM_RATE
    writer = SubtitleWriter(out, args.format, args.words) if args.format in ("srt", "vtt") else None
    results = client.asr.stream(
        pieces, encoding=encoding, sample_rate=rate, interim_results=live, **options
    )
    shown = False
    try:
        for event in results:
            if not isinstance(event, StreamingResult):
                continue
            if not event.is_final:
                if live and event.text:
                    out.write("\r\033[K" + output.fit(event.text))
                    out.flush()
                    shown = True
                continue
            if shown:
                out.write("\r\033[K")
                shown = False
            if writer is not None:
                writer.add(event.to_segment())
            elif args.format == "json":
                out.write(_final_line(event) + "\n")
            else:
                if event.text:
                    out.write(event.text + "\n")
                if args.words and event.words:
                    out.write(words_text(event.words) + "\n")
            out.flush()
    finally:
        if shown:
            out.write("\r\033[K")
            out.flush()
    return OK
