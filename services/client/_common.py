"""Pieces the sync and asyncio clients share: stream request guards, result merging."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from speechmesh.client.types import Segment, Transcript

#: Longest text piece a synthesis stream message may carry (code points).
MAX_TEXT_PIECE = 5000
#: Unary calls of a long recording cut into pieces (`recognize_file`): target piece length.
PIECE_SECONDS = 60.0

#: Marks "use the client's default" for per-call timeouts (None means no deadline).
DEFAULT: Any = object()


class RequestGuard:
    """Turns stream items into request messages after the first (config) message.

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

    def messages(self, item) -> list:
        message = self.convert(item)
        if message is None:
            return []
        return message if isinstance(message, list) else [message]

    def sync(self, items: Iterable):
        yield self.first
        try:
            for item in items:
                yield from self.messages(item)
        except Exception as error:
            self.fail(error)

    async def aio(self, items):
        yield self.first
        try:
            if hasattr(items, "__aiter__"):
                async for item in items:
                    for message in self.messages(item):
                        yield message
            else:
                import asyncio

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


def merge_transcripts(
    cuts: list[tuple[float, float]], results: list[Transcript], duration: float
) -> Transcript:
    """The transcripts of consecutive pieces of one recording as one transcript."""
    segments: list[Segment] = [
        segment.shifted(start)
        for (start, _end), result in zip(cuts, results, strict=True)
        for segment in result.segments
    ]
    weight: Counter[str] = Counter()
    probability: dict[str, list[float]] = {}
    for (start, end), result in zip(cuts, results, strict=True):
        if result.language:
            weight[result.language] += end - start
            probability.setdefault(result.language, []).append(result.language_probability)
    language = weight.most_common(1)[0][0] if weight else ""
    probs = probability.get(language, [0.0])
    return Transcript(
        " ".join(s.text for s in segments if s.text),
        segments,
        language,
        sum(probs) / len(probs),
        duration,
        results[0].model if results else "",
        results[0].request_id if results else "",
        [r.proto for r in results],
    )
