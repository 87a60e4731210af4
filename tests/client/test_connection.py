"""Errors, credentials, retries and TLS against a scripted gRPC server that answers ASR's
ListModels the way the services do (statuses built by speechmesh.runtime.errors)."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable

import grpc
import pytest

from speechmesh.asr.v1 import asr_pb2
from speechmesh.client import (
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SpeechmeshError,
    Unauthenticated,
    Unavailable,
)
from speechmesh.runtime import errors
from tests.servers import list_models_server


@dataclasses.dataclass
class Scripted:
    port: int
    #: One function per call, in order: (context) -> response or an ApiError to raise.
    answers: list[Callable]
    metadata: list[dict[str, str]]


@pytest.fixture
def scripted():
    answers: list[Callable] = []
    seen: list[dict[str, str]] = []

    def list_models(request, context):
        seen.append(dict(context.invocation_metadata()))
        answer = answers.pop(0) if answers else (lambda: asr_pb2.ListModelsResponse())
        try:
            return answer()
        except errors.ApiError as error:
            context.abort_with_status(error.to_status())

    server, port = list_models_server(list_models)
    yield Scripted(port, answers, seen), server
    server.stop(0)


def raises(error: errors.ApiError) -> Callable:
    def answer():
        raise error

    return answer


def ok() -> asr_pb2.ListModelsResponse:
    return asr_pb2.ListModelsResponse(models=[asr_pb2.ModelInfo(name="m", engine="whisper")])


def test_resource_exhausted_carries_retry_after(scripted):
    fake, _ = scripted
    fake.answers.append(raises(errors.resource_exhausted("queue full", 1.5)))
    with Client(f"127.0.0.1:{fake.port}") as client, pytest.raises(ResourceExhausted) as caught:
        client.asr.models()
    assert caught.value.retry_after == 1.5 and caught.value.message == "queue full"
    assert isinstance(caught.value, SpeechmeshError) and str(caught.value).startswith("RESOURCE")


def test_error_info_reason_and_resource_info(scripted):
    fake, _ = scripted
    fake.answers += [
        raises(errors.unavailable("loading", 2.0, "MODEL_LOADING")),
        raises(errors.not_found("speechmesh.dev/Model", "big", "no model named big")),
    ]
    with Client(f"127.0.0.1:{fake.port}", retries=0) as client:
        with pytest.raises(Unavailable) as caught:
            client.asr.models()
        assert caught.value.reason == "MODEL_LOADING" and caught.value.retry_after == 2.0
        assert not caught.value.connect_failed
        with pytest.raises(NotFound) as caught:
            client.asr.models()
        assert caught.value.resource.resource_name == "big"


def test_field_violations(scripted):
    fake, _ = scripted
    fake.answers.append(raises(errors.invalid_argument("config.language_code", "unknown 'xx'")))
    with Client(f"127.0.0.1:{fake.port}") as client, pytest.raises(InvalidArgument) as caught:
        client.asr.models()
    assert caught.value.fields == ["config.language_code"]
    assert caught.value.field_violations[0].description == "unknown 'xx'"


def test_unary_calls_are_retried_on_unavailable(scripted):
    fake, _ = scripted
    down = raises(errors.unavailable("restarting", 0.1, "DOWN"))
    fake.answers += [down, down, ok]
    with Client(f"127.0.0.1:{fake.port}", retries=2) as client:
        assert client.asr.models()[0].name == "m"
    assert len(fake.metadata) == 3
    fake.answers += [down, ok]
    with Client(f"127.0.0.1:{fake.port}", retries=0) as client, pytest.raises(Unavailable):
        client.asr.models()


def test_other_errors_are_not_retried(scripted):
    fake, _ = scripted
    fake.answers += [raises(errors.invalid_argument("model", "bad")), ok]
    with Client(f"127.0.0.1:{fake.port}", retries=3) as client, pytest.raises(InvalidArgument):
        client.asr.models()
    assert len(fake.metadata) == 1


def test_api_key_token_and_metadata_are_sent(scripted, monkeypatch):
    fake, _ = scripted
    with Client(f"127.0.0.1:{fake.port}", api_key="k-1", metadata={"x-trace": "t"}) as client:
        client.asr.models()
    with Client(f"127.0.0.1:{fake.port}", token="jwt-2") as client:
        client.asr.models()
    monkeypatch.setenv("SPEECHMESH_API_KEY", "from-env")
    with Client(f"127.0.0.1:{fake.port}") as client:
        client.asr.models()
    first, second, third = fake.metadata
    assert first["x-api-key"] == "k-1" and first["x-trace"] == "t"
    assert second["authorization"] == "Bearer jwt-2" and "x-api-key" not in second
    assert third["x-api-key"] == "from-env"


def test_unauthenticated_is_typed(scripted):
    fake, _ = scripted
    fake.answers.append(
        raises(errors.ApiError(grpc.StatusCode.UNAUTHENTICATED, "missing credentials"))
    )
    with Client(f"127.0.0.1:{fake.port}") as client, pytest.raises(Unauthenticated):
        client.asr.models()


def test_deadline(scripted):
    fake, _ = scripted

    def slow():
        import time

        time.sleep(1)
        return ok()

    fake.answers.append(slow)
    with Client(f"127.0.0.1:{fake.port}") as client, pytest.raises(SpeechmeshError) as caught:
        client.asr.models(timeout=0.2)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_async_errors_are_typed_too(scripted):
    fake, _ = scripted
    fake.answers.append(raises(errors.resource_exhausted("busy", 0.5)))
    async with AsyncClient(f"127.0.0.1:{fake.port}", api_key="a") as client:
        with pytest.raises(ResourceExhausted) as caught:
            await client.asr.models()
        assert caught.value.retry_after == 0.5
        assert (await client.asr.models()) == []
    assert fake.metadata[0]["x-api-key"] == "a"


def test_tls_with_a_trusted_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip("openssl could not make a certificate")
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server, port = list_models_server(lambda request, context: ok(), credentials=credentials)
    try:
        with Client(f"localhost:{port}", ca_cert=cert) as client:
            assert client.connection.tls
            assert client.asr.models()[0].name == "m"
        plain = Client(f"127.0.0.1:{port}", retries=0, timeout=5)
        with plain, pytest.raises(Unavailable):
            plain.asr.models()  # plaintext to a TLS port
    finally:
        server.stop(0)
