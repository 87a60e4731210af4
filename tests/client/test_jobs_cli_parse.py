"""`speechmesh jobs` without a server: how each command's arguments parse, how the progress
bar draws (redrawn on a terminal, plain lines otherwise), and what the commands print and
exit with, on a client whose stub methods are scripted."""

from __future__ import annotations

import argparse
import io

import grpc
import pytest
from google.api import httpbody_pb2
from google.longrunning import operations_pb2 as lro
from google.rpc import code_pb2, status_pb2

from speechmesh.asr.v1 import asr_pb2
from speechmesh.client import Client, Job
from speechmesh.client import cli as client_cli
from speechmesh.client._common import duration
from speechmesh.client.cli import add_commands, jobs
from speechmesh.client.cli.jobs import JobProgressBar, progress_line, progress_text
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from tests.client.test_jobs_steps import NAME, TARGET, Scripted, operation
from tests.client.test_operations import FakeRpcError, recognize_reply

RUNNING = ops_pb2.OPERATION_STATE_RUNNING
SUCCEEDED = ops_pb2.OPERATION_STATE_SUCCEEDED
FAILED = ops_pb2.OPERATION_STATE_FAILED


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="speechmesh")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def refused(capsys, *argv: str) -> str:
    """Parsing fails as a usage error (exit 2); what argparse said."""
    with pytest.raises(SystemExit) as caught:
        parse(*argv)
    assert caught.value.code == 2
    return capsys.readouterr().err


# -- parsing -----------------------------------------------------------------------------------


def test_submit_takes_each_services_files_text_and_options():
    args = parse(
        *("jobs", "submit", "asr", "a.wav", "uploads/x", "file:///data/b.wav"),
        *("--language", "en", "--words", "--wait", "--max-wait", "60", "--target", "h:1"),
    )
    assert (args.command, args.jobs_command, args.kind) == ("jobs", "submit", "asr")
    assert args.files == ["a.wav", "uploads/x", "file:///data/b.wav"]
    assert args.language == "en" and args.words and args.wait and args.max_wait == 60.0
    assert args.target == "h:1" and callable(args.func)
    args = parse(
        "jobs", "submit", "translate", "a.wav", "--to", "fr", "--speech", "--format", "mp3"
    )
    assert (args.to, args.speech, args.format, args.wait) == ("fr", True, "mp3", False)
    args = parse("jobs", "submit", "tts", "--text-file", "book.txt", "--preset-voice", "default")
    assert (args.text, args.text_file, args.preset_voice, args.voice) == (
        None,
        "book.txt",
        "default",
        None,
    )


def test_submit_refuses_what_cannot_run(capsys):
    assert "--to" in refused(capsys, "jobs", "submit", "translate", "a.wav")
    assert "FILE" in refused(capsys, "jobs", "submit", "asr")
    assert "one of the arguments --text --text-file" in refused(capsys, "jobs", "submit", "tts")
    text = ("jobs", "submit", "tts", "--text", "hi")
    assert "not allowed with" in refused(capsys, *text, "--text-file", "f")
    assert "not allowed with" in refused(capsys, *text, "--voice", "a", "--preset-voice", "b")
    assert "invalid choice" in refused(capsys, "jobs", "submit", "ocr", "a.wav")


def test_the_commands_on_a_job_take_its_name_and_their_options(capsys):
    for action in ("status", "wait", "cancel", "delete", "result"):
        assert parse("jobs", action, NAME).name == NAME
    args = parse("jobs", "result", NAME, "--format", "srt", "--file-index", "2", "-o", "a.srt")
    assert (args.format, args.file_index, args.output) == ("srt", 2, "a.srt")
    assert parse("jobs", "result", NAME).format is None  # the result's natural form
    assert parse("jobs", "wait", NAME, "--max-wait", "5").max_wait == 5.0
    args = parse("jobs", "list", "--service", "tts", "--state", "RUNNING", "--json")
    assert (args.service, args.state, args.json) == ("tts", "running", True)
    assert parse("jobs", "list").service is None
    assert parse("jobs", "upload", "big.wav").service == "asr"
    assert "invalid choice" in refused(capsys, "jobs", "list", "--state", "paused")
    assert "invalid choice" in refused(capsys, "jobs", "upload", "a.wav", "--service", "tts")
    assert "invalid choice" in refused(capsys, "jobs", "result", NAME, "--format", "docx")
    assert "NAME" in refused(capsys, "jobs", "wait")


# -- the progress bar --------------------------------------------------------------------------


def job(state=RUNNING, name=NAME, **meta) -> Job:
    return Job.from_proto(operation(state, name=name, **meta))


def test_progress_is_said_in_percent_audio_and_items():
    running = job(
        percent=42.0,
        processed_audio=duration(25.2),
        total_audio=duration(60.0),
        processed_items=1,
        total_items=2,
    )
    assert progress_text(running) == " 42%  25.2/60.0 s audio  1/2 files"
    line = progress_line(running, 80)
    assert line == "RUNNING   [############------------------]  42%  25.2/60.0 s audio  1/2 files"
    assert len(line) < 80
    spoken = job(name="operations/tts/t", percent=10.0, processed_items=3, total_items=30)
    assert progress_text(spoken) == " 10%  3/30 sentences"
    retried = job(percent=0.0, attempt=2, cancel_requested=True)
    assert progress_text(retried) == "  0%  attempt 2  cancelling"
    done = job(SUCCEEDED, percent=100.0)
    assert progress_line(done, 60).startswith("SUCCEEDED [" + "#" * 10)
    assert len(progress_line(running, 40)) == 39  # cut to a narrow terminal
    assert progress_line(running, 80, bar=False).startswith(f"{NAME} RUNNING  42%")


def test_the_bar_is_redrawn_in_place_on_a_terminal():
    out = io.StringIO()
    bar = JobProgressBar(out, tty=True)
    bar.update(job(percent=10.0))
    bar.update(job(percent=60.0))
    bar.update(job(SUCCEEDED, percent=100.0))
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\033[K\n") and text.count("\n") == 1
    assert "SUCCEEDED" in text.rsplit("\r", 1)[1]


def test_without_a_terminal_lines_come_at_each_state_and_now_and_then():
    out = io.StringIO()
    now = [0.0]
    bar = JobProgressBar(out, tty=False, every=10.0, clock=lambda: now[0])
    bar.update(job(ops_pb2.OPERATION_STATE_QUEUED))
    bar.update(job(percent=5.0))  # a new state: shown
    now[0] = 3.0
    bar.update(job(percent=20.0))  # too soon
    now[0] = 11.0
    bar.update(job(percent=40.0))  # moved, and time has passed
    now[0] = 30.0
    bar.update(job(percent=40.0))  # nothing moved
    now[0] = 31.0
    bar.update(job(SUCCEEDED, percent=100.0))  # the end, at once
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert [line.split()[2] for line in lines] == ["0%", "5%", "40%", "100%"]
    assert "\r" not in out.getvalue()


# -- the commands on a scripted client ---------------------------------------------------------


@pytest.fixture
def scripted(monkeypatch):
    """The CLI's client, with each service's OperationsService scripted: fill `script`."""
    script: dict = {}
    stubs = {service: Scripted(script) for service in ("asr", "translate", "tts")}

    def make(args):
        client = Client(TARGET, retries=0)
        client.jobs.operations.update(stubs)
        return client

    monkeypatch.setattr(client_cli, "_client", make)
    return script, stubs


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = client_cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_wait_exits_0_once_the_job_succeeded_and_1_with_its_error(capsys, scripted):
    script, _ = scripted
    answers = iter([job_proto(RUNNING, 50.0), job_proto(SUCCEEDED, 100.0)])
    script["WaitOperation"] = lambda request: next(answers)
    code, out, err = run(capsys, "jobs", "wait", NAME)
    assert code == 0 and out == ""
    assert f"{NAME} RUNNING  50%" in err and f"{NAME} SUCCEEDED" in err
    assert f"speechmesh jobs result {NAME}" in err

    failed = job_proto(FAILED, 0.0)
    failed.error.CopyFrom(status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="not audio"))
    script["WaitOperation"] = lambda request: failed
    code, out, err = run(capsys, "jobs", "wait", NAME)
    assert code == 1 and f"{NAME} FAILED: INVALID_ARGUMENT: not audio" in err

    script["WaitOperation"] = lambda request: job_proto(RUNNING, 1.0)
    script["GetOperation"] = script["WaitOperation"]
    code, out, err = run(capsys, "jobs", "wait", NAME, "--max-wait", "0")
    assert code == 1 and "still RUNNING after 0 s" in err


def job_proto(state: int, percent: float, name: str = NAME) -> lro.Operation:
    return operation(state, name=name, percent=percent)


def test_status_list_cancel_and_delete_print_what_the_service_says(capsys, scripted):
    script, stubs = scripted
    response = asr_pb2.BatchRecognizeResponse(
        results=[
            asr_pb2.BatchRecognizeFileResult(
                source="content[0]", response=recognize_reply("hi", 0, 2)
            )
        ]
    )
    done = operation(SUCCEEDED, percent=100.0, response=response, request_id="r7")
    script["GetOperation"] = lambda request: done
    code, out, _ = run(capsys, "jobs", "status", NAME)
    assert code == 0
    assert "state:      SUCCEEDED" in out and "request id: r7" in out
    assert "file 0:     content[0]: ok, 0.0 s" in out

    script["ListOperations"] = lambda request: lro.ListOperationsResponse(
        operations=[job_proto(RUNNING, 30.0, name=request.name + "/a")]
    )
    code, out, _ = run(capsys, "jobs", "list", "--state", "running")
    assert code == 0 and out.splitlines()[0].split() == [
        "NAME",
        "STATE",
        "PROGRESS",
        "CREATED",
        "ERROR",
    ]
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert sorted(names) == ["operations/asr/a", "operations/translate/a", "operations/tts/a"]
    assert stubs["tts"].calls[-1][1].filter == "state = RUNNING"
    code, out, _ = run(capsys, "jobs", "list", "--service", "asr", "--json")
    assert code == 0 and '"name": "operations/asr/a"' in out and '"state": "RUNNING"' in out

    script["CancelOperation"] = lambda request: None
    script["GetOperation"] = lambda request: job_proto(RUNNING, 30.0)
    code, out, _ = run(capsys, "jobs", "cancel", NAME)
    assert (code, out) == (0, f"{NAME}: RUNNING (cancelling)\n")

    def missing(request):
        raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no operation {request.name}")

    script["DeleteOperation"] = missing
    code, out, err = run(capsys, "jobs", "delete", NAME)
    assert code == 2 and f"asr answered NOT_FOUND: no operation {NAME}" in err
    assert "`speechmesh jobs list` shows your jobs" in err
    script["DeleteOperation"] = lambda request: None
    assert run(capsys, "jobs", "delete", NAME)[:2] == (0, f"deleted {NAME}\n")


def test_result_goes_to_a_file_or_standard_output(capsys, scripted, tmp_path, monkeypatch):
    script, stubs = scripted
    body = {"srt": b"1\n00:00:00,000 --> 00:00:01,000\nhi\n\n", "audio": b"RIFF\xff\xfe"}
    script["GetOperationResult"] = lambda request: httpbody_pb2.HttpBody(
        data=body["srt" if request.format == ops_pb2.RESULT_FORMAT_SRT else "audio"]
    )
    code, _, err = run(
        capsys, "jobs", "result", NAME, "--format", "srt", "-o", str(tmp_path / "a.srt")
    )
    assert code == 0 and (tmp_path / "a.srt").read_bytes() == body["srt"]
    assert "wrote" in err and f"{len(body['srt'])} bytes" in err
    request = stubs["asr"].calls[-1][1]
    assert (request.name, request.format, request.file_index) == (
        NAME,
        ops_pb2.RESULT_FORMAT_SRT,
        0,
    )
    code, _, err = run(capsys, "jobs", "result", NAME, "--file-index", "-1")
    assert code == 2 and "--file-index" in err
    code, _, err = run(capsys, "jobs", "result", NAME, "-o", str(tmp_path / "no" / "a.wav"))
    assert code == 2 and "does not exist" in err
    monkeypatch.setattr(jobs.output, "isatty", lambda stream: True)
    code, _, err = run(capsys, "jobs", "result", "operations/tts/t")
    assert code == 2 and "will not write audio to the terminal" in err


def test_submit_prints_the_name_and_with_wait_follows_the_job(
    capsys, scripted, tmp_path, monkeypatch
):
    script, _ = scripted
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF" + bytes(100))
    started = []

    def batch(request, timeout=None, metadata=()):
        started.append(request)
        return job_proto(ops_pb2.OPERATION_STATE_QUEUED, 0.0)

    real = client_cli._client

    def make(args):
        client = real(args)
        client.asr.stub.BatchRecognize = batch
        return client

    monkeypatch.setattr(client_cli, "_client", make)
    code, out, _ = run(
        capsys, "jobs", "submit", "asr", str(audio), "uploads/u1", "--language", "en"
    )
    assert (code, out) == (0, NAME + "\n")
    files = started[0].files
    assert files[0].content == audio.read_bytes() and files[1].upload == "uploads/u1"
    assert started[0].config.language_code == "en"

    script["WaitOperation"] = lambda request: job_proto(SUCCEEDED, 100.0)
    code, out, err = run(capsys, "jobs", "submit", "asr", str(audio), "--wait")
    assert (code, out) == (0, NAME + "\n") and "SUCCEEDED" in err

    code, _, err = run(capsys, "jobs", "submit", "asr", str(tmp_path / "missing.wav"))
    assert code == 2 and "no such file" in err
    code, _, err = run(capsys, "jobs", "submit", "tts", "--text", "  ")
    assert code == 2 and "the text is empty" in err


def test_a_name_that_is_not_a_jobs_is_a_usage_error(capsys, scripted):
    code, out, err = run(capsys, "jobs", "status", "abc")
    assert code == 2 and out == "" and "not a job name" in err


def test_upload_prints_the_upload_name(capsys, scripted, tmp_path):
    _, stubs = scripted
    path = tmp_path / "big.flac"
    path.write_bytes(b"f" * 3000)
    code, out, err = run(capsys, "jobs", "upload", str(path), "--service", "translate")
    assert (code, out) == (0, "uploads/u3000\n") and "uploaded 2.9 KiB" in err
    assert stubs["translate"].uploads[0][0].content_type == "audio/flac"
