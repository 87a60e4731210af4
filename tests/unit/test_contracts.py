"""The rules the protos keep (docs/api.md states them to clients): every field of a speechmesh
message has a comment and a google.api.field_behavior, responses are output only, `request_id`
is field 100 wherever it appears, and what the services share is defined once, in
speechmesh.common.v1.
"""

from __future__ import annotations

import importlib
import sys

import pytest
from google.api import resource_pb2

from tests.conftest import ROOT

TOOLS = ROOT / "tools"
REQUEST_ID_NUMBER = 100
SHARED = {"ModelState", "PresetVoice"}
#: Fields every service's ModelInfo has, with the same numbers.
MODEL_INFO_COMMON = {
    "name": 1,
    "source": 2,
    "engine": 3,
    "state": 4,
    "error": 5,
    "default": 6,
    "random_weights": 7,
    "device": 8,
    "dtype": 9,
    "memory_bytes": 10,
}


@pytest.fixture(scope="module")
def api():
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module("gen_api_docs")


@pytest.fixture(scope="module")
def files(api):
    return api.own_files(api.compile_descriptor_set())


def messages(api, files):
    for file in files:
        comments = api.Comments(file)
        for name, message, path in api.walk_messages(
            file.message_type, file.package, (api.FILE_MESSAGE,)
        ):
            yield file, comments, name, message, path


def test_every_field_has_a_comment_and_a_field_behavior(api, files):
    missing = []
    for _, comments, name, message, path in messages(api, files):
        for index, field in enumerate(message.field):
            if not comments.get(*path, api.MESSAGE_FIELD, index):
                missing.append(f"{name}.{field.name}: no comment")
            if not api.field_behaviors(field):
                missing.append(f"{name}.{field.name}: no field_behavior")
    assert not missing, "\n".join(missing)


def test_response_fields_are_output_only(api, files):
    by_name = {f".{name}": message for _, _, name, message, _ in messages(api, files)}
    responses = {
        method.output_type
        for file in files
        for service in file.service
        for method in service.method
        if method.output_type in by_name
    }
    assert responses
    wrong = []
    for type_name in sorted(responses):
        message = by_name[type_name]
        if message.options.HasExtension(resource_pb2.resource):
            continue  # a resource (Voice) has input fields too
        for field in message.field:
            if "OUTPUT_ONLY" not in api.field_behaviors(field):
                wrong.append(f"{type_name}.{field.name}")
    assert not wrong, wrong


def test_request_id_is_field_100_everywhere(api, files):
    found = []
    for _, _, name, message, _ in messages(api, files):
        for field in message.field:
            if field.name == "request_id":
                found.append(name)
                assert field.number == REQUEST_ID_NUMBER, name
            else:
                assert field.number != REQUEST_ID_NUMBER, f"{name}.{field.name}"
    assert len(found) > 30


def test_shared_types_are_defined_once_in_common(api, files):
    in_common = set()
    for file in files:
        defined = {message.name for message in file.message_type}
        defined |= {enum.name for enum in file.enum_type}
        if file.package == "speechmesh.common.v1":
            assert not in_common & defined, file.name  # once, in one of its files
            in_common |= defined
        else:
            assert not SHARED & defined, file.name
    assert in_common >= SHARED


def test_every_model_info_has_the_common_fields(api, files):
    infos = [
        message for file in files for message in file.message_type if message.name == "ModelInfo"
    ]
    assert len(infos) == 3
    for info in infos:
        numbers = {field.name: field.number for field in info.field}
        assert {name: numbers.get(name) for name in MODEL_INFO_COMMON} == MODEL_INFO_COMMON
