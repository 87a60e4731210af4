"""Realtime speech over WebSocket: text in pieces in, audio chunks out, on one connection.

A voice agent opens `/v1/realtime/speech` (through the gateway, or on the TTS service's
WebSocket port), streams the text of its reply as it is generated, and plays the audio as it
comes; with the ASR socket (`/v1/realtime`) it needs one connection per direction. Events are
JSON text messages with a `type` and an `event_id`, in the shape of OpenAI's Realtime API where
OpenAI has the name; what speechmesh has beyond it is in an extra `speechmesh` object.

Client events:

- `session.update` {session: {model, audio: {output: {format: {type, rate}, voice, speed}},
  speechmesh: {preset_voice, language, temperature, seed}}}: fields left out keep their
  values; answered by `session.updated` with the whole session. Formats: `audio/pcm` (16-bit
  little-endian PCM, mono; `rate` 24000 unless given, 8000 to 192000, or 0 for the model's own),
  `audio/pcmu` and `audio/pcma` (G.711 mu-law, A-law; 8000 Hz). `voice` is a stored voice of the
  caller ("voices/jane", or "jane"), a preset voice of the model, or one of OpenAI's voice names
  (the model's default voice), as on `/v1/audio/speech`; `speechmesh.preset_voice` names a
  preset explicitly.
- `input_text_buffer.append` {text}: a piece of text (joined to the others exactly as sent).
  Complete sentences are spoken at once; the rest waits for more text or a commit.
- `input_text_buffer.commit`: the flush: speak what is pending now and end the item; answered by
  `input_text_buffer.committed` {item_id, previous_item_id}.
- `input_text_buffer.clear`: drop the item not yet committed (its text, and its speech not yet
  sent); answered by `input_text_buffer.cleared`.
- `response.cancel`: stop speaking (barge-in): every item still being spoken is dropped.

Server events: `session.created` (at once, with the default session) and `session.updated`;
`response.output_audio.delta` {response_id, item_id, output_index, content_index, delta (base64
audio), speechmesh: {sentence_index, text (on a sentence's first chunk), offset_ms (in the
session's audio), duration_ms, sentence_end}}; `response.output_audio.done` {response_id,
item_id, output_index, content_index, speechmesh: {status (completed, cancelled or failed),
sentence_count, character_count, duration_ms, sample_rate, model, seed}} once an item's audio
is all sent; `error` {type, code, message, param, event_id}.

Each item (the text between commits) is spoken by the domain code of StreamingSynthesize: the
session's settings become a SynthesisConfig mapped by the same function
(speechmesh.tts.mapping.synthesis_request), and `Speaker.open_stream` gives the item a
SpeechStream fed its text pieces, with the commit as the half-close (the stream speaks what is
buffered and ends, encoder tail included). An item's sentences go to the synthesizer as soon as
they are complete, while earlier items still play; the audio leaves in item order. A session
holds one of the service's stream slots (max_streams, shared with StreamingSynthesize) from its
first text until it closes; a session over the limit ends with an error event and close code
1013. A bad event gets an `error` event and the session goes on; so does an item whose text
cannot be spoken (its done has status "failed"). A failure of the service closes with 1011. A
client that goes away cancels every sentence it still had queued and frees its slot at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
import numpy as np
import structlog
from google.rpc import error_details_pb2
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from speechmesh.audio.v1 import audio_pb2
from speechmesh.runtime import openai as openai_names
from speechmesh.runtime.errors import ApiError
from speechmesh.runtime.interceptor import as_api_error
from speechmesh.runtime.streams import StreamSlots
from speechmesh.runtime.websocket import Session
from speechmesh.tts.mapping import synthesis_request
from speechmesh.tts.openai import voice_request
from speechmesh.tts.resolver import VoiceRequest, has_preset
from speechmesh.tts.speaker import Speaker, SynthesisRequest
from speechmesh.tts.streaming import AudioChunk, SpeechStream
from speechmesh.tts.v1 import tts_pb2

log = structlog.get_logger("speechmesh.tts.realtime")

PATH = "/v1/realtime/speech"
#: Output format type -> the G.711 law its PCM16 is encoded with (None: PCM16 as it is).
_FORMATS = {"audio/pcm": None, "audio/pcmu": "mulaw", "audio/pcma": "alaw"}
#: Sample rate of OpenAI's realtime PCM, the default of `audio/pcm`.
DEFAULT_RATE = 24000
#: The only rate of G.711.
G711_RATE = 8000
#: A SynthesisConfig field (as synthesis_request names it) -> the session field.
_FIELDS = {
    "model": "session.model",
    "voice": "session.audio.output.voice",
    "preset_voice": "session.speechmesh.preset_voice",
    "language_code": "session.speechmesh.language",
    "speed": "session.audio.output.speed",
    "temperature": "session.speechmesh.temperature",
    "output_audio_config": "session.audio.output.format",
    "output_audio_config.sample_rate_hertz": "session.audio.output.format.rate",
}
#: A NOT_FOUND resource type -> (error code, session field).
_NOT_FOUND = {
    "model": ("model_not_found", "session.model"),
    "voice": ("voice_not_found", "session.audio.output.voice"),
    "speechmesh.dev/Voice": ("voice_not_found", "session.audio.output.voice"),
}


class EventError(Exception):
    """A client event that cannot be applied: answered with an `error` event."""

    def __init__(self, code: str, message: str, param: str | None = None, kind: str = ""):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param
        self.kind = kind or "invalid_request_error"


def event_error(error: ApiError, param: str | None = None) -> EventError:
    """An ApiError of the domain as an error event, naming the session field it is about."""
    if error.code == grpc.StatusCode.NOT_FOUND:
        for detail in error.details:
            if isinstance(detail, error_details_pb2.ResourceInfo):
                code, field = _NOT_FOUND.get(detail.resource_type, ("not_found", param))
                return EventError(code, error.message, field)
        return EventError("not_found", error.message, param)
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        head, sep, _ = error.message.partition(": ")
        field = head if sep else ""
        return EventError("invalid_value", error.message, _FIELDS.get(field, field or param))
    if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return EventError("rate_limit_exceeded", error.message, kind="server_error")
    return EventError(error.code.name.lower(), error.message, param, kind="server_error")


@dataclass(frozen=True)
class SessionConfig:
    """A speech session's settings, as the client asked for them."""

    model: str = ""
    #: As sent: a stored voice, a preset, an OpenAI voice name; "": the model's default voice.
    voice: str = ""
    preset_voice: str = ""
    language: str = ""
    format_type: str = "audio/pcm"
    #: Output rate, Hz; 0: the model's own.
    rate: int = DEFAULT_RATE
    speed: float = 1.0
    temperature: float | None = None
    #: 0: one chosen for the session (reported in session.updated).
    seed: int = 0


def parse_session(event: dict, previous: SessionConfig) -> SessionConfig:
    """The session an update event asks for (fields left out keep their values); EventError
    naming the field otherwise. Values are checked by the domain (see `_asked`)."""
    session = event.get("session")
    if not isinstance(session, dict):
        raise EventError("missing_required_parameter", "session must be an object", "session")
    kind = session.get("type", "speech")
    if kind != "speech":
        raise EventError(
            "unsupported_session_type",
            f"this socket runs speech sessions only (session.type 'speech'), not {kind!r};"
            " transcription is the ASR service's /v1/realtime",
            "session.type",
        )
    config = previous
    if "model" in session:
        config = replace(config, model=_string(session["model"], "session.model"))
    audio = _object(session.get("audio"), "session.audio")
    output = _object(audio.get("output"), "session.audio.output")
    if "format" in output:
        config = _format(config, output["format"], "session.audio.output.format")
    if "voice" in output:
        config = replace(config, voice=_string(output["voice"], "session.audio.output.voice"))
    if "speed" in output:
        config = replace(config, speed=_number(output["speed"], "session.audio.output.speed"))
    extra = _object(session.get("speechmesh"), "session.speechmesh")
    for key in ("preset_voice", "language"):
        if key in extra:
            config = replace(config, **{key: _string(extra[key], f"session.speechmesh.{key}")})
    if "temperature" in extra:
        value = extra["temperature"]
        temperature = None if value is None else _number(value, "session.speechmesh.temperature")
        config = replace(config, temperature=temperature)
    if "seed" in extra:
        seed = extra["seed"]
        if seed is None:
            seed = 0
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise EventError("invalid_value", "must be an integer >= 0", "session.speechmesh.seed")
        config = replace(config, seed=seed)
    if config.voice.strip() and config.preset_voice.strip():
        raise EventError(
            "invalid_value",
            "set either audio.output.voice or speechmesh.preset_voice, not both",
            "session.speechmesh.preset_voice",
        )
    return config


def _object(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventError("invalid_type", "must be an object", field)
    return value


def _string(value, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventError("invalid_type", "must be a string", field)
    return value.strip()


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EventError("invalid_type", "must be a number", field)
    return float(value)


def _format(config: SessionConfig, value, field: str) -> SessionConfig:
    if not isinstance(value, dict) or value.get("type") not in _FORMATS:
        known = ", ".join(_FORMATS)
        raise EventError("invalid_value", f"the audio format's type must be one of {known}", field)
    kind = value["type"]
    if _FORMATS[kind] is not None:
        rate = value.get("rate", G711_RATE)
        if rate != G711_RATE:
            raise EventError(
                "invalid_value", f"{kind} is G.711 at 8000 Hz, not {rate!r}", field + ".rate"
            )
        return replace(config, format_type=kind, rate=G711_RATE)
    rate = value.get("rate", DEFAULT_RATE)
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise EventError("invalid_type", "must be an integer (Hz)", field + ".rate")
    return replace(config, format_type=kind, rate=rate)


# -- G.711 -----------------------------------------------------------------------------------

_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_table() -> np.ndarray:
    """16-bit sample (as uint16 index) -> mu-law byte, as the ITU reference (Sun g711.c
    linear2ulaw) encodes it."""
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code) ^ mask
    return np.roll(code.astype(np.uint8), -32768)


def _alaw_table() -> np.ndarray:
    """16-bit sample (as uint16 index) -> A-law byte (Sun g711.c linear2alaw)."""
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code) ^ mask
    return np.roll(code.astype(np.uint8), -32768)


_G711: dict[str, np.ndarray] = {}


def g711_encode(pcm16: bytes, law: str) -> bytes:
    """16-bit little-endian PCM as G.711 bytes ("mulaw" or "alaw"), one byte a sample."""
    table = _G711.get(law)
    if table is None:
        table = _G711[law] = _ulaw_table() if law == "mulaw" else _alaw_table()
    samples = np.frombuffer(pcm16, dtype="<i2").view(np.uint16)
    return table[samples].tobytes()


# -- one connection ----------------------------------------------------------------------------

#: An item's end in its output queue: its speech is all out.
_DONE = object()
#: An item dropped by clear or cancel.
_CANCELLED = object()


class _Item:
    """The text between two commits, spoken by one SpeechStream."""

    def __init__(self, stream: SpeechStream, law: str | None, previous: str | None):
        self.item_id = "item_" + uuid.uuid4().hex[:20]
        self.response_id = "resp_" + uuid.uuid4().hex[:20]
        self.previous_item_id = previous
        self.stream = stream
        #: The G.711 law its PCM is sent in; None: PCM16.
        self.law = law
        self.texts: asyncio.Queue = asyncio.Queue()
        self.output: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.characters = 0
        self.finished = False

    @property
    def accepting(self) -> bool:
        """Whether text sent to it is still spoken (its stream has not ended)."""
        return not self.finished and self.task is not None and not self.task.done()

    def cancel(self) -> None:
        """Drops what is not sent yet; the sender reports the item cancelled."""
        if self.finished:
            return
        self.finished = True
        if self.task is not None:
            self.task.cancel()
        while not self.output.empty():
            self.output.get_nowait()
        self.output.put_nowait(_CANCELLED)


class RealtimeSpeech:
    """One `/v1/realtime/speech` connection."""

    def __init__(
        self, speaker: Speaker, slots: StreamSlots, ws: ServerConnection, session: Session
    ):
        self.speaker = speaker
        self.slots = slots
        self.ws = ws
        self.caller = session.caller
        self.session_id = "sess_" + uuid.uuid4().hex[:20]
        self.config = SessionConfig()
        self.asked: SynthesisRequest | None = None
        #: The model the session's settings speak with.
        self._model = ""
        self._hold: contextlib.AbstractContextManager | None = None
        self._open: _Item | None = None
        self._items: list[_Item] = []
        self._order: asyncio.Queue = asyncio.Queue()
        self._sender: asyncio.Task | None = None
        self._last_item: str | None = None
        #: Milliseconds of audio sent in this session.
        self._sent_ms = 0.0
        self._closing = False

    async def run(self) -> None:
        try:
            self.asked = await self._asked(self.config)
        except EventError as error:  # the default model or voice cannot serve
            await self._end(error.message, 1011)
            return
        await self._send("session.created", session=self._session_json())
        try:
            async for message in self.ws:
                try:
                    await self._on_message(message)
                except EventError as error:
                    await self._error(error)
                if self._closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Cancels every item and the sender, and frees the stream slot."""
        for item in self._items:
            item.cancel()
        tasks = [item.task for item in self._items if item.task is not None]
        if self._sender is not None:
            tasks.append(self._sender)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._items.clear()
        if self._hold is not None:
            hold, self._hold = self._hold, None
            hold.__exit__(None, None, None)

    # -- events out -------------------------------------------------------------------------

    async def _send(self, kind: str, **fields) -> None:
        event = {"type": kind, "event_id": "event_" + uuid.uuid4().hex[:20], **fields}
        await self.ws.send(json.dumps(event, ensure_ascii=False))

    async def _error(self, error: EventError, event_id: str | None = None) -> None:
        await self._send(
            "error",
            error={
                "type": error.kind,
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "event_id": event_id,
            },
        )

    async def _end(self, message: str, code: int) -> None:
        """Ends the session: an error event, then the close code."""
        self._closing = True
        try:
            await self._error(EventError("session_failed", message, kind="server_error"))
            await self.ws.close(code, message[:120])
        except ConnectionClosed:
            pass

    def _session_json(self) -> dict[str, Any]:
        config, asked = self.config, self.asked
        model = self.speaker.models.get(self._model)
        rate = config.rate or model.engine.sample_rate
        output_format: dict[str, Any] = {"type": config.format_type}
        if config.format_type == "audio/pcm":
            output_format["rate"] = rate
        return {
            "type": "speech",
            "id": self.session_id,
            "object": "realtime.speech_session",
            "model": model.name,
            "audio": {
                "output": {"format": output_format, "voice": config.voice, "speed": config.speed}
            },
            "speechmesh": {
                "preset_voice": config.preset_voice,
                "language": config.language,
                "temperature": config.temperature,
                "seed": asked.style.seed if asked is not None else config.seed,
            },
        }

    # -- client events ----------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            raise EventError("invalid_json", "send events as JSON text messages, not binary")
        try:
            event = json.loads(message)
        except ValueError as error:
            raise EventError("invalid_json", f"the message is not JSON: {error}") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise EventError("invalid_event", "an event is a JSON object with a string 'type'")
        kind = event["type"]
        event_id = event.get("event_id")
        try:
            handler = _HANDLERS.get(kind)
            if handler is None:
                raise EventError(
                    "unknown_event",
                    f"unknown event type {kind!r}; this server takes {', '.join(_HANDLERS)}",
                    "type",
                )
            await handler(self, event)
        except EventError as error:
            await self._error(error, event_id if isinstance(event_id, str) else None)

    async def _update(self, event: dict) -> None:
        config = parse_session(event, self.config)
        if config != self.config:
            asked = await self._asked(config)
            if self._open is not None:
                # Spoken as it was asked; the next text takes the new settings.
                await self._commit_open()
            self.config, self.asked = config, asked
        await self._send("session.updated", session=self._session_json())

    async def _asked(self, config: SessionConfig) -> SynthesisRequest:
        """The session as StreamingSynthesize's domain takes it: a SynthesisConfig mapped by
        the servicer's own function, its voice and model checked (by opening a stream that is
        never fed)."""
        model = openai_names.resolve_model(config.model, openai_names.ALIASES["tts"])
        try:
            voice = await self._voice(model, config.voice) if config.voice else None
            law = _FORMATS[config.format_type]
            synthesis = tts_pb2.SynthesisConfig(
                model=model,
                language_code=config.language,
                output_audio_config=audio_pb2.OutputAudioConfig(
                    encoding=audio_pb2.OUTPUT_ENCODING_PCM,
                    sample_rate_hertz=G711_RATE if law else config.rate,
                ),
                speed=config.speed,
                seed=config.seed,
            )
            if voice is not None and voice.voice:
                synthesis.voice = voice.voice
            elif voice is not None and voice.preset:
                synthesis.preset_voice = voice.preset
            elif config.preset_voice:
                synthesis.preset_voice = config.preset_voice
            if config.temperature is not None:
                synthesis.temperature = config.temperature
            asked = synthesis_request(synthesis, "")
            self._model = (await self.speaker.open_stream(asked, self.caller)).model
        except EventError:
            raise
        except Exception as error:
            api = as_api_error(error)
            if api is None:
                raise
            raise event_error(api) from None
        return asked

    async def _voice(self, model: str, voice: str) -> VoiceRequest:
        """What `voice` means, as on /v1/audio/speech (speechmesh.tts.openai.voice_request),
        except that a preset of another model than the default is that model's, as a
        SynthesisConfig's preset_voice is."""
        try:
            return await voice_request(self.speaker.resolver, model, voice, self.caller)
        except ApiError:
            served = self.speaker.models.models.values()
            if model or not any(m.engine is not None and has_preset(m, voice) for m in served):
                raise
            return VoiceRequest(preset=voice)

    async def _append(self, event: dict) -> None:
        text = event.get("text")
        if not isinstance(text, str):
            raise EventError("missing_required_parameter", "text must be a string", "text")
        if not text:
            raise EventError("invalid_value", "text is empty; send 1 or more characters", "text")
        limit = self.speaker.settings.max_text_characters
        if len(text) > limit:
            raise EventError(
                "invalid_value",
                f"text is {len(text)} characters; at most {limit} per piece",
                "text",
            )
        item = self._open
        if item is None or not item.accepting:
            item = await self._start_item()
            if item is None:
                return
        item.characters += len(text)
        item.texts.put_nowait(text)

    async def _commit(self, event: dict) -> None:
        item = self._open
        if item is None or not item.accepting or not item.characters:
            raise EventError(
                "input_text_buffer_commit_empty", "the input text buffer holds no text"
            )
        await self._commit_open()

    async def _commit_open(self) -> None:
        """Ends the open item's text: what it holds is spoken now."""
        item, self._open = self._open, None
        if item is None or not item.accepting:
            return
        item.texts.put_nowait(None)
        await self._send(
            "input_text_buffer.committed",
            item_id=item.item_id,
            previous_item_id=item.previous_item_id,
        )

    async def _clear(self, event: dict) -> None:
        item, self._open = self._open, None
        if item is not None:
            item.cancel()
        await self._send("input_text_buffer.cleared")

    async def _cancel(self, event: dict) -> None:
        active = [item for item in self._items if not item.finished]
        if not active:
            raise EventError(
                "response_cancel_not_active", "there is no speech in progress to cancel"
            )
        self._open = None
        for item in active:
            item.cancel()

    # -- speaking ---------------------------------------------------------------------------

    async def _start_item(self) -> _Item | None:
        """A new item, spoken with the session's settings; None (the session closing, 1013)
        when the service holds as many streams as it takes."""
        if self._hold is None:
            hold = self.slots.hold()
            try:
                hold.__enter__()
            except ApiError as error:
                await self._error(
                    EventError("rate_limit_exceeded", error.message, kind="server_error")
                )
                self._closing = True
                await self.ws.close(1013, "too many open streams; try again later")
                return None
            self._hold = hold
        try:
            stream = await self.speaker.open_stream(self.asked, self.caller)
        except ApiError as error:  # e.g. its stored voice deleted since the update
            raise event_error(error, "session") from None
        item = _Item(stream, _FORMATS[self.config.format_type], self._last_item)
        self._last_item = item.item_id
        self._items.append(item)
        item.task = asyncio.create_task(self._produce(item))
        self._open = item
        self._order.put_nowait(item)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_items())
        return item

    async def _produce(self, item: _Item) -> None:
        """Runs the item's stream: its chunks, then _DONE, or the error that ended it."""
        try:
            async for chunk in item.stream.chunks(_drain(item.texts)):
                item.output.put_nowait(chunk)
            item.output.put_nowait(_DONE)
        except Exception as error:
            item.output.put_nowait(error)

    async def _send_items(self) -> None:
        """Sends each item's speech in order."""
        try:
            while True:
                item = await self._order.get()
                await self._send_item(item)
                self._items.remove(item)
        except ConnectionClosed:
            pass
        except Exception as error:
            log.exception("realtime.failed", error=str(error))
            await self._end("the speech stream failed", 1011)

    async def _send_item(self, item: _Item) -> None:
        base, sent_ms = self._sent_ms, 0.0
        stream = item.stream
        while True:
            out = await item.output.get()
            if isinstance(out, AudioChunk):
                ms = await self._delta(item, out, base)
                sent_ms += ms
                continue
            item.finished = True
            self._sent_ms = base + sent_ms
            if out is _DONE:
                status = "completed"
            elif out is _CANCELLED:
                status = "cancelled"
            else:
                api = as_api_error(out)
                if api is None:
                    raise out
                status = "failed"
                await self._error(event_error(api, "text"))
            await self._send(
                "response.output_audio.done",
                response_id=item.response_id,
                item_id=item.item_id,
                output_index=0,
                content_index=0,
                speechmesh={
                    "status": status,
                    "sentence_count": stream.sentences,
                    "character_count": item.characters,
                    "duration_ms": round(sent_ms),
                    "sample_rate": stream.sample_rate,
                    "model": stream.model,
                    "seed": stream.seed,
                },
            )
            return

    async def _delta(self, item: _Item, chunk: AudioChunk, base: float) -> float:
        """Sends a chunk; the milliseconds of audio it carried."""
        audio, rate = chunk.audio, chunk.sample_rate
        samples = len(audio) // 2
        if item.law is not None:
            audio = g711_encode(audio, item.law)
        if not audio:
            return 0.0
        ms = samples / rate * 1000
        details: dict[str, Any] = {
            "sentence_index": chunk.sentence_index,
            "offset_ms": round(base + chunk.offset * 1000),
            "duration_ms": round(ms),
            "sentence_end": chunk.sentence_end,
        }
        if chunk.text:
            details["text"] = chunk.text
        await self._send(
            "response.output_audio.delta",
            response_id=item.response_id,
            item_id=item.item_id,
            output_index=0,
            content_index=0,
            delta=base64.b64encode(audio).decode("ascii"),
            speechmesh=details,
        )
        return ms


_HANDLERS = {
    "session.update": RealtimeSpeech._update,
    "input_text_buffer.append": RealtimeSpeech._append,
    "input_text_buffer.commit": RealtimeSpeech._commit,
    "input_text_buffer.clear": RealtimeSpeech._clear,
    "response.cancel": RealtimeSpeech._cancel,
}


async def _drain(queue: asyncio.Queue) -> AsyncIterator[object]:
    """The queue's items until None."""
    while (item := await queue.get()) is not None:
        yield item


def route(speaker: Speaker, slots: StreamSlots):
    """The `/v1/realtime/speech` handler for the service's WebSocket port."""

    async def handle(ws: ServerConnection, session: Session) -> None:
        await RealtimeSpeech(speaker, slots, ws, session).run()

    return {PATH: handle}
