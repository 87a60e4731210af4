"""The client commands of `speechmesh`: transcribe, translate, translate-speech, speak, voices,
health and languages, talking to the gateway (or one service) through speechmesh.client.

Exit codes: 0 success; 1 the call failed (nothing listening, a service down, a server error);
2 a usage error (bad option, missing or unreadable file, unknown language, voice or model).
"""

from __future__ import annotations

import argparse
import codecs
import itertools
import json
import pathlib
import shutil
import sys
from collections.abc import Callable, Iterator

from speechmesh.client import _requests as req
from speechmesh.client.audio import (
    STREAM_RATE,
    AudioFileError,
    chunks,
    decode,
    file_chunks,
    read_bytes,
    to_linear16,
)
from speechmesh.client.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    SpeechmeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from speechmesh.client.formats import (
    ProgressBar,
    SubtitleWriter,
    words_text,
    write_transcript,
)
from speechmesh.client.languages import close_matches, describe, name
from speechmesh.client.sync import Client
from speechmesh.client.types import StreamingResult
from speechmesh.runtime.registry import SERVICES

OK, FAILED, USAGE = 0, 1, 2
START_HINT = (
    "Start it with `make run` (in a speechmesh checkout) or `speechmesh up`"
    " (`speechmesh up --offline` serves tiny test models, no downloads), or point --target"
    " (SPEECHMESH_TARGET) at a running gateway."
)
#: Files shorter than this get no progress bar.
PROGRESS_MIN_SECONDS = 30.0
#: Long files go to the service in pieces of about this many seconds (the progress steps).
PIECE_SECONDS = 60.0
#: Request fields (their last parts) -> the option that sets them, for error messages.
FIELD_FLAGS = {
    "language_code": "--language",
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
}
#: Output audio formats by file extension.
EXTENSIONS = {"wav": "wav", "flac": "flac", "ogg": "ogg", "opus": "ogg", "mp3": "mp3"}
EXTENSIONS.update(pcm="pcm", raw="pcm")


class UsageError(Exception):
    """A mistake in the command line; the message says what to do."""


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _err(message: str) -> None:
    print(f"speechmesh: {message}", file=sys.stderr)


# -- errors ------------------------------------------------------------------------------------


def _flag(field: str) -> str:
    parts = field.split(".")
    while parts and parts[0] in ("streaming_config", "config"):
        parts = parts[1:]
    short = ".".join(parts)
    return FIELD_FLAGS.get(short) or FIELD_FLAGS.get(parts[-1] if parts else "", field) or field


class Context:
    """What a command was doing, to explain a failure in its own terms."""

    def __init__(self, args: argparse.Namespace, service: str):
        self.args = args
        self.service = service
        #: option -> (value given, function listing the known codes)
        self.languages: dict[str, tuple[str | None, Callable[[], list[str]]]] = {}
        self.voice: str | None = None
        self.client: Client | None = None


def _explain(error: SpeechmeshError, ctx: Context) -> int:
    target = ctx.client.target if ctx.client else ctx.args.target
    if isinstance(error, Unavailable) and error.connect_failed:
        _err(f"cannot reach the speechmesh gateway at {target}: nothing answers there.")
        print(f"  {START_HINT}", file=sys.stderr)
        print(f"  ({error.message})", file=sys.stderr)
        return FAILED
    if isinstance(error, Unavailable):
        _err(f"the {ctx.service} service is not available at {target}: {error.message}")
        print(
            "  It may still be loading its model, or be down; `speechmesh health` shows every"
            " service.",
            file=sys.stderr,
        )
        return FAILED
    if isinstance(error, Unimplemented):
        _err(f"{target} does not serve {ctx.service}: {error.message}")
        print("  `speechmesh up` runs every service behind one gateway.", file=sys.stderr)
        return FAILED
    if isinstance(error, Unauthenticated):
        _err(f"the gateway at {target} wants credentials: {error.message}")
        print(
            "  Pass --api-key KEY (or set SPEECHMESH_API_KEY), or --token TOKEN"
            " (SPEECHMESH_TOKEN).",
            file=sys.stderr,
        )
        return FAILED
    if isinstance(error, InvalidArgument) and _explain_language(error, ctx):
        return USAGE
    if isinstance(error, NotFound) and ctx.voice and _explain_voice(error, ctx):
        return USAGE
    if error.field_violations:
        for violation in error.field_violations:
            _err(f"{_flag(violation.field)}: {violation.description}")
    else:
        _err(f"{ctx.service} answered {error.code.name}: {error.message}")
    if error.retry_after:
        print(f"  Try again in {error.retry_after:g} s.", file=sys.stderr)
    usage = isinstance(error, (InvalidArgument, NotFound, AlreadyExists))
    return USAGE if usage else FAILED


def _explain_language(error: InvalidArgument, ctx: Context) -> bool:
    for violation in error.field_violations:
        flag = _flag(violation.field)
        if flag not in ctx.languages:
            continue
        given, known_codes = ctx.languages[flag]
        if not given:
            _err(f"{flag}: {violation.description}")
            return True
        try:
            known = known_codes()
        except SpeechmeshError:
            known = []
        _err(f"{flag} {given}: {violation.description}")
        matches = close_matches(given, known)
        if matches and given not in matches:
            print(f"  Did you mean {describe(matches)}?", file=sys.stderr)
        elif known:
            shown = ", ".join(known[:40]) + (" ..." if len(known) > 40 else "")
            print(f"  Languages here: {shown}", file=sys.stderr)
        print("  `speechmesh languages` lists what every service supports.", file=sys.stderr)
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
    _err(f"no voice named {ctx.voice!r}: {error.message}")
    import difflib

    matches = difflib.get_close_matches(ctx.voice.removeprefix("voices/"), names, 3, 0.5)
    if matches:
        print(f"  Did you mean {', '.join(matches)}?", file=sys.stderr)
    if names:
        print(f"  Voices here: {', '.join(dict.fromkeys(names))}", file=sys.stderr)
    print(
        "  `speechmesh voices list` shows stored voices;"
        " `speechmesh voices create NAME --audio FILE --transcript TEXT` adds one.",
        file=sys.stderr,
    )
    return True


# -- shared helpers ----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.target,
        tls=True if args.tls else None,
        api_key=args.api_key,
        token=args.token,
        ca_cert=args.ca_cert,
        timeout=args.timeout,
    )


def _input_bytes(source: str) -> bytes:
    """The bytes of a file argument, or of standard input for "-"."""
    if source == "-":
        return sys.stdin.buffer.read()
    return read_bytes(source)


def _input_text(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    return text


def _audio_format(out: str | None, explicit: str | None) -> str:
    if explicit:
        return explicit
    if out and out != "-":
        return EXTENSIONS.get(pathlib.Path(out).suffix.lower().lstrip("."), "wav")
    return "wav"


def _open_output(out: str):
    """A binary stream for audio: a file, or standard output for "-"."""
    if out == "-":
        if _isatty(sys.stdout):
            raise UsageError(
                "will not write audio to the terminal: give --out FILE, or pipe the output"
                " (e.g. `| aplay` or `> speech.wav`)"
            )
        return sys.stdout.buffer, False
    path = pathlib.Path(out)
    if path.parent and not path.parent.exists():
        raise UsageError(f"--out {out}: the folder {path.parent} does not exist")
    return path.open("wb"), True


def _seconds(value: float) -> str:
    return f"{value:.2f} s"


def _fit(text: str) -> str:
    """The end of `text`, as much as fits on one terminal line."""
    width = shutil.get_terminal_size((80, 20)).columns - 1
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _asr_languages(client: Client) -> Callable[[], list[str]]:
    return lambda: sorted({code for m in client.asr.models() for code in m.languages})


def _translate_languages(client: Client, kind: str) -> Callable[[], list[str]]:
    return lambda: sorted(
        {code for entry in client.translate.languages() for code in getattr(entry, kind)}
    )


def _tts_languages(client: Client) -> Callable[[], list[str]]:
    return lambda: sorted({code for m in client.tts.models() for code in m.languages})


# -- transcribe --------------------------------------------------------------------------------


def _transcribe(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, _asr_languages(client))
    options = dict(
        language=args.language,
        model=args.model,
        translate=args.translate,
        words=args.words,
        prompt=args.prompt,
    )
    if args.stream:
        return _transcribe_stream(args, client, options)
    data = _input_bytes(args.file)
    if args.raw_rate:
        transcript = client.asr.recognize(
            data, encoding="linear16", sample_rate=args.raw_rate, **options
        )
    else:
        bar = ProgressBar(sys.stderr, "transcribing") if _isatty(sys.stderr) else None

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


def _transcribe_stream(args: argparse.Namespace, client: Client, options: dict) -> int:
    out = sys.stdout
    live = _isatty(out) and args.format == "text"
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
                    out.write("\r\033[K" + _fit(event.text))
                    out.flush()
                    shown = True
                continue
            if shown:
                out.write("\r\033[K")
                shown = False
            if writer is not None:
                writer.add(event.to_segment())
            elif args.format == "json":
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
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
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


# -- translate ---------------------------------------------------------------------------------


def _translate(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--to"] = (args.to, _translate_languages(client, "text_output"))
    ctx.languages["--from"] = (args.source, _translate_languages(client, "text_input"))
    lines = sys.stdin.read().splitlines() if args.text == "-" else [args.text]
    wanted = [i for i, line in enumerate(lines) if line.strip()]
    if not wanted:
        raise UsageError("nothing to translate: TEXT is empty")
    translated: dict[int, object] = {}
    for start in range(0, len(wanted), 128):
        batch = wanted[start : start + 128]
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


def _translate_speech(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    speech = args.out is not None
    text = args.text or not speech
    kind = "speech_output" if speech else "text_output"
    ctx.languages["--to"] = (args.to, _translate_languages(client, kind))
    ctx.languages["--from"] = (args.source, _translate_languages(client, "speech_input"))
    audio = _input_bytes(args.file)
    if args.file != "-":
        decode(audio, args.file)  # a clear message for a file that is not audio
    fmt = _audio_format(args.out, args.format)
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
        stream, close = _open_output(args.out)
        try:
            stream.write(result.audio.audio)
            stream.flush()
        finally:
            if close:
                stream.close()
        if args.out != "-":
            _err(
                f"wrote {args.out}: {_seconds(result.audio.duration)} of {result.target_language}"
                f" speech, {result.audio.sample_rate} Hz {fmt}"
            )
    return OK


# -- speak -------------------------------------------------------------------------------------


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


def _speak(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, _tts_languages(client))
    ctx.voice = args.voice
    fmt = _audio_format(args.out, args.format)
    out = args.out or ("-" if not _isatty(sys.stdout) else f"speech.{fmt}")
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
        pieces = _stdin_pieces() if args.text == "-" else iter([args.text])
        synthesis = client.tts.stream(pieces, **options)
        stream, close = _open_output(out)
        chatty = _isatty(sys.stderr)
        try:
            for chunk in synthesis:
                stream.write(chunk.audio)
                stream.flush()
                if chatty and chunk.text:
                    print(f"  sentence {chunk.sentence_index + 1}: {chunk.text}", file=sys.stderr)
        finally:
            if close:
                stream.close()
        summary = synthesis.summary
        if summary is not None and (out != "-" or chatty):
            _err(
                f"wrote {'standard output' if out == '-' else out}: {_seconds(summary.duration)},"
                f" {summary.sentence_count} sentence(s), {summary.sample_rate} Hz {fmt},"
                f" seed {summary.seed}"
            )
        return OK
    text = _input_text(args.text)
    if not text.strip():
        raise UsageError("nothing to say: TEXT is empty")
    speech = client.tts.synthesize(text, **options)
    stream, close = _open_output(out)
    try:
        stream.write(speech.audio)
        stream.flush()
    finally:
        if close:
            stream.close()
    if out != "-" or _isatty(sys.stderr):
        _err(
            f"wrote {'standard output' if out == '-' else out}: {_seconds(speech.duration)},"
            f" {len(speech.sentences)} sentence(s), {speech.sample_rate} Hz {fmt},"
            f" seed {speech.seed}"
        )
    return OK


# -- voices ------------------------------------------------------------------------------------


def _voices_create(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, _tts_languages(client))
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


def _voices_list(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    voices = client.tts.list_voices()
    if args.json:
        found = [
            {
                "name": v.name,
                "display_name": v.display_name,
                "language": v.language,
                "transcript": v.transcript,
                "reference_seconds": round(v.reference_duration, 3),
                "model": v.model,
                "engine": v.engine,
                "created": v.created.isoformat() if v.created else None,
            }
            for v in voices
        ]
        print(json.dumps(found, ensure_ascii=False, indent=2))
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
            [
                v.id,
                v.language,
                f"{v.reference_duration:.1f}",
                v.engine,
                created,
                transcript,
            ]
        )
    _table(rows)
    return OK


def _voices_delete(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.voice = args.name
    client.tts.delete_voice(args.name)
    print(f"deleted {req.voice_name(args.name)}")
    return OK


# -- health and languages ----------------------------------------------------------------------


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _memory(size: int) -> str:
    if size <= 0:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _health(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    statuses = client.health()
    report = []
    for service, health in statuses.items():
        entry = {"service": service, "status": health.status, "error": health.error}
        models = []
        if health.serving:
            try:
                models = getattr(client, service).models()
            except SpeechmeshError as error:
                entry["error"] = error.message
        entry["models"] = [
            {
                "name": m.name,
                "engine": m.engine,
                "state": m.state,
                "device": m.device,
                "dtype": m.dtype,
                "memory_bytes": m.memory_bytes,
                "default": m.default,
                "random_weights": m.random_weights,
            }
            for m in models
        ]
        report.append(entry)
    healthy = all(entry["status"] == "SERVING" for entry in report)
    if args.json:
        print(json.dumps({"target": client.target, "healthy": healthy, "services": report}))
        return OK if healthy else FAILED
    rows = [["SERVICE", "STATUS", "MODEL", "ENGINE", "DEVICE", "MEMORY"]]
    for entry in report:
        if not entry["models"]:
            detail = entry["error"].splitlines()[0][:60] if entry["error"] else ""
            rows.append([entry["service"], entry["status"], detail, "", "", ""])
        for i, m in enumerate(entry["models"]):
            label = m["name"] + (" (random weights)" if m["random_weights"] else "")
            if m["state"] != "ready":
                label += f" [{m['state']}]"
            rows.append(
                [
                    entry["service"] if i == 0 else "",
                    entry["status"] if i == 0 else "",
                    label,
                    m["engine"],
                    f"{m['device']} {m['dtype']}".strip(),
                    _memory(m["memory_bytes"]),
                ]
            )
    print(f"gateway {client.target}")
    _table(rows)
    return OK if healthy else FAILED


LANGUAGE_COLUMNS = ["asr", "text-in", "text-out", "speech-in", "speech-out", "tts"]


def _languages(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    found: dict[str, set[str]] = {}

    def add(codes, column: str) -> None:
        for code in codes:
            found.setdefault(code, set()).add(column)

    services = [args.service] if args.service else list(SERVICES)
    for service in services:
        ctx.service = service
        try:
            if service == "asr":
                for model in client.asr.models():
                    add(model.languages, "asr")
            elif service == "translate":
                for entry in client.translate.languages():
                    add(entry.text_input, "text-in")
                    add(entry.text_output, "text-out")
                    add(entry.speech_input, "speech-in")
                    add(entry.speech_output, "speech-out")
            else:
                for model in client.tts.models():
                    add(model.languages, "tts")
        except Unavailable as error:
            if error.connect_failed:
                raise
            _err(f"{service}: not available ({error.message}); its languages are left out")
        except SpeechmeshError as error:
            _err(f"{service}: {error.code.name} ({error.message}); its languages are left out")
    if args.json:
        print(
            json.dumps(
                [
                    {"code": code, "name": name(code), "supports": sorted(found[code])}
                    for code in sorted(found)
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return OK
    if not found:
        _err("no service answered with languages")
        return FAILED
    rows = [["CODE", "NAME", *[c.upper() for c in LANGUAGE_COLUMNS]]]
    for code in sorted(found):
        marks = ["x" if column in found[code] else "" for column in LANGUAGE_COLUMNS]
        rows.append([code, name(code), *marks])
    _table(rows)
    return OK


# -- the commands ------------------------------------------------------------------------------


def _run(command: Callable, service: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        ctx = Context(args, service)
        try:
            ctx.client = _client(args)
        except (ValueError, OSError) as error:  # a malformed target, an unreadable --ca-cert
            _err(str(error))
            return USAGE
        with ctx.client as client:
            try:
                return command(args, client, ctx)
            except (UsageError, AudioFileError) as error:
                _err(str(error))
                return USAGE
            except SpeechmeshError as error:
                return _explain(error, ctx)
            except BrokenPipeError:  # `speechmesh ... | head`: the reader is gone
                return FAILED
            except (ValueError, OSError) as error:
                _err(str(error))
                return USAGE
            except KeyboardInterrupt:
                return 130

    return run


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--target",
        help="gateway (or service) host:port or URL; default $SPEECHMESH_TARGET or localhost:8080",
    )
    group.add_argument("--api-key", help="API key (x-api-key); default $SPEECHMESH_API_KEY")
    group.add_argument("--token", help="bearer token (JWT); default $SPEECHMESH_TOKEN")
    group.add_argument("--tls", action="store_true", help="connect with TLS")
    group.add_argument("--ca-cert", help="PEM certificate to trust (implies --tls)")
    group.add_argument(
        "--timeout", type=float, default=300.0, help="deadline of each call in seconds (300)"
    )
    return common


def add_commands(commands) -> None:
    """Adds the client commands to the `speechmesh` command's subparsers."""
    common = _common_options()
    formats = ["wav", "mp3", "ogg", "flac", "pcm"]

    p = commands.add_parser(
        "transcribe",
        parents=[common],
        help="speech to text",
        description="Transcribe a recording (any container: WAV, FLAC, MP3, OGG, WebM, M4A,"
        " AIFF). Long files show a progress bar on a terminal. --stream sends the audio as a"
        " live stream (in real time; --fast: as fast as possible) and prints interim results"
        " in place and final lines as they come.",
    )
    p.add_argument("file", metavar="FILE", help="audio file, or - for standard input")
    p.add_argument("--stream", action="store_true", help="stream recognition (live results)")
    p.add_argument("--fast", action="store_true", help="--stream a file as fast as possible")
    p.add_argument("--language", help="language spoken (BCP-47, e.g. en); default: detect")
    p.add_argument("--translate", action="store_true", help="translate the speech to English")
    p.add_argument("--words", action="store_true", help="word times (and one cue per word)")
    p.add_argument("--format", choices=["text", "json", "srt", "vtt"], default="text")
    p.add_argument("--model", help="ASR model by the name `speechmesh health` shows")
    p.add_argument("--prompt", help="text that conditions the decoder (names, spelling)")
    p.add_argument(
        "--raw-rate",
        type=int,
        metavar="HZ",
        help="the input is raw 16-bit mono PCM at HZ (e.g. from `arecord -t raw`)",
    )
    p.set_defaults(func=_run(_transcribe, "asr"))

    p = commands.add_parser(
        "translate",
        parents=[common],
        help="text to text in another language",
        description="Translate text; with -, each line of standard input.",
    )
    p.add_argument("text", metavar="TEXT", help="text, or - for standard input (line by line)")
    p.add_argument("--to", required=True, help="target language (BCP-47, e.g. fr)")
    p.add_argument("--from", dest="source", help="source language; some models need it")
    p.add_argument("--model", help="translation model")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_run(_translate, "translate"))

    p = commands.add_parser(
        "translate-speech",
        parents=[common],
        help="speech to text or speech in another language",
        description="Translate a recording: print the translation (default, or with --text)"
        " and, with --out, write the translated speech.",
    )
    p.add_argument("file", metavar="FILE", help="audio file, or - for standard input")
    p.add_argument("--to", required=True, help="target language (BCP-47)")
    p.add_argument("--from", dest="source", help="language spoken")
    p.add_argument("--text", action="store_true", help="print the translated text")
    p.add_argument("--transcript", action="store_true", help="print the source transcript too")
    p.add_argument("--out", help="write translated speech here (- for standard output)")
    p.add_argument("--format", choices=formats, help="audio format (default from --out, or wav)")
    p.add_argument("--voice", help="voice of the translated speech")
    p.add_argument("--model", help="translation model")
    p.set_defaults(func=_run(_translate_speech, "translate"))

    p = commands.add_parser(
        "speak",
        parents=[common],
        help="text to speech",
        description="Speak text with a stored voice (cloned) or a model's preset voice. Audio"
        " goes to --out, to standard output when piped, else to speech.<format>. --stream"
        " writes audio as each sentence is ready; with - it reads text as it arrives.",
    )
    p.add_argument("text", metavar="TEXT", help="text, or - for standard input")
    p.add_argument("--voice", help="stored voice or preset voice name")
    p.add_argument("--out", help="output file, or - for standard output")
    p.add_argument("--format", choices=formats, help="audio format (default from --out, or wav)")
    p.add_argument("--stream", action="store_true", help="stream: write chunks as they arrive")
    p.add_argument("--language", help="language to speak (BCP-47)")
    p.add_argument("--model", help="TTS model")
    p.add_argument("--sample-rate", type=int, help="output sample rate in Hz")
    p.add_argument("--speed", type=float, help="speaking rate, 0.5 to 2.0")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 to 2")
    p.add_argument("--seed", type=int, help="seed, to get the same audio again")
    p.set_defaults(func=_run(_speak, "tts"))

    voices = commands.add_parser("voices", help="stored voices (cloned from recordings)")
    actions = voices.add_subparsers(dest="voices_command", required=True)
    p = actions.add_parser(
        "create",
        parents=[common],
        help="clone a voice from a recording",
        description="Store a voice from 3 to 30 s of one speaker and the exact words spoken.",
    )
    p.add_argument("name", metavar="NAME", help="voice id: lowercase letters, digits, hyphens")
    p.add_argument("--audio", required=True, help="reference recording")
    p.add_argument("--transcript", required=True, help="the exact words of the recording")
    p.add_argument("--language", help="language of the recording (BCP-47)")
    p.add_argument("--display-name", help="a label")
    p.add_argument("--model", help="cloning model (default: the default cloning model)")
    p.set_defaults(func=_run(_voices_create, "tts"))
    p = actions.add_parser("list", parents=[common], help="list stored voices")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_run(_voices_list, "tts"))
    p = actions.add_parser("delete", parents=[common], help="delete a stored voice")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_run(_voices_delete, "tts"))

    p = commands.add_parser(
        "health",
        parents=[common],
        help="status, model, device and memory of every service",
        description="Check every service through the gateway (grpc.health.v1) and list its"
        " models. Exit code 1 unless every service is SERVING.",
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_run(_health, "gateway"))

    p = commands.add_parser(
        "languages",
        parents=[common],
        help="languages of every service",
        description="Languages the services know, by BCP-47 code: ASR, translation (text and"
        " speech, in and out) and TTS.",
    )
    p.add_argument("--service", choices=list(SERVICES), help="only this service")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=_run(_languages, "asr"))


def main(argv: list[str] | None = None) -> int:
    """The client commands alone (`python -m speechmesh.client.cli transcribe ...`)."""
    parser = argparse.ArgumentParser(prog="speechmesh", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
