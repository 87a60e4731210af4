"""What every bidirectional streaming RPC shares: the config-first handshake, the input messages
as domain items, and the limit on open streams per replica.

The request messages of every stream have the oneof `streaming_request` with
`streaming_config` (first message only), a payload field and `control` (whose
`action` may force an endpoint).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from speechmesh.dsp.endpointing import ForceEndpoint
from speechmesh.runtime import errors


async def first_config(request_iterator):
    """The first message's `streaming_config`; None when the client sent nothing."""
    first = await anext(aiter(request_iterator), None)
    if first is None:
        return None
    if first.WhichOneof("streaming_request") != "streaming_config":
        raise errors.invalid_argument(
            "streaming_config",
            "the first message of a stream must carry streaming_config;"
            " the other messages come after it",
        )
    return first.streaming_config


async def stream_inputs(
    request_iterator, payload: str, force_endpoint: int
) -> AsyncIterator[object]:
    """The payloads after the config, and ForceEndpoint for a control message whose action is
    `force_endpoint`; any other control action is ignored."""
    async for request in request_iterator:
        kind = request.WhichOneof("streaming_request")
        if kind == payload:
            yield getattr(request, payload)
        elif kind == "control":
            if request.control.action == force_endpoint:
                yield ForceEndpoint
        elif kind == "streaming_config":
            raise errors.invalid_argument(
                "streaming_config", "only the first message of a stream may carry it"
            )
        else:
            raise errors.invalid_argument(
                "streaming_request", f"empty message; set {payload} or control"
            )


class StreamSlots:
    """Counts open streams; one past `limit` is RESOURCE_EXHAUSTED with a retry hint."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self.open >= self.limit:
            raise errors.resource_exhausted(
                f"{self.open} streams are open, the most this replica takes; retry later", 1.0
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
