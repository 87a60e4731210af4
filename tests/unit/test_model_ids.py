"""Stable model ids (speechmesh.inference.model_state): the id rule, aliases, clashes, and
requests that name a model by its id or by its old full source string."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from speechmesh.inference.model_state import (
    ModelState,
    add_model,
    model_id,
    model_spec,
    ready_model,
)
from speechmesh.runtime.errors import ApiError


@dataclasses.dataclass
class Model:
    name: str
    source: str
    state: ModelState = ModelState.READY
    error: str = ""

    @classmethod
    def of(cls, setting: str) -> Model:
        return cls(*model_spec(setting))


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            "../shared/models/whisper-tiny.en",
            ("whisper-tiny.en", "../shared/models/whisper-tiny.en"),
        ),
        (
            "openai/whisper-large-v3-turbo",
            ("whisper-large-v3-turbo", "openai/whisper-large-v3-turbo"),
        ),
        ("/srv/models/csm-1b/", ("csm-1b", "/srv/models/csm-1b/")),
        ("whisper", ("whisper", "whisper")),
        ("tiny=openai/whisper-tiny.en", ("tiny", "openai/whisper-tiny.en")),
        ("en=../models/x", ("en", "../models/x")),
        ("./a=b", ("a=b", "./a=b")),  # a path holding "=" is a path, not an alias
    ],
)
def test_model_spec(setting, expected):
    assert model_spec(setting) == expected


def test_a_bare_dot_is_named_after_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert model_id(".") == tmp_path.name


def test_models_are_found_by_id_or_by_source():
    default = Model.of("../models/whisper-tiny.en")
    other = Model.of("hub=openai/whisper-small")
    models: dict[str, Model] = {}
    for model in (default, other):
        add_model(models, model)
    assert list(models) == ["whisper-tiny.en", "hub"]
    assert ready_model(models, default, "") is default
    assert ready_model(models, default, "whisper-tiny.en") is default
    assert ready_model(models, default, "../models/whisper-tiny.en") is default
    assert ready_model(models, default, "openai/whisper-small") is other
    with pytest.raises(ApiError) as raised:
        ready_model(models, default, "whisper-small.en")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND


def test_the_same_source_twice_is_one_model_and_a_clash_is_an_error():
    models: dict[str, Model] = {}
    add_model(models, Model.of("/a/csm"))
    add_model(models, Model.of("/a/csm"))
    assert list(models) == ["csm"]
    with pytest.raises(ValueError, match="ID=/b/csm"):
        add_model(models, Model.of("/b/csm"))
    add_model(models, Model.of("csm-b=/b/csm"))
    assert list(models) == ["csm", "csm-b"]
