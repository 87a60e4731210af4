"""`speechmesh jobs`: long-running jobs for what is too long for one call (hours of audio, a
book chapter to speak): submit, list, status, wait (with a progress bar), cancel, delete,
result, and upload (a big file for jobs to read)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from speechmesh.client.cli import output
from speechmesh.client.cli.failures import (
    Context,
    asr_languages,
    translate_languages,
    tts_languages,
)
from speechmesh.client.cli.output import (
    AUDIO_FORMATS,
    FAILED,
    OK,
    UsageError,
    err,
    hint,
    memory,
    table,
)
from speechmesh.client.errors import Unavailable, Unimplemented
from speechmesh.client.jobs import JOB_SERVICES, JOB_STATES, Job, job_service
from speechmesh.client.sync import Client

#: Result forms `jobs result --format` takes.
RESULT_FORMATS = ["text", "srt", "vtt", "json", "audio"]
#: Without a terminal, a progress line at most this often (and at every change of state).
PLAIN_EVERY_SECONDS = 10.0


# -- progress --------------------------------------------------------------------------------


def _items(job: Job) -> str:
    unit = "sentences" if job.service == "tts" else "files"
    return f"{job.processed_items}/{job.total_items} {unit}" if job.total_items else ""


def _audio(job: Job) -> str:
    if job.total_audio_seconds:
        return f"{job.processed_audio_seconds:.1f}/{job.total_audio_seconds:.1f} s audio"
    if job.processed_audio_seconds:
        return f"{job.processed_audio_seconds:.1f} s audio"
    return ""


def progress_text(job: Job) -> str:
    """What a job has done, in words: "42%  25.2/60.0 s audio  1/2 files"."""
    parts = [f"{job.progress_percent:3.0f}%", _audio(job), _items(job)]
    if job.attempt > 1:
        parts.append(f"attempt {job.attempt}")
    if job.cancel_requested and not job.done:
        parts.append("cancelling")
    return "  ".join(part for part in parts if part)


def progress_line(job: Job, width: int, bar: bool = True) -> str:
    """One line for a job: `RUNNING   [#########-----------]  42%  25.2/60.0 s audio`, as
    wide as `width` at most (without `bar`: the job's name instead of the bar)."""
    tail = progress_text(job)
    if not bar:
        return f"{job.name} {job.state} {tail}"
    head = f"{job.state:<9}"
    room = max(10, min(30, width - len(head) - len(tail) - 5))
    filled = int(room * min(max(job.progress_percent, 0.0), 100.0) / 100)
    line = f"{head} [{'#' * filled}{'-' * (room - filled)}] {tail}"
    return line[: max(1, width - 1)]


class JobProgressBar:
    """Shows a job's progress on `out` (standard error): one line redrawn in place on a
    terminal, else a plain line at each change of state and at most every `every` seconds
    while the job moves."""

    def __init__(
        self,
        out: TextIO,
        tty: bool | None = None,
        every: float = PLAIN_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.out = out
        self.tty = output.isatty(out) if tty is None else tty
        self.every = every
        self.clock = clock
        self.drawn = False
        self._state = ""
        self._shown = ""
        self._at = -float("inf")

    def update(self, job: Job) -> None:
        if self.tty:
            width = shutil.get_terminal_size((80, 20)).columns
            self.out.write("\r" + progress_line(job, width) + "\033[K")
            self.out.flush()
            self.drawn = True
            return
        line = progress_line(job, 1 << 16, bar=False)
        now = self.clock()
        changed = job.state != self._state
        moved = line != self._shown and now - self._at >= self.every
        if changed or moved:
            self.out.write(line + "\n")
            self.out.flush()
            self._state, self._shown, self._at = job.state, line, now

    def close(self) -> None:
        """Ends the redrawn line (it stays on screen with the last state)."""
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


def follow(client: Client, name: str, max_wait: float | None) -> int:
    """Waits for a job with a progress bar on standard error; the exit code: OK once it
    SUCCEEDED, FAILED (with its error said) otherwise."""
    bar = JobProgressBar(sys.stderr)
    try:
        job = client.jobs.wait_job(name, max_wait, on_progress=bar.update)
    except KeyboardInterrupt:
        bar.close()
        err(f"stopped waiting; {name} goes on.")
        hint(f"`speechmesh jobs wait {name}` waits again; `jobs cancel {name}` stops it.")
        raise
    bar.close()
    return outcome(job, max_wait)


def outcome(job: Job, max_wait: float | None = None) -> int:
    """Says how a waited-for job ended; the exit code."""
    if not job.done:
        err(f"{job.name} is still {job.state} after {max_wait or 0:g} s")
        return FAILED
    if job.succeeded:
        formats = "audio" if job.service == "tts" else "text, srt, vtt or json"
        err(
            f"{job.name} SUCCEEDED; `speechmesh jobs result {job.name} [--format ...]` fetches"
            f" it ({formats})"
        )
        return OK
    err(f"{job.name} {job.state}: {job.error or 'no error given'}")
    return FAILED


# -- commands --------------------------------------------------------------------------------


def _file_argument(value: str):
    """A FILE argument as the SDK takes it: standard input's bytes for "-", a local file
    (even under a folder named uploads) as a Path, else the string (a path, an upload name
    uploads/..., or a file:// or https:// URI)."""
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("uploads/") and os.path.exists(value):
        return pathlib.Path(value)
    return value


def _submitted(args: argparse.Namespace, client: Client, job: Job) -> int:
    print(job.name, flush=True)
    if args.wait:
        return follow(client, job.name, args.max_wait)
    return OK


def submit_asr(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, asr_languages(client))
    job = client.jobs.batch_recognize(
        [_file_argument(f) for f in args.files],
        language=args.language,
        model=args.model,
        translate=args.translate,
        words=args.words,
        prompt=args.prompt,
        request_id=args.request_id or "",
    )
    return _submitted(args, client, job)


def submit_translate(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    out_kind = "speech_output" if args.speech else "text_output"
    ctx.languages["--to"] = (args.to, translate_languages(client, out_kind))
    ctx.languages["--from"] = (args.source, translate_languages(client, "speech_input"))
    job = client.jobs.batch_translate_speech(
        [_file_argument(f) for f in args.files],
        args.to,
        source=args.source,
        speech=args.speech,
        source_transcript=args.transcript,
        format=args.format if args.speech else None,
        voice=args.voice,
        model=args.model,
        request_id=args.request_id or "",
    )
    return _submitted(args, client, job)


def submit_tts(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.languages["--language"] = (args.language, tts_languages(client))
    ctx.voice = args.voice or args.preset_voice
    if args.text_file is not None:
        source = sys.stdin if args.text_file == "-" else None
        text = source.read() if source else pathlib.Path(args.text_file).read_text("utf-8")
    else:
        text = args.text
    if not text.strip():
        raise UsageError("nothing to say: the text is empty")
    job = client.jobs.batch_synthesize(
        text,
        voice=args.voice,
        preset_voice=args.preset_voice,
        language=args.language,
        model=args.model,
        format=args.format,
        sample_rate=args.sample_rate,
        speed=args.speed or 0.0,
        temperature=args.temperature,
        seed=args.seed or 0,
        request_id=args.request_id or "",
    )
    return _submitted(args, client, job)


def _when(job: Job) -> str:
    return job.create_time.astimezone().strftime("%Y-%m-%d %H:%M:%S") if job.create_time else ""


def list_jobs(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    services = [args.service] if args.service else list(JOB_SERVICES)
    found: list[Job] = []
    for service in services:
        ctx.service = service
        try:
            found += client.jobs.list_jobs(service, state=args.state)
        except (Unavailable, Unimplemented) as error:
            if args.service or (isinstance(error, Unavailable) and error.connect_failed):
                raise
            err(f"skipping {service}: {error.message}")
    found.sort(key=lambda job: job.create_time.timestamp() if job.create_time else 0, reverse=True)
    if args.json:
        print(json.dumps([job.to_dict() for job in found], ensure_ascii=False, indent=2))
        return OK
    if not found:
        which = f" {args.state}" if args.state else ""
        err(f"no{which} jobs; `speechmesh jobs submit asr FILE...` starts one")
        return OK
    rows = [["NAME", "STATE", "PROGRESS", "CREATED", "ERROR"]]
    for job in found:
        rows.append([job.name, job.state, progress_text(job), _when(job), str(job.error or "")])
    table(rows)
    return OK


def _status_lines(job: Job) -> list[tuple[str, str]]:
    lines = [("name", job.name), ("state", job.state), ("progress", progress_text(job))]
    for label, value in (
        ("created", job.create_time),
        ("started", job.start_time),
        ("ended", job.end_time),
        ("expires", job.expire_time),
    ):
        if value is not None:
            lines.append((label, value.astimezone().isoformat(timespec="seconds")))
    if job.request_id:
        lines.append(("request id", job.request_id))
    if job.error is not None:
        lines.append(("error", str(job.error)))
    for index, result in enumerate(job.results):
        if result.error is not None:
            text = f"{result.source}: {result.error}"
        else:
            summary = getattr(result.result, "duration", 0.0)
            text = f"{result.source}: ok, {summary:.1f} s"
            if result.audio_size_bytes:
                text += f", {memory(result.audio_size_bytes)} of speech"
        lines.append((f"file {index}", text))
    response = job.response
    if job.service == "tts" and response is not None:
        lines.append(
            (
                "audio",
                f"{response.audio_duration.ToTimedelta().total_seconds():.1f} s,"
                f" {response.sample_rate_hertz} Hz {response.audio_content_type},"
                f" {memory(response.audio_size_bytes)}, seed {response.seed}",
            )
        )
    return lines


def status(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.service = job_service(args.name)
    job = client.jobs.get_job(args.name)
    if args.json:
        entry = job.to_dict()
        entry["results"] = [
            {
                "source": r.source,
                "ok": r.ok,
                "error": str(r.error) if r.error else None,
                "audio_size_bytes": r.audio_size_bytes,
            }
            for r in job.results
        ]
        print(json.dumps(entry, ensure_ascii=False, indent=2))
        return OK
    lines = _status_lines(job)
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label + ':':<{width + 1}} {value}")
    return OK


def wait(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.service = job_service(args.name)
    return follow(client, args.name, args.max_wait)


def cancel(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.service = job_service(args.name)
    client.jobs.cancel_job(args.name)
    job = client.jobs.get_job(args.name)
    print(f"{job.name}: {job.state}" + (" (cancelling)" if not job.done else ""))
    return OK


def delete(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.service = job_service(args.name)
    client.jobs.delete_job(args.name)
    print(f"deleted {args.name}")
    return OK


def result(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.service = job_service(args.name)
    if args.file_index < 0:
        raise UsageError(f"--file-index counts files from 0, not {args.file_index}")
    data = client.jobs.job_result(args.name, args.format, file_index=args.file_index)
    if args.output and args.output != "-":
        path = pathlib.Path(args.output)
        if not path.parent.is_dir():
            raise UsageError(f"-o {args.output}: the folder {path.parent} does not exist")
        path.write_bytes(data)
        err(f"wrote {path}: {len(data)} bytes")
        return OK
    if output.isatty(sys.stdout):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                "will not write audio to the terminal: give -o FILE, or pipe the output"
            ) from None
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return OK


def upload(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    ctx.service = args.service
    source = sys.stdin.buffer if args.file == "-" else args.file
    found = client.jobs.upload(source, args.service)
    print(found.name, flush=True)
    expires = found.expire_time.astimezone().strftime("%Y-%m-%d %H:%M") if found.expire_time else ""
    err(
        f"uploaded {memory(found.size_bytes) or '0 B'} (sha256 {found.sha256[:16]}…)"
        + (f", kept until {expires}" if expires else "")
    )
    return OK


# -- the parsers -----------------------------------------------------------------------------


def _name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the job's name: operations/SERVICE/ID")


def add_commands(commands, common: argparse.ArgumentParser, runner: Callable) -> None:
    """Adds `speechmesh jobs ...` to the command's subparsers; `common`: the connection
    options; `runner(command, service)`: what argparse calls (see cli/__init__.py)."""
    jobs = commands.add_parser(
        "jobs",
        help="long-running jobs: long recordings and texts",
        description="Jobs run on the services at the lowest priority, for work too long for one"
        " call: hours of audio to transcribe or translate, a long text to speak. Submit one,"
        " follow it (`wait` shows a progress bar), fetch its result.",
    )
    actions = jobs.add_subparsers(dest="jobs_command", required=True)

    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--max-wait", type=float, metavar="SECONDS", help="stop waiting after this long"
    )
    submit = actions.add_parser(
        "submit",
        help="start a job",
        description="Start a job and print its name. Files are local paths (big ones are"
        " uploaded first), - for standard input, upload names (uploads/...), or file:// and"
        " https:// URIs the service reads itself. --wait follows it to the end.",
    )
    kinds = submit.add_subparsers(dest="kind", required=True)
    submitting = argparse.ArgumentParser(add_help=False, parents=[common, waiting])
    submitting.add_argument("--wait", action="store_true", help="wait for it, with progress")
    submitting.add_argument("--request-id", help="your id for the job, kept in its metadata")

    p = kinds.add_parser("asr", parents=[submitting], help="transcribe recordings")
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings (1 to 100)")
    p.add_argument("--language", help="language spoken (BCP-47, e.g. en); default: detect")
    p.add_argument("--translate", action="store_true", help="translate the speech to English")
    p.add_argument("--words", action="store_true", help="word times")
    p.add_argument("--model", help="ASR model")
    p.add_argument("--prompt", help="text that conditions the decoder (names, spelling)")
    p.set_defaults(func=runner(submit_asr, "asr"))

    p = kinds.add_parser("translate", parents=[submitting], help="translate recordings")
    p.add_argument("files", nargs="+", metavar="FILE", help="recordings (1 to 100)")
    p.add_argument("--to", required=True, help="target language (BCP-47)")
    p.add_argument("--from", dest="source", help="language spoken")
    p.add_argument("--speech", action="store_true", help="translated speech too (audio)")
    p.add_argument("--transcript", action="store_true", help="the source transcript too")
    p.add_argument("--format", choices=AUDIO_FORMATS, help="format of the speech (wav)")
    p.add_argument("--voice", help="voice of the translated speech")
    p.add_argument("--model", help="translation model")
    p.set_defaults(func=runner(submit_translate, "translate"))

    p = kinds.add_parser("tts", parents=[submitting], help="speak a long text")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to speak")
    text.add_argument("--text-file", metavar="FILE", help="a UTF-8 text file, - for standard input")
    voice = p.add_mutually_exclusive_group()
    voice.add_argument("--voice", help="a stored voice")
    voice.add_argument("--preset-voice", help="a preset voice of the model")
    p.add_argument("--format", choices=AUDIO_FORMATS, help="audio format (wav)")
    p.add_argument("--language", help="language to speak (BCP-47)")
    p.add_argument("--model", help="TTS model")
    p.add_argument("--sample-rate", type=int, help="output sample rate in Hz")
    p.add_argument("--speed", type=float, help="speaking rate, 0.5 to 2.0")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 to 2")
    p.add_argument("--seed", type=int, help="seed, to get the same audio again")
    p.set_defaults(func=runner(submit_tts, "tts"))

    p = actions.add_parser("list", parents=[common], help="list your jobs, newest first")
    p.add_argument("--service", choices=list(JOB_SERVICES), help="only this service's jobs")
    p.add_argument(
        "--state",
        type=str.lower,
        choices=[state.lower() for state in JOB_STATES],
        help="only jobs in this state",
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=runner(list_jobs, "asr"))

    p = actions.add_parser("status", parents=[common], help="a job's state and progress")
    _name(p)
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=runner(status, "asr"))

    p = actions.add_parser(
        "wait",
        parents=[common, waiting],
        help="wait for a job, with progress",
        description="Wait for a job, with a progress bar on standard error. Exit code 0 when"
        " it SUCCEEDED, 1 when it failed, was cancelled or is still going at --max-wait.",
    )
    _name(p)
    p.set_defaults(func=runner(wait, "asr"))

    p = actions.add_parser("cancel", parents=[common], help="cancel a job")
    _name(p)
    p.set_defaults(func=runner(cancel, "asr"))

    p = actions.add_parser("delete", parents=[common], help="delete a job and its results")
    _name(p)
    p.set_defaults(func=runner(delete, "asr"))

    p = actions.add_parser(
        "result",
        parents=[common],
        help="a finished job's result",
        description="Write a SUCCEEDED job's result as it is: to standard output, or -o FILE."
        " Default format: audio for speech, else json.",
    )
    _name(p)
    p.add_argument("--format", choices=RESULT_FORMATS, help="form of the result")
    p.add_argument(
        "--file-index", type=int, default=0, metavar="N", help="which file of a batch, from 0"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write it here")
    p.set_defaults(func=runner(result, "asr"))

    p = actions.add_parser(
        "upload",
        parents=[common],
        help="upload a big recording for jobs",
        description="Upload a recording (streamed in pieces) and print its name (uploads/...),"
        " which `jobs submit` takes as a FILE until the upload expires.",
    )
    p.add_argument("file", metavar="FILE", help="the recording, or - for standard input")
    p.add_argument("--service", choices=["asr", "translate"], default="asr")
    p.set_defaults(func=runner(upload, "asr"))
