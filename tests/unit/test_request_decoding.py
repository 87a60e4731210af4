"""Request bodies parsed in the handler (speechmesh.runtime.decoding) and statuses that fit in
any client's trailers (the interceptor): on their own, and through a real in-process server
whose methods cover the four gRPC kinds (no models; the services are fuzzed in
tests/service/test_fuzz.py)."""

from __future__ import annotations

import grpc
import pytest
import structlog
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from speechmesh.runtime import errors
from speechmesh.runtime.decoding import RequestDecoder, malformed_request, message_type_name
from speechmesh.runtime.interceptor import (
    MAX_DETAIL_BYTES,
    MAX_MESSAGE_BYTES,
    _fitted,
    clip,
)
from speechmesh.runtime.server import ServiceApp
from speechmesh.runtime.settings import ServiceSettings
from tests.conftest import serving

SERVICE = "speechmesh.test.v1.Echo"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _echo_class():
    """speechmesh.test.v1.EchoRequest {request_id = 1; text = 2}, built here so the test does
    not follow the real contracts as they change."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="speechmesh/test/v1/echo.proto", package="speechmesh.test.v1", syntax="proto3"
    )
    message = proto.message_type.add(name="EchoRequest")
    for number, name in enumerate(["request_id", "text"], start=1):
        message.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("speechmesh.test.v1.EchoRequest")
    )


Echo = _echo_class()
NAME = "speechmesh.test.v1.EchoRequest"
# Field 2 (text) announces 5 bytes and carries 2.
BAD = b"\x12\x05ab"


def echo(text: str, request_id: str = "") -> bytes:
    return Echo(text=text, request_id=request_id).SerializeToString()


async def _bodies(*bodies: bytes):
    for body in bodies:
        yield body


# -- the decoder ------------------------------------------------------------------------


def test_the_type_name_comes_from_the_generated_deserializer():
    assert message_type_name(Echo.FromString, "/x.Y/Z") == NAME
    assert message_type_name(health_pb2.HealthCheckRequest.FromString, "/x.Y/Z") == (
        "grpc.health.v1.HealthCheckRequest"
    )
    # A hand-written deserializer says what the method takes.
    assert message_type_name(lambda body: body.decode(), "/x.Y/Z") == "request of /x.Y/Z"


def test_a_body_that_parses_is_the_message():
    decoder = RequestDecoder(Echo.FromString, "/x.Y/Z")
    assert decoder.parse(echo("hi", "r1")) == Echo(text="hi", request_id="r1")
    assert decoder.parse(b"") == Echo()  # an empty body is the empty message


def test_a_body_that_does_not_parse_is_invalid_argument_naming_the_type():
    decoder = RequestDecoder(Echo.FromString, "/x.Y/Z")
    with pytest.raises(errors.ApiError) as raised:
        decoder.parse(BAD)
    error = raised.value
    assert error.code == INVALID
    assert error.message == f"the request is not a valid {NAME}"
    (info,) = error.details
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("MALFORMED_REQUEST", errors.DOMAIN)
    assert dict(info.metadata) == {"message_type": NAME}
    # Nothing of the parser's exception travels with it.
    assert error.__cause__ is None and error.__suppress_context__


def test_a_hand_written_deserializer_that_raises_is_the_same_error():
    def strict(body: bytes) -> str:
        return body.decode("ascii")

    with pytest.raises(errors.ApiError) as raised:
        RequestDecoder(strict, "/x.Y/Z").parse(b"\xff")
    assert raised.value.message == "the request is not a valid request of /x.Y/Z"


async def test_a_stream_is_parsed_message_by_message_and_names_the_bad_ones_position():
    decoder = RequestDecoder(Echo.FromString, "/x.Y/Z")
    stream = decoder.stream(_bodies(echo("a"), echo("b"), BAD, echo("never read")))
    assert [await anext(stream), await anext(stream)] == [Echo(text="a"), Echo(text="b")]
    with pytest.raises(errors.ApiError) as raised:
        await anext(stream)
    assert raised.value.message == f"the request is not a valid {NAME} (message 3 of the stream)"
    (info,) = raised.value.details
    assert dict(info.metadata) == {"message_type": NAME, "stream_position": "3"}
    assert [m async for m in decoder.stream(_bodies())] == []
    assert malformed_request(NAME, 0).message == f"the request is not a valid {NAME}"


# -- statuses that fit in the trailers ---------------------------------------------------


def test_clip_keeps_short_text_and_the_ends_of_long_text():
    assert clip("short", 10) == "short"
    clipped = clip("start " + "x" * 5000 + " what to do", 100)
    assert len(clipped.encode()) <= 100
    assert clipped.startswith("start x") and clipped.endswith("x what to do") and " … " in clipped
    # Never half a character: the cut is on UTF-8 boundaries.
    wide = clip("é" * 1000 + "🙂" * 1000, 333)
    assert len(wide.encode()) <= 333
    assert wide.startswith("éé") and wide.endswith("🙂🙂")
    assert clip("abcdef", 3) == "abc"  # too short for the marker: a plain cut


def test_fitted_clips_the_message_and_every_string_of_the_details():
    name = "voices/" + "n" * 20000
    error = errors.not_found("voice", name, f"{name} does not exist; ListVoices lists them")
    error.details.append(
        error_details_pb2.ErrorInfo(reason="R", domain="d", metadata={"value": "v" * 9000})
    )
    error.details.append(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="f", description="d" * 9000)
            ]
        )
    )
    fitted = _fitted(error)
    assert fitted.code == error.code
    assert len(fitted.message.encode()) <= MAX_MESSAGE_BYTES
    assert fitted.message.endswith("does not exist; ListVoices lists them")
    resource, info, bad = fitted.details
    assert resource.resource_type == "voice"
    assert len(resource.resource_name.encode()) <= MAX_DETAIL_BYTES
    assert len(resource.description.encode()) <= MAX_DETAIL_BYTES
    assert len(info.metadata["value"]) <= MAX_DETAIL_BYTES and info.reason == "R"
    assert len(bad.field_violations[0].description) <= MAX_DETAIL_BYTES
    # The error raised stays as it was (its details may be shared).
    assert error.details[0].resource_name == name
    # Short errors are unchanged.
    small = errors.invalid_argument("text", "is empty")
    assert _fitted(small).to_status() == small.to_status()


# -- through a real server ---------------------------------------------------------------

seen: list = []


async def _unary(request, context):
    seen.append(request)
    if request.text == "huge":
        name = "m" * 20000
        raise errors.not_found("model", name, f"model {name!r} is not served here")
    return request


async def _unary_stream(request, context):
    seen.append(request)
    yield request
    yield request


async def _stream_unary(requests, context):
    texts = [r.text async for r in requests]
    return Echo(text="+".join(texts))


async def _stream_stream(requests, context):
    async for request in requests:
        yield request


async def _raw(request, context):
    seen.append(request)
    return request


def _register(server: grpc.aio.Server) -> None:
    typed = {"request_deserializer": Echo.FromString, "response_serializer": Echo.SerializeToString}
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, **typed),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(_unary_stream, **typed),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(_stream_unary, **typed),
        "StreamStream": grpc.stream_stream_rpc_method_handler(_stream_stream, **typed),
        # No deserializer: the handler gets the bytes as they came.
        "Raw": grpc.unary_unary_rpc_method_handler(_raw),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])


async def _nothing() -> None:
    return None


@pytest.fixture(scope="module")
async def echo_server():
    app = ServiceApp(
        name="echo", service_names=[SERVICE], register=_register, load=_nothing, close=_nothing
    )
    settings = ServiceSettings(host="127.0.0.1", port=0, metrics=False)
    async with serving(app, settings) as (host, channel):
        yield host, channel


def _raw_call(channel, kind: str, method: str):
    return getattr(channel, kind)(
        f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None
    )


def _counted(method: str, code: str) -> float:
    labels = {"service": "echo", "method": method, "code": code}
    return REGISTRY.get_sample_value("speechmesh_requests_total", labels) or 0.0


async def test_every_kind_of_method_parses_its_requests_and_rejects_bad_bodies(echo_server):
    _, channel = echo_server
    unary = _raw_call(channel, "unary_unary", "Unary")
    assert Echo.FromString(await unary(echo("hi"), timeout=10)) == Echo(text="hi")
    unary_stream = _raw_call(channel, "unary_stream", "UnaryStream")
    assert [Echo.FromString(r) async for r in unary_stream(echo("x"), timeout=10)] == [
        Echo(text="x")
    ] * 2
    stream_unary = _raw_call(channel, "stream_unary", "StreamUnary")
    answer = await stream_unary(iter([echo("a"), echo("b")]), timeout=10)
    assert Echo.FromString(answer) == Echo(text="a+b")
    stream_stream = _raw_call(channel, "stream_stream", "StreamStream")
    assert [Echo.FromString(r) async for r in stream_stream(iter([echo("a")]), timeout=10)] == [
        Echo(text="a")
    ]

    expected = f"the request is not a valid {NAME}"
    for call, position in [
        (lambda: unary(BAD, timeout=10), ""),
        (lambda: _drain(unary_stream(BAD, timeout=10)), ""),
        (lambda: stream_unary(iter([echo("a"), BAD]), timeout=10), " (message 2 of the stream)"),
        (lambda: _drain(stream_stream(iter([BAD]), timeout=10)), " (message 1 of the stream)"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call()
        assert raised.value.code() == INVALID
        assert raised.value.details() == expected + position
        assert rpc_status.from_call(raised.value).message == expected + position


async def _drain(call) -> list:
    return [r async for r in call]


async def test_a_method_without_deserializer_gets_the_bytes(echo_server):
    _, channel = echo_server
    seen.clear()
    raw = _raw_call(channel, "unary_unary", "Raw")
    assert await raw(b"\xffnot a message", timeout=10) == b"\xffnot a message"
    assert seen == [b"\xffnot a message"]


async def test_a_rejected_body_is_logged_and_counted_like_any_call(echo_server):
    _, channel = echo_server
    unary = _raw_call(channel, "unary_unary", "Unary")
    before = (_counted("Unary", "INVALID_ARGUMENT"), _counted("Unary", "OK"))
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(grpc.aio.AioRpcError):
            await unary(BAD, timeout=10)
        await unary(echo("hi", request_id="req-7"), timeout=10)
    rpcs = [(e["method"], e["code"], e["request_id"]) for e in logs if e["event"] == "rpc"]
    assert rpcs == [("Unary", "INVALID_ARGUMENT", ""), ("Unary", "OK", "req-7")]
    after = (_counted("Unary", "INVALID_ARGUMENT"), _counted("Unary", "OK"))
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


async def test_an_error_echoing_a_huge_name_reaches_the_client_with_its_code(echo_server):
    """Unclipped, the status is ~50 KiB of trailers: the client drops it and reports
    RESOURCE_EXHAUSTED ("received metadata size exceeds soft limit")."""
    _, channel = echo_server
    unary = _raw_call(channel, "unary_unary", "Unary")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await unary(echo("huge"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details().endswith("' is not served here")
    (info,) = rpc_status.from_call(raised.value).details
    resource = error_details_pb2.ResourceInfo()
    assert info.Unpack(resource) and resource.resource_type == "model"


async def test_health_and_a_health_watch_still_answer(echo_server):
    _, channel = echo_server
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    first = await anext(aiter(watch))
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    # The stock health service's requests are parsed the same way.
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await check(b"\x0a\x09short", timeout=10)
    assert raised.value.code() == INVALID
    assert raised.value.details() == "the request is not a valid grpc.health.v1.HealthCheckRequest"
