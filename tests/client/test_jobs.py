"""`client.jobs` and `speechmesh jobs` against a real in-process ASR server with its job store
(a SQLite file of this module's own): upload, batch_recognize, wait and results in both
transports, listing by state, cancel, delete, another caller's jobs, and failures raised as
the client's typed errors. ASR serves the real whisper-tiny.en when present (transcripts
checked word for word), else a tiny random Whisper."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import time

import pytest

from speechmesh.client import (
    AsyncClient,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Transcript,
    Unimplemented,
    Upload,
)
from speechmesh.client import cli as client_cli
from speechmesh.operations.settings import JobsSettings
from tests.client.conftest import GOFORWARD, REAL, TINY_EN, Background, quiet_servers
from tests.conftest import running_asr
from tests.sounds import voice_like, wav

#: Who the in-process server takes a caller for (the gateway sets it after authenticating).
IDENTITY = "x-speechmesh-identity"
LONG = wav(voice_like(40.0, seed=3))


def words_of(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_whisper):
    """ASR with jobs on: (target, settings). One job at a time, uploads up to 2 MiB."""
    tmp = tmp_path_factory.mktemp("jobs")
    root = tmp / "files"
    root.mkdir()
    settings = JobsSettings(
        database_url=f"sqlite:///{tmp / 'jobs.sqlite3'}",
        file_root=str(root),
        lease_s=3.0,
        poll_interval_s=0.1,
        concurrency=1,
        upload_max_mb=2,
    )
    model = TINY_EN if REAL else tiny_whisper
    with quiet_servers(tmp / "services.log"):
        background = Background()
        try:
            served, _ = background.enter(running_asr(model, engine="ctranslate2", jobs=settings))
            yield f"127.0.0.1:{served.port}", settings
        finally:
            background.close()


@pytest.fixture
def clip(tmp_path):
    """A short recording on disk: real speech when the real model is here."""
    path = tmp_path / "clip.wav"
    path.write_bytes(GOFORWARD.read_bytes() if REAL else wav(voice_like(3.0)))
    return path


def as_user(name: str) -> dict[str, str]:
    return {IDENTITY: name}


def under_root(settings: JobsSettings, name: str, data: bytes) -> pathlib.Path:
    """A file in the server's jobs file root (what `file://` inputs read)."""
    path = pathlib.Path(settings.file_root) / name
    path.write_bytes(data)
    return path


def test_upload_batch_recognize_wait_and_fetch_subtitles(server, clip):
    target, settings = server
    shared = under_root(settings, "shared.wav", clip.read_bytes())
    progress = []
    with Client(target, metadata=as_user("alice")) as client:
        upload = client.jobs.upload(clip, chunk_size=4096)
        assert isinstance(upload, Upload) and upload.name.startswith("uploads/")
        assert upload.size_bytes == clip.stat().st_size
        assert upload.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()
        assert upload.content_type == "audio/x-wav" and upload.expire_time > upload.create_time
        job = client.jobs.batch_recognize(
            [clip, upload, clip.read_bytes(), f"file://{shared}", str(clip)],
            language="en",
            words=True,
            request_id="sdk-1",
            inline_limit=1000,  # the paths and bytes go as uploads
        )
        assert job.name.startswith("operations/asr/") and job.service == "asr"
        assert job.state in ("QUEUED", "RUNNING") and not job.done
        done = client.jobs.wait_job(job.name, timeout=120, on_progress=progress.append)
        assert done.state == "SUCCEEDED", done.error
        assert done.progress_percent == 100.0 and (done.processed_items, done.total_items) == (5, 5)
        assert done.request_id == "sdk-1" and done.attempt == 1 and done.end_time is not None
        assert progress[-1].state == "SUCCEEDED" and all(j.name == job.name for j in progress)
        sources = [result.source for result in done.results]
        assert sources[1] == upload.name and sources[3] == f"file://{shared}"
        made = [sources[0], sources[2], sources[4]]
        assert all(s.startswith("uploads/") for s in made) and len({*made, upload.name}) == 4
        transcripts = [result.result for result in done.results]
        assert all(isinstance(t, Transcript) for t in transcripts)
        direct = client.asr.recognize(clip, language="en")
        assert all(t.duration == pytest.approx(direct.duration) for t in transcripts)
        # The same recording five ways.
        if REAL:  # (random weights say anything, batched or not)
            assert all(t.text == direct.text for t in transcripts)
        srt = client.jobs.job_result(job.name, "srt", file_index=4).decode()
        text = client.jobs.job_result(job.name, "text", file_index=0).decode()
        whole = json.loads(client.jobs.job_result(job.name, "json"))
        assert len(whole["results"]) == 5 and text.strip() == transcripts[0].text
        if transcripts[4].text:
            assert srt.startswith("1\n00:00:0") and " --> " in srt
        if REAL:
            assert words_of(text) == ["go", "forward", "10", "meters"]
            assert "forward" in srt
        with pytest.raises(InvalidArgument, match="file_index"):
            client.jobs.job_result(job.name, "text", file_index=9)


def test_the_asyncio_client_and_listing_by_state(server, clip):
    target, _ = server

    async def run():
        async with AsyncClient(target, metadata=as_user("carol")) as client:
            upload = await client.jobs.upload(clip.read_bytes())
            job = await client.jobs.batch_recognize([clip, upload.name], language="en")
            done = await client.jobs.wait_job(job.name, timeout=120)
            running = await client.jobs.list_jobs("asr", state="running")
            succeeded = await client.jobs.list_jobs("asr", state="succeeded", page_size=1)
            every = await client.jobs.list_jobs("asr")
            srt = await client.jobs.job_result(job.name, "srt", file_index=0)
            return upload, job, done, running, succeeded, every, srt

    upload, job, done, running, succeeded, every, srt = asyncio.run(run())
    assert done.succeeded and all(result.ok for result in done.results)
    assert [r.source for r in done.results] == ["content[0]", upload.name]  # small: inline
    assert job.name not in [j.name for j in running]
    assert job.name in [j.name for j in succeeded] and all(j.succeeded for j in succeeded)
    assert [j.name for j in every] == [j.name for j in succeeded]  # only carol's, every page
    if REAL:
        assert all(r.result.text for r in done.results) and b" --> " in srt


def test_cancel_stops_a_job_and_delete_removes_it(server):
    target, _ = server
    with Client(target, metadata=as_user("dave")) as client:
        job = client.jobs.batch_recognize([LONG] * 10, inline_limit=len(LONG))  # ~400 s of audio
        deadline = time.monotonic() + 10
        while client.jobs.get_job(job.name).state == "QUEUED" and time.monotonic() < deadline:
            time.sleep(0.05)  # let it start
        client.jobs.cancel_job(job.name)
        ended = client.jobs.wait_job(job.name, timeout=10)
        assert ended.state == "CANCELLED" and ended.done
        assert ended.error is not None and ended.error.code == "CANCELLED"
        assert [j.name for j in client.jobs.list_jobs("asr", state="cancelled")] == [job.name]
        with pytest.raises(FailedPrecondition, match="cancelled"):
            client.jobs.job_result(job.name, "text")
        client.jobs.cancel_job(job.name)  # already done: nothing changes
        client.jobs.delete_job(job.name)
        with pytest.raises(NotFound) as caught:
            client.jobs.get_job(job.name)
        assert caught.value.resource is not None and caught.value.resource.resource_name == job.name
        with pytest.raises(NotFound):
            client.jobs.delete_job(job.name)
        assert client.jobs.list_jobs("asr") == []


def test_another_callers_jobs_do_not_exist(server, clip):
    target, _ = server
    with Client(target, metadata=as_user("erin")) as erin:
        job = erin.jobs.batch_recognize(clip)
        with Client(target, metadata=as_user("frank")) as frank:
            for call in (frank.jobs.get_job, frank.jobs.cancel_job, frank.jobs.delete_job):
                with pytest.raises(NotFound):
                    call(job.name)
            assert job.name not in [j.name for j in frank.jobs.list_jobs("asr")]
        assert erin.jobs.wait_job(job.name, timeout=120).succeeded


def test_failures_are_the_clients_typed_errors(server, tmp_path):
    target, _ = server
    with Client(target, metadata=as_user("gina")) as client:
        with pytest.raises(InvalidArgument) as caught:
            client.jobs.batch_recognize(["file:///etc/passwd"])
        assert caught.value.fields and caught.value.fields[0].startswith("files[0]")
        with pytest.raises(ResourceExhausted, match="2 MiB"):
            client.jobs.upload(b"\0" * ((2 << 20) + 1))
        with pytest.raises(NotFound):
            client.jobs.batch_recognize(["uploads/nosuchupload"])
        with pytest.raises(InvalidArgument, match="empty"):
            client.jobs.upload(b"")
        job = client.jobs.batch_recognize([b"not audio at all", wav(voice_like(2.0))])
        done = client.jobs.wait_job(job.name, timeout=120)
        assert done.succeeded  # a bad file fails alone
        bad, good = done.results
        assert not bad.ok and bad.error.code == "INVALID_ARGUMENT" and good.ok
        assert isinstance(bad.error.exception(), InvalidArgument)
        with pytest.raises(InvalidArgument):
            client.jobs.job_result(job.name, "text", file_index=0)
        with pytest.raises(NotFound):
            client.jobs.get_job("operations/asr/0000")
        with pytest.raises(Unimplemented):  # ASR's own port serves no translate jobs
            client.jobs.get_job("operations/translate/0000")


def test_the_cli_submits_waits_and_writes_results(server, clip, capsys, tmp_path):
    target, _ = server

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = client_cli.main([*argv, "--target", target])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = run("jobs", "submit", "asr", str(clip), "--language", "en", "--wait")
    assert code == 0, err
    name = out.strip()
    assert name.startswith("operations/asr/") and f"{name} SUCCEEDED" in err
    srt = tmp_path / "out.srt"
    code, _, err = run("jobs", "result", name, "--format", "srt", "-o", str(srt))
    assert code == 0 and "wrote" in err
    assert srt.read_text() == "" or " --> " in srt.read_text()
    code, out, _ = run("jobs", "status", name)
    assert code == 0 and ["state:", "SUCCEEDED"] in [line.split() for line in out.splitlines()]
    assert "file 0:   content[0]: ok" in out
    code, out, _ = run("jobs", "list", "--service", "asr", "--state", "succeeded", "--json")
    assert code == 0 and name in [entry["name"] for entry in json.loads(out)]
    code, out, _ = run("jobs", "delete", name)
    assert (code, out) == (0, f"deleted {name}\n")
    code, _, err = run("jobs", "wait", name)
    assert code == 2 and "NOT_FOUND" in err and "jobs list" in err
    code, out, err = run("jobs", "upload", str(clip))
    assert code == 0 and out.startswith("uploads/") and "uploaded" in err


def test_translation_and_synthesis_jobs_through_the_gateway(suite, clip):
    """The client suite's services (tiny random translate and TTS) behind Envoy: jobs of the
    other two services, routed by their OperationsService."""
    with Client(suite.gateway, metadata=as_user("hana")) as client:
        spoken = client.jobs.batch_synthesize(
            "A first sentence. And a second one.", preset_voice="default", seed=3
        )
        assert spoken.service == "tts"
        translated = client.jobs.batch_translate_speech(
            [clip, client.jobs.upload(clip, "translate")], "fr", source="en", source_transcript=True
        )
        assert translated.service == "translate"
        spoken = client.jobs.wait_job(spoken.name, timeout=120)
        translated = client.jobs.wait_job(translated.name, timeout=120)
        assert spoken.succeeded and translated.succeeded, (spoken.error, translated.error)
        audio = client.jobs.job_result(spoken.name)  # the natural form: audio
        assert audio.startswith(b"RIFF") and len(audio) == spoken.response.audio_size_bytes
        assert spoken.response.seed == 3 and spoken.results == []
        assert [r.ok for r in translated.results] == [True, True]
        assert translated.results[1].source.startswith("uploads/")
        assert all(r.result.target_language == "fr" for r in translated.results)
        with pytest.raises(InvalidArgument):
            client.jobs.job_result(translated.name, "audio")  # no speech was asked for
        assert translated.name in [j.name for j in client.jobs.list_jobs("translate")]
        assert spoken.name in [j.name for j in client.jobs.list_jobs("tts", state="succeeded")]
        for name in (spoken.name, translated.name):
            client.jobs.delete_job(name)
