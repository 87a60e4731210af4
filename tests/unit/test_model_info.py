"""proto_mapping.model_info: the ModelInfo fields the three services share, filled alike."""

from __future__ import annotations

import types

import pytest

from speechmesh.asr.v1 import asr_pb2
from speechmesh.common.v1 import common_pb2
from speechmesh.inference.model_state import ModelState
from speechmesh.runtime.proto_mapping import model_info
from speechmesh.translate.v1 import translate_pb2
from speechmesh.tts.v1 import tts_pb2

ENGINE = types.SimpleNamespace(
    family="whisper", random_weights=True, device="cpu", dtype="float32", memory_bytes=1234
)


@pytest.mark.parametrize(
    "info_class", [asr_pb2.ModelInfo, translate_pb2.ModelInfo, tts_pb2.ModelInfo]
)
def test_shared_fields(info_class):
    loading = types.SimpleNamespace(
        name="tiny", source="/models/tiny", state=ModelState.LOADING, error="", engine=None
    )
    info = model_info(info_class, loading, loading)
    assert (info.name, info.source, info.state, info.default) == (
        "tiny",
        "/models/tiny",
        common_pb2.MODEL_STATE_LOADING,
        True,
    )
    assert (info.engine, info.device, info.memory_bytes) == ("", "", 0)
    ready = types.SimpleNamespace(
        name="b", source="org/b", state=ModelState.READY, error="", engine=ENGINE
    )
    info = model_info(info_class, ready, loading)
    assert info.state == common_pb2.MODEL_STATE_READY and not info.default
    assert (info.engine, info.random_weights, info.device, info.dtype, info.memory_bytes) == (
        "whisper",
        True,
        "cpu",
        "float32",
        1234,
    )
    failed = types.SimpleNamespace(
        name="c", source="c", state=ModelState.FAILED, error="no such folder", engine=None
    )
    info = model_info(info_class, failed, loading)
    assert (info.state, info.error) == (common_pb2.MODEL_STATE_FAILED, "no such folder")
