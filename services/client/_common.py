"""Small pieces every part of the client shares: defaults, stream controls, durations, and the
guard that turns the items of a request stream into messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import duration_pb2

from speechmesh.client.errors import from_rpc_error

#: Longest text piece a synthesis stream message may carry (code points).
MAX_TEXT_PIECE = 5000
#: Unary calls of a long recording cut into pieces (`recognize_file`): target piece length.
PIECE_SECONDS = 60.0

#: Marks "use the client's default" for per-call timeouts (None means no deadline).
DEFAULT: Any = object()


class _Control:
    """A control message to put among the items of a request stream."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Put among audio chunks to end the current utterance (ASR) or segment (translation) now.
FORCE_ENDPOINT = _Control("FORCE_ENDPOINT")
#: Put among text pieces of a synthesis stream to speak the buffered text now.
FLUSH = _Control("FLUSH")


def seconds(value: duration_pb2.Duration) -> float:
    """A protobuf Duration as float seconds."""
    return round(value.seconds + value.nanos / 1e9, 9)  # 1.64, not 1.6400000000000001


def duration(value: float | None) -> duration_pb2.Duration | None:
    """Float seconds as a protobuf Duration; None for none or zero (the service's default)."""
    if not value:
        return None
    found = duration_pb2.Duration()
    found.FromNanoseconds(int(value * 1e9))
    return found


class RequestGuard:
    """Turns stream items into request messages after the first (config) message (`first`
    None: every message comes from the items, as in an upload).

    An exception raised while producing items (a file that cannot be read, a bug in the
    caller's generator) cancels the call, and the stream re-raises it instead of the
    CANCELLED status gRPC would report.
    """

    def __init__(self, first, convert: Callable[[Any], Any]):
        self.first = first
        self.convert = convert
        self.error: BaseException | None = None
        self.call = None

    def fail(self, error: BaseException) -> None:
        self.error = error
        if self.call is not None:
            self.call.cancel()

    def reraise(self, error: BaseException) -> None:
        """Raises what a stream that failed with `error` should: the exception of the items
        (it cancelled the call), else the call's typed error, else `error` itself."""
        if self.error is not None:
            raise self.error from None
        if isinstance(error, grpc.RpcError):
            raise from_rpc_error(error) from error
        raise error

    def raise_error(self) -> None:
        """Raises the exception of the items, if producing them failed."""
        if self.error is not None:
            raise self.error

    def messages(self, item) -> list:
        message = self.convert(item)
        if message is None:
            return []
        return message if isinstance(message, list) else [message]

    def sync(self, items: Iterable):
        if self.first is not None:
            yield self.first
        try:
            for item in items:
                yield from self.messages(item)
        except Exception as error:
            self.fail(error)

    async def aio(self, items):
        """Like `sync`; `items` may be an async iterable, or a sync one that is read in a
        worker thread (a blocking source such as a microphone does not stall the loop)."""
        if self.first is not None:
            yield self.first
        try:
            if hasattr(items, "__aiter__"):
                async for item in items:
                    for message in self.messages(item):
                        yield message
            else:
                iterator = iter(items)
                done = object()
                while (item := await asyncio.to_thread(next, iterator, done)) is not done:
                    for message in self.messages(item):
                        yield message
        except Exception as error:
            self.fail(error)


def split_text(piece: str) -> list[str]:
    """A text piece as pieces a stream message may carry."""
    return [piece[i : i + MAX_TEXT_PIECE] for i in range(0, len(piece), MAX_TEXT_PIECE)]
