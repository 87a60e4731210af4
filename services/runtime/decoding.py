"""Request bodies parsed inside the handler, where a bad one is the caller's mistake.

grpc.aio parses each request body with the method's deserializer before any handler code runs;
a body that does not parse is answered UNKNOWN with the parser's class name and text. The
interceptor hands grpc an identity deserializer instead and parses here, so a body that is not
a valid message is INVALID_ARGUMENT naming the message type ("the request is not a valid
speechmesh.asr.v1.RecognizeRequest"), with an ErrorInfo (reason MALFORMED_REQUEST) and nothing
of the parser's internals. In a client stream every message is parsed as the handler reads it:
the messages before a bad one are handled, the bad one ends the call.

Handlers read a stream through the iterator they are given; `context.read()` would return
the raw bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2

from speechmesh.runtime import errors

#: ErrorInfo reason of a request body that is not a valid message.
MALFORMED_REQUEST = "MALFORMED_REQUEST"


def malformed_request(type_name: str, position: int = 0) -> errors.ApiError:
    """INVALID_ARGUMENT for a body that is not a valid `type_name`; `position` (1-based) is
    the message's place in a client stream, 0 for a unary request."""
    where = f" (message {position} of the stream)" if position else ""
    metadata = {"message_type": type_name}
    if position:
        metadata["stream_position"] = str(position)
    info = error_details_pb2.ErrorInfo(
        reason=MALFORMED_REQUEST, domain=errors.DOMAIN, metadata=metadata
    )
    return errors.ApiError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid {type_name}{where}",
        [info],
    )


def message_type_name(deserializer: Callable[[bytes], Any], method: str) -> str:
    """The full proto name a deserializer parses (`Message.FromString` of generated code);
    for any other callable, what the method takes ("the request of /pkg.Service/Method")."""
    cls = getattr(deserializer, "__self__", None)
    descriptor = getattr(cls, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return name if isinstance(name, str) and name else f"request of {method}"


class RequestDecoder:
    """Parses one method's request bodies; a body that fails is `malformed_request`."""

    def __init__(self, deserializer: Callable[[bytes], Any], method: str):
        self.deserializer = deserializer
        self.type_name = message_type_name(deserializer, method)

    def parse(self, body: bytes, position: int = 0) -> Any:
        try:
            return self.deserializer(body)
        except Exception:  # DecodeError, and whatever a hand-written deserializer raises
            raise malformed_request(self.type_name, position) from None

    def stream(self, bodies: AsyncIterable[bytes]) -> AsyncIterator[Any]:
        """The messages of a client stream, each parsed when the handler reads it."""
        return _DecodedStream(self, bodies)


class _DecodedStream:
    """An async iterator (not a generator: nothing to finalize when a handler stops early)."""

    def __init__(self, decoder: RequestDecoder, bodies: AsyncIterable[bytes]):
        self._decoder = decoder
        self._bodies = aiter(bodies)
        self._count = 0

    def __aiter__(self) -> _DecodedStream:
        return self

    async def __anext__(self) -> Any:
        body = await anext(self._bodies)
        self._count += 1
        return self._decoder.parse(body, self._count)
