"""Realtime transcription over WebSocket: `client.realtime.transcribe(...)`.

The ASR service speaks OpenAI's Realtime transcription protocol at `/v1/realtime` (through the
gateway, `ws://HOST:8080/v1/realtime`; or on the service's own WebSocket port). This client
opens that socket, configures a transcription session (`session.update`), sends the audio as
base64 PCM16 (`input_audio_buffer.append`; FORCE_ENDPOINT among the chunks is
`input_audio_buffer.commit`) and yields what comes back as typed events: RealtimeDelta while a
turn is spoken, RealtimeTranscript when it is complete (with language and word times from the
`speechmesh` extension), and, when asked, RealtimeSpeechEvent.

The URL comes from the client's target (http -> ws, https or TLS -> wss) unless `realtime_url=`
names one; credentials go as on gRPC calls (`x-api-key`, `authorization: Bearer`).

The end of the audio: once the chunks are exhausted, the client sends a `session.update` that
changes the session (noise reduction, which the service accepts and does not apply). speechmesh
answers such an update only after the audio before it is transcribed and its results sent, so
its `session.updated` marks the end of the last turn's results, whether or not the last turn
had speech; then the socket is closed.

An `error` event is raised as the SDK's error of its kind (InvalidArgument naming the field,
NotFound for an unknown model, ResourceExhausted when the service holds all the streams it
takes, Internal when the stream failed); a refused handshake as Unauthenticated (401),
Unimplemented (404: no realtime route there), Unavailable (503, or nothing listening).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import websockets
from websockets.asyncio.client import connect as aio_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect as sync_connect

from speechmesh.client._common import FORCE_ENDPOINT
from speechmesh.client._connection import Connection
from speechmesh.client.audio import (
    CHUNK_SECONDS,
    STREAM_RATE,
    apaced,
    array_to_bytes,
    chunks,
    decode,
    paced,
    read_bytes,
    to_linear16,
)
from speechmesh.client.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    SpeechmeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from speechmesh.client.transcripts import RealtimeDelta, RealtimeSpeechEvent, RealtimeTranscript

__all__ = [
    "PATH",
    "AsyncRealtimeClient",
    "RealtimeClient",
    "RealtimeEvent",
    "realtime_url",
]

PATH = "/v1/realtime"
#: Seconds to wait for the WebSocket handshake.
OPEN_TIMEOUT = 30.0
#: Largest audio sent in one append event, bytes of PCM (base64 makes it 4/3 larger; the
#: service takes messages up to 1 MiB by default).
MAX_APPEND_BYTES = 256 * 1024
#: Audio encodings -> (OpenAI format type, rates it is taken at).
FORMATS = {
    "linear16": ("audio/pcm", (16000, 24000)),
    "mulaw": ("audio/pcmu", (8000,)),
    "alaw": ("audio/pcma", (8000,)),
}
#: OpenAI error codes -> the SDK's error class (an invalid request otherwise: InvalidArgument).
ERRORS: dict[str, type[SpeechmeshError]] = {
    "model_not_found": NotFound,
    "unavailable": Unavailable,
    "rate_limit_exceeded": ResourceExhausted,
    "stream_failed": Internal,
    "session_not_configured": FailedPrecondition,
}
#: What a close code without an error event before it means.
CLOSE_ERRORS: dict[int, tuple[type[SpeechmeshError], str]] = {
    1001: (Unavailable, "the service is going away (shutting down)"),
    1008: (PermissionDenied, "the session was closed by policy"),
    1009: (InvalidArgument, "a message was larger than the service takes"),
    1011: (Internal, "the service failed"),
    1013: (ResourceExhausted, "the service is busy; try again later"),
}
_COMMIT_EMPTY = "input_audio_buffer_commit_empty"

RealtimeEvent = RealtimeDelta | RealtimeTranscript | RealtimeSpeechEvent


def realtime_url(connection: Connection, url: str | None = None) -> str:
    """The realtime URL: `url` (a ws:// or wss:// URL, or host:port), else the client's
    target with ws:// (wss:// with TLS) and the path /v1/realtime."""
    scheme = "wss" if connection.tls else "ws"
    if not url:
        return f"{scheme}://{connection.target}{PATH}"
    url = url.strip()
    head, sep, rest = url.partition("://")
    if sep:
        schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
        if head not in schemes:
            raise ValueError(f"realtime URL {url!r}: use ws://, wss:// or host:port")
        scheme, url = schemes[head], rest
    if "/" not in url:
        url += PATH
    return f"{scheme}://{url}"


class _Session:
    """The protocol of one session, without the socket: the events to send, and what each
    event received means (an event to yield, nothing, the end, or an error raised)."""

    def __init__(
        self,
        *,
        encoding: str,
        sample_rate: int,
        language: str | None,
        model: str | None,
        prompt: str | None,
        turn_detection: bool | dict,
        vad_threshold: float | None,
        endpoint_silence: float | None,
        speech_events: bool,
    ):
        if encoding not in FORMATS:
            raise ValueError(f"encoding {encoding!r}: use one of {', '.join(FORMATS)}")
        kind, rates = FORMATS[encoding]
        if sample_rate not in rates:
            allowed = " or ".join(str(rate) for rate in rates)
            raise ValueError(f"{encoding} audio goes at {allowed} Hz, not {sample_rate}")
        self.format = (
            {"type": kind, "rate": sample_rate} if encoding == "linear16" else {"type": kind}
        )
        self.width = 2 if encoding == "linear16" else 1
        self.transcription = {
            "model": model or "",
            "language": language or "",
            "prompt": prompt or "",
        }
        detection: dict | None = None
        if turn_detection:
            detection = {"type": "server_vad"}
            if isinstance(turn_detection, dict):
                detection.update(turn_detection)
            if vad_threshold is not None:
                detection["threshold"] = vad_threshold
            if endpoint_silence is not None:
                detection["silence_duration_ms"] = round(endpoint_silence * 1000)
        self.turn_detection = detection
        self.speech_events = speech_events
        self.configured = False
        self.ending = False
        self.done = False
        self.commits = 0

    # -- events out --------------------------------------------------------------------------

    @staticmethod
    def _event(kind: str, **fields) -> str:
        return json.dumps({"type": kind, "event_id": "event_" + uuid.uuid4().hex[:20], **fields})

    def update(self) -> str:
        inputs = {
            "format": self.format,
            "transcription": self.transcription,
            "turn_detection": self.turn_detection,
            "noise_reduction": None,
        }
        return self._event(
            "session.update", session={"type": "transcription", "audio": {"input": inputs}}
        )

    def end(self) -> str:
        """The update that marks the end (see the module's doc)."""
        self.ending = True
        inputs = {"noise_reduction": {"type": "near_field"}}
        return self._event(
            "session.update", session={"type": "transcription", "audio": {"input": inputs}}
        )

    def messages(self, chunk: Any) -> list[str]:
        """The events of one item of the audio: appends, or a commit for FORCE_ENDPOINT."""
        if chunk is FORCE_ENDPOINT:
            self.commits += 1
            return [self._event("input_audio_buffer.commit")]
        data = array_to_bytes(chunk, "linear16" if self.width == 2 else "raw")
        if len(data) % self.width:
            raise ValueError(
                f"an audio chunk of {len(data)} bytes: 16-bit PCM comes in whole samples"
            )
        return [
            self._event(
                "input_audio_buffer.append",
                audio=base64.b64encode(data[start : start + MAX_APPEND_BYTES]).decode("ascii"),
            )
            for start in range(0, len(data), MAX_APPEND_BYTES)
        ]

    # -- events in ---------------------------------------------------------------------------

    def receive(self, message: str | bytes) -> RealtimeEvent | None:
        event = json.loads(message)
        kind = event.get("type", "")
        if kind in ("session.updated", "transcription_session.updated"):
            if self.ending:
                self.done = True
            self.configured = True
        elif kind == "error":
            error = event.get("error") or {}
            if error.get("code") == _COMMIT_EMPTY and self.commits:
                self.commits -= 1  # FORCE_ENDPOINT with nothing to end: nothing to do
                return None
            raise error_from_event(error)
        elif kind == "conversation.item.input_audio_transcription.delta":
            extra = event.get("speechmesh") or {}
            return RealtimeDelta(
                event.get("item_id", ""),
                event.get("delta", ""),
                extra.get("transcript", ""),
                extra.get("stable_transcript", ""),
                event,
            )
        elif kind == "conversation.item.input_audio_transcription.completed":
            return RealtimeTranscript.from_event(event)
        elif self.speech_events and kind.startswith("input_audio_buffer.speech_"):
            name = kind.removeprefix("input_audio_buffer.")
            at = event.get("audio_start_ms", event.get("audio_end_ms", 0))
            return RealtimeSpeechEvent(name, at / 1000, event.get("item_id", ""), event)
        return None


def error_from_event(error: dict) -> SpeechmeshError:
    """The SDK's error for the `error` object of an `error` event."""
    code = error.get("code") or ""
    message = error.get("message") or code or "the session failed"
    param = error.get("param")
    cls = ERRORS.get(code)
    if cls is None:
        cls = Internal if error.get("type") == "server_error" else InvalidArgument
    violations = [FieldViolation(param, message)] if param else []
    return cls(message, field_violations=violations, reason=code)


def closed_error(error: ConnectionClosed) -> SpeechmeshError:
    """The SDK's error for a socket the service closed before the session ended."""
    frame = error.rcvd
    if frame is None:
        return Unavailable("the realtime connection was lost before the session ended")
    cls, meaning = CLOSE_ERRORS.get(
        frame.code, (Unavailable, "the service closed the session before it ended")
    )
    reason = f": {frame.reason}" if frame.reason else ""
    return cls(f"{meaning} (WebSocket close {frame.code}{reason})")


def handshake_error(url: str, error: Exception) -> Exception:
    """The SDK's error for a connection that could not be opened."""
    if isinstance(error, InvalidURI):
        return ValueError(f"realtime URL {url!r} is not a WebSocket URL: {error}")
    if isinstance(error, InvalidStatus):
        response = error.response
        body = response.body.decode("utf-8", "replace").strip() if response.body else ""
        said = f"{url} answered {response.status_code}" + (f": {body}" if body else "")
        status = response.status_code
        if status == 401:
            return Unauthenticated(said)
        if status == 403:
            return PermissionDenied(said)
        if status == 404:
            return Unimplemented(said + " (no realtime transcription route there)")
        if status == 429:
            retry = response.headers.get("retry-after")
            after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
            return ResourceExhausted(said, retry_after=after)
        return Unavailable(said)
    if isinstance(error, TimeoutError):
        return DeadlineExceeded(f"opening {url} timed out")
    if isinstance(error, OSError):
        return Unavailable(f"failed to connect to {url}: {error.strerror or error}")
    if isinstance(error, InvalidHandshake):
        return Unavailable(f"{url}: the WebSocket handshake failed: {error}")
    return error


def _is_recording(audio: Any) -> bool:
    """A recording (a path, the bytes of a file, a binary file), not an iterable of chunks."""
    return isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(
        audio, "read"
    )


def _recording_chunks(audio: Any, rate: int, chunk_seconds: float) -> list[bytes]:
    name = str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
    pcm = to_linear16(decode(read_bytes(audio), name, rate))
    return list(chunks(pcm, rate, chunk_seconds))


class _Base:
    """What both flavours share: the client, the session's settings and the socket's options."""

    def __init__(self, client):
        self._client = client

    @property
    def url(self) -> str:
        """The realtime URL this client connects to."""
        return realtime_url(self._client.connection, self._client.realtime_url)

    def _session(self, audio, sample_rate, encoding, options) -> _Session:
        if sample_rate is None:
            sample_rate = STREAM_RATE if encoding == "linear16" else 8000
        if _is_recording(audio) and encoding != "linear16":
            raise ValueError("a recording is sent as linear16; encoding is for chunks")
        return _Session(encoding=encoding, sample_rate=sample_rate, **options)

    def _connect_options(self, url: str) -> dict[str, Any]:
        connection = self._client.connection
        headers = list(connection.metadata)
        options: dict[str, Any] = dict(
            additional_headers=headers,
            user_agent_header=f"speechmesh-python websockets/{websockets.__version__}",
            open_timeout=OPEN_TIMEOUT,
            max_size=None,
            compression=None,
        )
        if url.startswith("wss://"):
            roots = connection.ca_cert
            context = ssl.create_default_context(
                cadata=roots.decode("ascii") if isinstance(roots, bytes) else None
            )
            options["ssl"] = context
            if connection.tls_server_name:
                options["server_hostname"] = connection.tls_server_name
        return options


_DOC = """Transcribes live audio over the realtime WebSocket, yielding events as they come.

        `audio` is a recording (a path, the bytes of a file in any container, or a binary
        file; decoded here to `sample_rate` and sent in chunks of `chunk_seconds`, in real time
        with `realtime=True`), or an iterable of chunks (bytes of raw `encoding` audio at
        `sample_rate`, int16 or float numpy arrays, or FORCE_ENDPOINT to end the turn now);
        {iterables}.

        Args:
            encoding: "linear16" (16 or 24 kHz), "mulaw" or "alaw" (8 kHz), for chunks.
            sample_rate: 16000 (default; what the models hear) or 24000 (OpenAI's default).
            language, model, prompt: as for `asr.stream` (language: BCP-47, default detected).
            turn_detection: True (server VAD ends turns after a pause), False (turns end on
                FORCE_ENDPOINT, or a 5 s pause), or a dict of OpenAI's turn_detection fields.
            vad_threshold, endpoint_silence: speech probability (0.05-0.95) and the pause in
                seconds (0.1-5) that ends a turn.
            speech_events: yield RealtimeSpeechEvent too.

        Yields RealtimeDelta (new words of the turn being spoken), RealtimeTranscript (a turn's
        final transcript, words and language) and, with speech_events, RealtimeSpeechEvent.
        The iteration ends once every turn of the audio is transcribed. Raises SpeechmeshError
        subclasses (see speechmesh.client.realtime).
        """


class AsyncRealtimeClient(_Base):
    """Realtime transcription over WebSocket: `AsyncClient(...).realtime`."""

    async def transcribe(
        self,
        audio,
        *,
        encoding: str = "linear16",
        sample_rate: int | None = None,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        language: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        turn_detection: bool | dict = True,
        vad_threshold: float | None = None,
        endpoint_silence: float | None = None,
        speech_events: bool = False,
    ) -> AsyncIterator[RealtimeEvent]:
        session = self._session(
            audio,
            sample_rate,
            encoding,
            dict(
                language=language,
                model=model,
                prompt=prompt,
                turn_detection=turn_detection,
                vad_threshold=vad_threshold,
                endpoint_silence=endpoint_silence,
                speech_events=speech_events,
            ),
        )
        url = self.url
        try:
            ws = await aio_connect(url, **self._connect_options(url))
        except Exception as error:
            raise handshake_error(url, error) from error
        failed: list[BaseException] = []
        sender: asyncio.Task | None = None
        try:
            await ws.send(session.update())
            while not session.done:
                if session.configured and sender is None:
                    sender = asyncio.create_task(
                        self._send(ws, session, audio, realtime, chunk_seconds, failed)
                    )
                try:
                    message = await ws.recv()
                except ConnectionClosed as closed:
                    if failed:
                        raise failed[0] from None
                    raise closed_error(closed) from None
                if (event := session.receive(message)) is not None:
                    yield event
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            await ws.close()

    transcribe.__doc__ = _DOC.format(iterables="an async iterable of chunks too")

    @staticmethod
    async def _send(ws, session: _Session, audio, realtime: bool, chunk_seconds: float, failed):
        try:
            async for chunk in _achunks(audio, session, realtime, chunk_seconds):
                for message in session.messages(chunk):
                    await ws.send(message)
            await ws.send(session.end())
        except ConnectionClosed:
            pass  # the receiving side says why
        except Exception as error:  # the audio's source failed: it is what the caller gets
            failed.append(error)
            await ws.close()


async def _achunks(audio, session: _Session, realtime: bool, chunk_seconds: float):
    if _is_recording(audio):
        rate = session.format["rate"]
        pieces = await asyncio.to_thread(_recording_chunks, audio, rate, chunk_seconds)
        if realtime:
            async for piece in apaced(pieces, chunk_seconds):
                yield piece
        else:
            for piece in pieces:
                yield piece
    elif hasattr(audio, "__aiter__"):
        async for chunk in audio:
            yield chunk
    else:  # a blocking source (a microphone) is read in a worker thread
        iterator = iter(audio)
        done = object()
        while (chunk := await asyncio.to_thread(next, iterator, done)) is not done:
            yield chunk


class RealtimeClient(_Base):
    """Realtime transcription over WebSocket: `Client(...).realtime`."""

    def transcribe(
        self,
        audio,
        *,
        encoding: str = "linear16",
        sample_rate: int | None = None,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        language: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        turn_detection: bool | dict = True,
        vad_threshold: float | None = None,
        endpoint_silence: float | None = None,
        speech_events: bool = False,
    ) -> Iterator[RealtimeEvent]:
        session = self._session(
            audio,
            sample_rate,
            encoding,
            dict(
                language=language,
                model=model,
                prompt=prompt,
                turn_detection=turn_detection,
                vad_threshold=vad_threshold,
                endpoint_silence=endpoint_silence,
                speech_events=speech_events,
            ),
        )
        return self._events(session, audio, realtime, chunk_seconds)

    transcribe.__doc__ = _DOC.format(iterables="a blocking iterable is read in a thread of its own")

    def _events(self, session: _Session, audio, realtime: bool, chunk_seconds: float):
        url = self.url
        try:
            ws = sync_connect(url, **self._connect_options(url))
        except Exception as error:
            raise handshake_error(url, error) from error
        failed: list[BaseException] = []
        sender: threading.Thread | None = None
        try:
            ws.send(session.update())
            while not session.done:
                if session.configured and sender is None:
                    sender = threading.Thread(
                        target=self._send,
                        args=(ws, session, audio, realtime, chunk_seconds, failed),
                        name="speechmesh-realtime-audio",
                        daemon=True,
                    )
                    sender.start()
                try:
                    message = ws.recv()
                except ConnectionClosed as closed:
                    if failed:
                        raise failed[0] from None
                    raise closed_error(closed) from None
                if (event := session.receive(message)) is not None:
                    yield event
        finally:
            ws.close()
            if sender is not None:
                sender.join(1.0)  # a source blocked in a read is left to end on its own

    @staticmethod
    def _send(ws, session: _Session, audio, realtime: bool, chunk_seconds: float, failed) -> None:
        try:
            for chunk in _chunks(audio, session, realtime, chunk_seconds):
                for message in session.messages(chunk):
                    ws.send(message)
            ws.send(session.end())
        except ConnectionClosed:
            pass  # the receiving side says why
        except Exception as error:  # the audio's source failed: it is what the caller gets
            failed.append(error)
            with contextlib.suppress(Exception):
                ws.close()


def _chunks(audio, session: _Session, realtime: bool, chunk_seconds: float) -> Iterable:
    if _is_recording(audio):
        pieces = _recording_chunks(audio, session.format["rate"], chunk_seconds)
        return paced(pieces, chunk_seconds) if realtime else pieces
    return audio
