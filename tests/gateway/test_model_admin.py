"""LoadModel and UnloadModel through the real Envoy with API keys on: the operator (alice, in
SPEECHMESH_OPERATORS) unloads and loads a model over REST; bob is 403 PERMISSION_DENIED, no key
is 401; a request naming the unloaded model loads it again and answers; a spoofed identity
header does not make bob an operator."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import AUDIO, TINY_EN, requires_shared
from tests.gateway.conftest import run_envoy
from tests.servers import AsrProcess

pytestmark = requires_shared

ALICE = "alice-key-0001"
BOB = "bob-key-0002"


@pytest.fixture(scope="module")
def asr(tmp_path_factory, tiny_whisper):
    """ASR with the tiny random Whisper as default and whisper-tiny.en as "en", auth on,
    alice the operator."""
    tmp = tmp_path_factory.mktemp("admin")
    server = AsrProcess(
        tmp,
        str(tiny_whisper),
        "admin",
        {
            "SPEECHMESH_GATEWAY_AUTH": "api_key",
            "SPEECHMESH_OPERATORS": "alice",
            "SPEECHMESH_ASR_EXTRA_MODELS": f"en={TINY_EN}",
        },
    )
    try:
        asyncio.run(server.wait_serving())
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, asr, credentials):
    with run_envoy(
        tmp_path_factory.mktemp("envoy"),
        ["asr"],
        auth="api_key",
        api_keys_file=credentials["api_keys"],
        asr_upstream=asr.address,
    ) as (gateway, _):
        yield gateway


def states(gateway, key: str) -> dict[str, str]:
    reply = gateway.get("/v1/asr/models", x_api_key=key)
    assert reply.status == 200, reply.body
    return {m["name"]: m["state"] for m in reply.json()["models"]}


def test_only_the_operator_loads_and_unloads_models(gateway):
    assert states(gateway, BOB)["en"] == "MODEL_STATE_READY"
    for key, status in [(BOB, 403), (None, 401)]:
        headers = {"x_api_key": key} if key else {}
        reply = gateway.post_json("/v1/asr/models/en:unload", {}, **headers)
        assert reply.status == status, reply.body
    # bob claiming to be alice is still bob
    reply = gateway.post_json(
        "/v1/asr/models/en:unload", {}, x_api_key=BOB, x_speechmesh_identity="alice"
    )
    assert reply.status == 403 and "operators only" in reply.json()["message"]
    assert states(gateway, BOB)["en"] == "MODEL_STATE_READY"

    reply = gateway.post_json("/v1/asr/models/en:unload", {}, x_api_key=ALICE)
    assert reply.status == 200, reply.body
    assert reply.json()["state"] == "MODEL_STATE_UNLOADED"
    assert states(gateway, BOB)["en"] == "MODEL_STATE_UNLOADED"
    # anyone's request for it loads it again and answers
    reply = gateway.request(
        "POST",
        "/v1/asr:recognizeFile?config.model=en",
        (AUDIO / "goforward.wav").read_bytes(),
        {"content-type": "audio/wav", "x-api-key": BOB},
    )
    assert reply.status == 200, reply.body
    assert "forward" in json.loads(reply.body)["transcript"].lower()
    assert states(gateway, BOB)["en"] == "MODEL_STATE_READY"

    reply = gateway.post_json("/v1/asr/models/en:unload", {}, x_api_key=ALICE)
    assert reply.status == 200
    reply = gateway.post_json("/v1/asr/models/en:load", {}, x_api_key=ALICE)
    assert reply.status == 200, reply.body
    assert reply.json()["state"] == "MODEL_STATE_READY"
    # the default model stays: 400 FAILED_PRECONDITION
    default = next(iter(states(gateway, ALICE)))
    reply = gateway.post_json(f"/v1/asr/models/{default}:unload", {}, x_api_key=ALICE)
    assert reply.status == 400 and "default" in reply.json()["message"]


def test_speechmesh_models_commands(gateway, capsys):
    from speechmesh.cli import main

    target = ["--target", gateway.target]
    assert main(["models", "list", *target, "--api-key", BOB]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:2] == ["MODEL", "STATE"]
    assert any(line.startswith("en ") and " ready " in line for line in listed)
    # bob is no operator: the call fails, saying why
    assert main(["models", "unload", "en", *target, "--api-key", BOB]) != 0
    assert "operators only" in capsys.readouterr().err
    assert main(["models", "unload", "en", *target, "--api-key", ALICE]) == 0
    assert capsys.readouterr().out.strip() == "en: unloaded"
    assert main(["models", "load", "en", *target, "--api-key", ALICE]) == 0
    assert capsys.readouterr().out.startswith("en: ready (whisper on cpu")
