"""`speechmesh transcribe`: a recording to text, subtitles or JSON, whole or as a live stream."""

from __future__ import annotations

import argparse
import itertools
import json
import struct
import sys
from collections.abc import Iterable, Iterator

import numpy as np

from speechmesh.client.audio import STREAM_RATE, chunks, decode, file_chunks, to_linear16
from speechmesh.client.cli import output
from speechmesh.client.cli.failures import Context, asr_languages
from speechmesh.client.cli.output import OK, UsageError, input_bytes
from speechmesh.client.formats import ProgressBar, SubtitleWriter, words_text, write_transcript
from speechmesh.client.sync import Client
from speechmesh.client.types import RealtimeDelta, RealtimeTranscript, StreamingResult

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
    if args.realtime:
        return _transcribe_realtime(args, client)
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


# -- --realtime: the same stream over the realtime WebSocket ------------------------------------

#: Rates a realtime session takes 16-bit PCM at; other rates are resampled to the first.
REALTIME_RATES = (16000, 24000)


def _transcribe_realtime(args: argparse.Namespace, client: Client) -> int:
    """`--stream` over `/v1/realtime`: deltas redrawn in place on a terminal, final lines (or
    cues, or JSON lines) as each turn completes."""
    if args.translate:
        raise UsageError("--translate: a realtime session transcribes only; drop --realtime")
    out = sys.stdout
    live = output.isatty(out) and args.format == "text"
    if args.file == "-":
        audio, rate = _realtime_stdin(args)
    else:
        audio, rate = args.file, STREAM_RATE
    writer = SubtitleWriter(out, args.format, args.words) if args.format in ("srt", "vtt") else None
    events = client.realtime.transcribe(
        audio,
        sample_rate=rate,
        realtime=not args.fast,
        language=args.language,
        model=args.model,
        prompt=args.prompt,
    )
    shown = False
    try:
        for event in events:
            if isinstance(event, RealtimeDelta):
                if live and event.text:
                    out.write("\r\033[K" + output.fit(event.text))
                    out.flush()
                    shown = True
                continue
            if not isinstance(event, RealtimeTranscript):
                continue
            if shown:
                out.write("\r\033[K")
                shown = False
            if writer is not None:
                writer.add(event.to_segment())
            elif args.format == "json":
                out.write(_turn_line(event, args.words) + "\n")
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


def _turn_line(event: RealtimeTranscript, words: bool) -> str:
    """A completed turn as a line of JSON."""
    line = {
        "item": event.item_id,
        "start": round(event.start, 3),
        "end": round(event.end, 3),
        "text": event.text,
        "language": event.language,
    }
    if words and event.words:
        line["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in event.words
        ]
    return json.dumps(line, ensure_ascii=False)


def _realtime_stdin(args: argparse.Namespace) -> tuple[Iterable[bytes], int]:
    """Standard input as mono 16-bit PCM chunks at a rate a realtime session takes, sent as
    they arrive: raw PCM (--raw-rate) or a live WAV stream of 16-bit PCM (resampled and mixed
    down here when needed); any other container is read whole and decoded."""
    stream = sys.stdin.buffer
    read = getattr(stream, "read1", stream.read)
    rest = iter(lambda: read(6400), b"")
    if args.raw_rate:
        return _pcm16(rest, args.raw_rate, 1)
    head = stream.read(4)
    if head == b"RIFF":
        rate, channels = _wav_header(stream)
        return _pcm16(rest, rate, channels)
    samples = decode(head + stream.read(), "standard input")
    return chunks(to_linear16(samples)), STREAM_RATE


def _wav_header(stream) -> tuple[int, int]:
    """Reads a WAV stream's header up to its data: (rate, channels) of its 16-bit PCM."""
    form = stream.read(8)[4:]
    if form != b"WAVE":
        raise UsageError("standard input: a RIFF stream that is not WAV")
    found: tuple[int, int] | None = None
    while True:
        head = stream.read(8)
        if len(head) < 8:
            raise UsageError("standard input: the WAV stream ended before its data")
        kind, size = head[:4], struct.unpack("<I", head[4:])[0]
        if kind == b"data":
            break
        body = stream.read(size + (size & 1))
        if kind == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag not in (1, 0xFFFE) or bits != 16:
                raise UsageError(
                    "standard input: --realtime takes a WAV stream of 16-bit PCM"
                    f" (this one: format {tag}, {bits} bits); or pipe raw PCM with --raw-rate"
                )
            found = (rate, channels)
    if found is None:
        raise UsageError("standard input: the WAV stream has no format before its data")
    return found


def _pcm16(pieces: Iterable[bytes], rate: int, channels: int) -> tuple[Iterator[bytes], int]:
    """16-bit PCM pieces of any size, rate and channel count as mono whole-sample chunks at
    a realtime rate (resampled to 16 kHz as they come when `rate` is not one)."""
    out_rate = rate if rate in REALTIME_RATES else REALTIME_RATES[0]

    def converted() -> Iterator[bytes]:
        import soxr

        resampler = (
            soxr.ResampleStream(rate, out_rate, 1, dtype="int16") if out_rate != rate else None
        )
        frame = 2 * channels
        held = b""
        for piece in pieces:
            data, held = held + piece, b""
            whole = len(data) // frame * frame
            data, held = data[:whole], data[whole:]
            if not data:
                continue
            samples = np.frombuffer(data, "<i2")
            if channels > 1:
                samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
            if resampler is not None:
                samples = resampler.resample_chunk(samples)
            if len(samples):
                yield samples.astype("<i2").tobytes()
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.int16), last=True)
            if len(tail):
                yield tail.astype("<i2").tobytes()

    return converted(), out_rate
