"""Jobs through the real Envoy in front of `speechmesh up` (tiny checkpoints): every method has
its REST route, uploads stream past the gateway's body limit, results that are audio or
subtitles come down as raw bodies, and a full queue is 429 with RetryInfo."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse

from tests.sounds import voice_like, wav

CLIP = wav(voice_like(3.0))
MiB = 1024 * 1024


def wait_done(gateway, name: str, limit_s: float = 120.0) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        reply = gateway.post_json(f"/v1/{name}:wait", {"timeout": "5s"})
        assert reply.status == 200, reply.body[:500]
        op = reply.json()
        if op.get("done") or time.monotonic() > deadline:
            return op


def test_asr_job_over_rest(up):
    gateway = up.gateway
    # A raw upload bigger than the gateway's 32 MiB body limit streams through to the service.
    big = b"\0" * (40 * MiB)
    reply = gateway.request(
        "POST", "/v1/asr/uploads", body=big, headers={"Content-Type": "application/octet-stream"}
    )
    assert reply.status == 200, reply.body[:500]
    assert int(reply.json()["size_bytes"]) == 40 * MiB
    reply = gateway.request(
        "POST", "/v1/asr/uploads", body=CLIP, headers={"Content-Type": "audio/wav"}
    )
    assert reply.status == 200, reply.body[:500]
    upload = reply.json()["name"]

    reply = gateway.post_json(
        "/v1/asr:batchRecognize",
        {
            "config": {"languageCode": "en"},
            "files": [{"upload": upload}, {"content": base64.b64encode(CLIP).decode()}],
            "requestId": "rest-job",
        },
    )
    assert reply.status == 200, reply.body[:500]
    op = reply.json()
    name = op["name"]
    assert name.startswith("operations/asr/") and not op["done"]
    assert op["metadata"]["@type"].endswith("speechmesh.common.v1.OperationMetadata")

    done = wait_done(gateway, name)
    assert done["done"] and done["metadata"]["state"] == "OPERATION_STATE_SUCCEEDED", done
    results = done["response"]["results"]
    assert [r["source"] for r in results] == [upload, "content[0]"]
    # The same clip twice (random weights: packed in one window, their words may differ).
    durations = {r["response"]["audio_duration"] for r in results}
    assert durations == {"3s"}, results
    assert gateway.get(f"/v1/{name}").json()["name"] == name

    srt = gateway.get(f"/v1/{name}:result?format=RESULT_FORMAT_SRT&fileIndex=1")
    assert srt.status == 200 and srt.headers["content-type"].startswith("application/x-subrip")
    assert srt.body.startswith(b"1\n") and b" --> " in srt.body
    text = gateway.get(f"/v1/{name}:result?format=RESULT_FORMAT_TEXT")
    assert text.body.decode().strip() == results[0]["response"]["transcript"]

    query = urllib.parse.urlencode({"filter": "state = SUCCEEDED", "pageSize": 100})
    listed = gateway.get(f"/v1/operations/asr?{query}")
    assert listed.status == 200 and name in [o["name"] for o in listed.json()["operations"]]
    bad = gateway.get("/v1/operations/asr?filter=" + urllib.parse.quote("state ~ RUNNING"))
    assert bad.status == 400 and "filter" in bad.body.decode()

    assert gateway.request("DELETE", f"/v1/{name}").status == 200
    gone = gateway.get(f"/v1/{name}")
    assert gone.status == 404, gone.body[:300]
    assert gateway.get("/v1/operations/asr/doesnotexist").status == 404


def test_tts_and_translate_jobs_answer_with_raw_audio(up):
    gateway = up.gateway
    reply = gateway.post_json(
        "/v1/tts:batchSynthesize",
        {"text": "A first sentence. And a second one, a little longer.", "config": {"seed": 7}},
    )
    assert reply.status == 200, reply.body[:500]
    name = reply.json()["name"]
    assert name.startswith("operations/tts/")
    done = wait_done(gateway, name)
    assert done["metadata"]["state"] == "OPERATION_STATE_SUCCEEDED", done
    assert len(done["response"]["sentences"]) == 2
    audio = gateway.get(f"/v1/{name}:result")
    assert audio.status == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.body[:4] == b"RIFF"
    assert len(audio.body) == int(done["response"]["audio_size_bytes"])

    reply = gateway.post_json(
        "/v1/translate:batchTranslateSpeech",
        {
            "config": {
                "targetLanguageCode": "fr",
                "outputModalities": ["MODALITY_TEXT", "MODALITY_SPEECH"],
            },
            "files": [{"content": base64.b64encode(CLIP).decode()}],
        },
    )
    assert reply.status == 200, reply.body[:500]
    name = reply.json()["name"]
    done = wait_done(gateway, name)
    assert done["metadata"]["state"] == "OPERATION_STATE_SUCCEEDED", done
    (result,) = done["response"]["results"]
    assert not result["response"]["translated_audio"]
    audio = gateway.get(f"/v1/{name}:result?format=RESULT_FORMAT_AUDIO&fileIndex=0")
    assert audio.status == 200 and audio.body[:4] == b"RIFF"
    assert len(audio.body) == int(result["translated_audio_size_bytes"])


def test_a_full_queue_is_429_with_retry_info(tmp_path_factory, tiny_cache):
    from tests.gateway.conftest import run_up

    env = {"SPEECHMESH_JOBS_MAX_QUEUED": "1", "SPEECHMESH_JOBS_CONCURRENCY": "0"}
    env["SPEECHMESH_JOBS_DATABASE_URL"] = (
        f"sqlite:///{tmp_path_factory.mktemp('full-queue') / 'jobs.sqlite3'}"
    )
    with run_up(tmp_path_factory, tiny_cache, ["asr"], env) as suite:
        body = {"files": [{"content": base64.b64encode(CLIP).decode()}]}
        first = suite.gateway.post_json("/v1/asr:batchRecognize", body)
        assert first.status == 200, first.body[:500]
        full = suite.gateway.post_json("/v1/asr:batchRecognize", body)
        assert full.status == 429, full.body[:500]
        status = json.loads(full.body)
        assert "queue is full" in status["message"]
        retry = [d for d in status["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
        assert retry and retry[0]["retry_delay"].endswith("s")
