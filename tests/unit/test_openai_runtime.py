"""speechmesh.runtime.openai: what the OpenAI faces share (aliases, JSON bodies, the model list)."""

from __future__ import annotations

import json

import grpc
import pytest

from speechmesh.runtime import errors, openai
from tests.unit.forms import violation


def test_aliases_mean_the_default_model():
    for service, aliases in openai.ALIASES.items():
        assert [openai.resolve_model(m, aliases) for m in (*aliases, "", "  ")] == [""] * (
            len(aliases) + 2
        ), service
    assert openai.resolve_model(" sesame/csm-1b ", openai.ALIASES["tts"]) == "sesame/csm-1b"
    # One service's alias is a name like any other to another service.
    assert openai.resolve_model("tts-1", openai.ALIASES["asr"]) == "tts-1"


def test_json_bodies_in_and_out():
    assert openai.parse_json_body("application/json; charset=utf-8", b'{"input": "hi"}') == {
        "input": "hi"
    }
    assert openai.parse_json_body("", b"{}") == {}  # no content type: taken as JSON
    for content_type, body in (("text/plain", b"{}"), ("application/json", b"[1]"), ("", b"{")):
        with pytest.raises(errors.ApiError) as error:
            openai.parse_json_body(content_type, body)
        assert violation(error) == "content_type"
    assert openai.json_bytes({"text": "é", "n": [1]}) == '{"text":"é","n":[1]}'.encode()
    with pytest.raises(ValueError):
        openai.json_bytes({"x": float("nan")})


def test_model_list_and_lookup():
    ids = ["tiny", "whisper-1", "tts-1"]
    content_type, body = openai.models_body(ids, 1700000000)
    assert content_type == "application/json"
    value = json.loads(body)
    assert value["object"] == "list"
    assert [model["id"] for model in value["data"]] == ids
    assert value["data"][0] == {
        "id": "tiny",
        "object": "model",
        "created": 1700000000,
        "owned_by": "speechmesh",
    }
    assert json.loads(openai.model_body("tts-1", ids, 5)[1])["id"] == "tts-1"
    with pytest.raises(errors.ApiError) as error:
        openai.model_body("gpt-5", ids, 5)
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert "GET /v1/models" in error.value.message
