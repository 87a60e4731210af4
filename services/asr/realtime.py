"""Realtime transcription over WebSocket: OpenAI's Realtime transcription protocol.

A browser or voice app opens `/v1/realtime` (through the gateway, or on the ASR service's
WebSocket port), configures a transcription session, and streams base64 PCM16 audio; it gets
speech started/stopped events, transcript deltas while the speaker talks, and the completed
transcript of each turn. Event names and fields are OpenAI's, in both shapes its clients send:

- GA: `session.update` with `session.type = "transcription"` and `session.audio.input`
  (`format` {type audio/pcm|audio/pcmu|audio/pcma, rate}, `transcription` {model, language,
  prompt}, `turn_detection`, `noise_reduction`), answered by `session.updated`;
- beta: `transcription_session.update` with `input_audio_format` ("pcm16", "g711_ulaw",
  "g711_alaw"), `input_audio_transcription`, `turn_detection`, `input_audio_noise_reduction`,
  answered by `transcription_session.updated`. Connecting with `?intent=transcription`
  configures a default session at once (OpenAI's beta URL), as the first update would.

The session is StreamingRecognize's own pipeline: the settings are built by the same function
from a StreamingRecognitionConfig (speechmesh.asr.mapping.stream_settings), and a
StreamingSession (speechmesh.asr.streaming) with interim results and voice activity events runs
it, in this process, sharing the service's batches and its limit on open streams.

Mapping: a VAD begin/end is `input_audio_buffer.speech_started`/`speech_stopped`; the words the
interim hypotheses agree on (the stable prefix, which only grows) go out as `...delta` events;
a final result is `input_audio_buffer.committed`, the rest of its text as a last delta when it
extends what was sent, and `...completed` with the full transcript. What speechmesh has beyond
OpenAI's fields is in an extra `speechmesh` object: the whole interim hypothesis and its stable
prefix on deltas; language, its probability, the turn's times and word times on completed.

`input_audio_buffer.commit` ends the turn now (a forced endpoint); `clear` drops the audio of
the turn in progress. `turn_detection: null` means turns end on commit (and pauses of 5 s).
Noise reduction is accepted and not applied. A bad event gets an `error` event and the session
goes on; a session that cannot (the service's stream limit, a failure) ends with an error event
and close code 1013 or 1011.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from speechmesh.asr.mapping import stream_settings
from speechmesh.asr.models import AsrModels
from speechmesh.asr.streaming import SpeechEvent, StreamingSession, UtteranceResult
from speechmesh.asr.v1 import asr_pb2
from speechmesh.audio.v1 import audio_pb2
from speechmesh.dsp.endpointing import ForceEndpoint
from speechmesh.runtime import openai
from speechmesh.runtime.errors import ApiError
from speechmesh.runtime.streams import StreamSlots
from speechmesh.runtime.websocket import Session

log = structlog.get_logger("speechmesh.asr.realtime")

PATH = "/v1/realtime"
#: Input formats: (GA type or beta name) -> (AudioEncoding, allowed rates).
_FORMATS = {
    "audio/pcm": (audio_pb2.AUDIO_ENCODING_LINEAR16, (24000, 16000)),
    "pcm16": (audio_pb2.AUDIO_ENCODING_LINEAR16, (24000,)),
    "audio/pcmu": (audio_pb2.AUDIO_ENCODING_MULAW, (8000,)),
    "g711_ulaw": (audio_pb2.AUDIO_ENCODING_MULAW, (8000,)),
    "audio/pcma": (audio_pb2.AUDIO_ENCODING_ALAW, (8000,)),
    "g711_alaw": (audio_pb2.AUDIO_ENCODING_ALAW, (8000,)),
}
_BYTES_PER_SAMPLE = {audio_pb2.AUDIO_ENCODING_LINEAR16: 2}
#: The same formats' names in the other shape, for the session a client is shown.
_BETA_NAMES = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
_GA_TYPES = {beta: ga for ga, beta in _BETA_NAMES.items()}
#: Longest pause of a session without turn detection before its turn ends anyway, seconds.
MANUAL_TURN_SILENCE = 5.0
#: A StreamingRecognitionConfig field (as stream_settings names it) -> the session field.
_FIELDS = {
    "streaming_config.config.model": "session.audio.input.transcription.model",
    "streaming_config.config.language_code": "session.audio.input.transcription.language",
    "streaming_config.config.prompt": "session.audio.input.transcription.prompt",
    "streaming_config.vad_threshold": "session.audio.input.turn_detection.threshold",
    "streaming_config.endpoint_silence": "session.audio.input.turn_detection.silence_duration_ms",
}


class EventError(Exception):
    """A client event that cannot be applied: answered with an `error` event."""

    def __init__(self, code: str, message: str, param: str | None = None, kind: str = ""):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param
        self.kind = kind or "invalid_request_error"


@dataclass(frozen=True)
class SessionConfig:
    """A transcription session's settings, in OpenAI's terms."""

    beta: bool = False
    format_type: str = "audio/pcm"
    rate: int = 24000
    model: str = ""
    language: str = ""
    prompt: str = ""
    #: None: no turn detection (turns end on commit).
    turn_detection: dict | None = None
    noise_reduction: dict | None = None

    def to_openai(self, session_id: str, models: AsrModels) -> dict[str, Any]:
        model = self.model or models.default.name
        transcription = {"model": model, "language": self.language, "prompt": self.prompt}
        if self.beta:
            return {
                "id": session_id,
                "object": "realtime.transcription_session",
                "input_audio_format": _BETA_NAMES.get(self.format_type, self.format_type),
                "input_audio_transcription": transcription,
                "turn_detection": self.turn_detection,
                "input_audio_noise_reduction": self.noise_reduction,
                "include": [],
            }
        format_type = _GA_TYPES.get(self.format_type, self.format_type)
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": {"type": format_type, "rate": self.rate}
                    if format_type == "audio/pcm"
                    else {"type": format_type},
                    "transcription": transcription,
                    "turn_detection": self.turn_detection,
                    "noise_reduction": self.noise_reduction,
                }
            },
            "include": [],
        }


DEFAULT_TURN_DETECTION = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
}


def parse_session(event: dict, previous: SessionConfig | None) -> SessionConfig:
    """The session an update event asks for (fields left out keep their values); EventError
    naming the field otherwise."""
    beta = event["type"] == "transcription_session.update"
    session = event.get("session")
    if not isinstance(session, dict):
        raise EventError("missing_required_parameter", "session must be an object", "session")
    config = previous or SessionConfig(beta=beta, turn_detection=dict(DEFAULT_TURN_DETECTION))
    config = replace(config, beta=beta)
    if beta:
        prefix = "session."
        audio_format = session.get("input_audio_format")
        transcription = session.get("input_audio_transcription")
        detection_key, noise_key = "turn_detection", "input_audio_noise_reduction"
        fields = session
        if audio_format is not None:
            config = _format(config, {"type": audio_format}, prefix + "input_audio_format")
    else:
        kind = session.get("type", "transcription")
        if kind != "transcription":
            raise EventError(
                "unsupported_session_type",
                f"this server runs transcription sessions only (session.type"
                f" 'transcription'), not {kind!r}",
                "session.type",
            )
        audio = session.get("audio") or {}
        fields = audio.get("input") or {} if isinstance(audio, dict) else {}
        prefix = "session.audio.input."
        if "format" in fields:
            config = _format(config, fields["format"], prefix + "format")
        transcription = fields.get("transcription")
        detection_key, noise_key = "turn_detection", "noise_reduction"
    if transcription is not None:
        if not isinstance(transcription, dict):
            raise EventError("invalid_type", "must be an object", prefix + "transcription")
        for key in ("model", "language", "prompt"):
            value = transcription.get(key)
            if value is not None and not isinstance(value, str):
                raise EventError("invalid_type", "must be a string", f"{prefix}transcription.{key}")
        config = replace(
            config,
            model=transcription.get("model", config.model) or "",
            language=transcription.get("language", config.language) or "",
            prompt=transcription.get("prompt", config.prompt) or "",
        )
    if detection_key in fields:
        config = replace(config, turn_detection=_turn_detection(fields[detection_key], prefix))
    if noise_key in fields:
        noise = fields[noise_key]
        if noise is not None and not isinstance(noise, dict):
            raise EventError("invalid_type", "must be an object or null", prefix + noise_key)
        config = replace(config, noise_reduction=noise)
    return config


def _format(config: SessionConfig, value, field: str) -> SessionConfig:
    if not isinstance(value, dict) or value.get("type") not in _FORMATS:
        known = ", ".join(_FORMATS)
        raise EventError("invalid_value", f"the audio format must be one of {known}", field)
    kind = value["type"]
    _, rates = _FORMATS[kind]
    rate = value.get("rate", rates[0])
    if rate not in rates:
        raise EventError(
            "invalid_value",
            f"{kind} is taken at {' or '.join(str(r) for r in rates)} Hz, not {rate!r}",
            field + ".rate",
        )
    return replace(config, format_type=kind, rate=rate)


def _turn_detection(value, prefix: str) -> dict | None:
    field = prefix + "turn_detection"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EventError("invalid_type", "must be an object or null", field)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise EventError(
            "invalid_value", "type must be server_vad or semantic_vad", field + ".type"
        )
    detection = {**DEFAULT_TURN_DETECTION, **value, "type": kind}
    threshold = detection["threshold"]
    if not isinstance(threshold, int | float) or not 0.05 <= threshold <= 0.95:
        raise EventError("invalid_value", "threshold must be 0.05 to 0.95", field + ".threshold")
    silence = detection["silence_duration_ms"]
    if not isinstance(silence, int) or not 100 <= silence <= 5000:
        raise EventError(
            "invalid_value",
            "silence_duration_ms must be 100 to 5000",
            field + ".silence_duration_ms",
        )
    return detection


class RealtimeTranscription:
    """One WebSocket connection: events in, events out, one StreamingSession per run of audio."""

    def __init__(
        self, models: AsrModels, slots: StreamSlots, ws: ServerConnection, session: Session
    ):
        self.models = models
        self.slots = slots
        self.ws = ws
        self.session = session
        self.session_id = "sess_" + uuid.uuid4().hex[:20]
        self.config: SessionConfig | None = None
        if session.query.get("intent") == "transcription":
            self.config = SessionConfig(beta=True, turn_detection=dict(DEFAULT_TURN_DETECTION))
        self._audio: asyncio.Queue | None = None
        self._stream: asyncio.Task | None = None
        self._base_ms = 0  # audio of earlier streams in this session, ms
        self._stream_bytes = 0  # audio bytes of the current stream
        self._uncommitted = 0  # bytes since the last turn ended
        self._item = _item_id()
        self._previous_item: str | None = None
        self._sent = ""  # text of the current item sent in deltas

    # -- the connection ---------------------------------------------------------------------

    async def run(self) -> None:
        await self._send(
            "transcription_session.created" if self._beta() else "session.created",
            session=self._session_json(),
        )
        try:
            async for message in self.ws:
                try:
                    await self._on_message(message)
                except EventError as error:
                    await self._error(error)
        except ConnectionClosed:
            pass
        finally:
            await self._stop_stream(drain=False)

    def _beta(self) -> bool:
        return self.config.beta if self.config is not None else False

    def _session_json(self) -> dict[str, Any]:
        config = self.config or SessionConfig(turn_detection=dict(DEFAULT_TURN_DETECTION))
        return config.to_openai(self.session_id, self.models)

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
            await self._error(error, event.get("event_id"))

    async def _update(self, event: dict) -> None:
        config = parse_session(event, self.config)
        model = await self._model(config)
        self._check_settings(config, model)
        if config != self.config and self._stream is not None:
            # Ended (and its audio measured) at its own settings; the next audio starts a
            # stream with the new ones.
            await self._stop_stream(drain=True)
        self.config = config
        kind = "transcription_session.updated" if config.beta else "session.updated"
        await self._send(kind, session=self._session_json())

    async def _model(self, config: SessionConfig):
        """The session's model, ready (an unloaded one is loaded first: the event waits)."""
        name = openai.resolve_model(config.model, openai.ALIASES["asr"])
        try:
            return await self.models.acquire(name)
        except ApiError as error:
            code = "model_not_found" if error.code == grpc.StatusCode.NOT_FOUND else "unavailable"
            raise EventError(
                code, error.message, "session.audio.input.transcription.model"
            ) from None

    def _recognition_config(
        self, config: SessionConfig, model
    ) -> asr_pb2.StreamingRecognitionConfig:
        encoding, _ = _FORMATS[config.format_type]
        detection = config.turn_detection
        silence = (
            detection["silence_duration_ms"] / 1000
            if detection is not None
            else MANUAL_TURN_SILENCE
        )
        cfg = asr_pb2.StreamingRecognitionConfig(
            config=asr_pb2.RecognitionConfig(
                model=model.name,
                language_code=config.language,
                prompt=config.prompt,
                audio_format=audio_pb2.AudioFormat(
                    encoding=encoding, sample_rate_hertz=config.rate
                ),
                enable_word_time_offsets=True,
            ),
            interim_results=True,
            enable_voice_activity_events=True,
            vad_threshold=detection["threshold"] if detection is not None else 0.5,
        )
        cfg.endpoint_silence.FromMilliseconds(round(silence * 1000))
        if detection is None:
            cfg.sentence_pause.FromSeconds(int(MANUAL_TURN_SILENCE))
        return cfg

    def _check_settings(self, config: SessionConfig, model):
        try:
            return stream_settings(model, self._recognition_config(config, model))
        except ApiError as error:
            field = _field_of(error)
            raise EventError("invalid_value", error.message, _FIELDS.get(field, field)) from None

    async def _append(self, event: dict) -> None:
        if self.config is None:
            raise EventError(
                "session_not_configured",
                "send session.update with session.type 'transcription' (or"
                " transcription_session.update) before audio, or connect with"
                " ?intent=transcription",
            )
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise EventError("missing_required_parameter", "audio must be base64 text", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise EventError("invalid_value", "audio is not valid base64", "audio") from None
        encoding, _ = _FORMATS[self.config.format_type]
        width = _BYTES_PER_SAMPLE.get(encoding, 1)
        if len(data) % width:
            raise EventError(
                "invalid_value",
                f"audio holds {len(data)} bytes: 16-bit PCM comes in whole samples",
                "audio",
            )
        if not data:
            return
        if self._stream is None and not await self._start_stream():
            return
        self._stream_bytes += len(data)
        self._uncommitted += len(data)
        self._audio.put_nowait(data)

    async def _commit(self, event: dict) -> None:
        if self._stream is None or not self._uncommitted:
            raise EventError(
                "input_audio_buffer_commit_empty", "the input audio buffer holds no audio"
            )
        self._uncommitted = 0
        self._audio.put_nowait(ForceEndpoint)

    async def _clear(self, event: dict) -> None:
        await self._stop_stream(drain=False)
        self._item, self._sent = _item_id(), ""  # the dropped turn's item gets no more events
        await self._send("input_audio_buffer.cleared")

    # -- the stream -------------------------------------------------------------------------

    async def _start_stream(self) -> bool:
        """Starts a stream for the session's audio; False (the connection closing, 1013) when
        the service holds as many streams as it takes."""
        config = self.config
        model = await self._model(config)
        settings = self._check_settings(config, model)
        hold = self.slots.hold()
        try:
            hold.__enter__()
        except ApiError as error:
            await self._error(EventError("rate_limit_exceeded", error.message, kind="server_error"))
            await self.ws.close(1013, "too many open streams; try again later")
            return False
        # Holds the model for the stream (an unload waits for it); ready, so this never waits.
        lease = self.models.use(model.name)
        await lease.__aenter__()
        self._audio = asyncio.Queue()
        self._stream_bytes = 0
        session = StreamingSession(model.recognizer, self.models.vad, settings)
        self._stream = asyncio.create_task(self._pump(session, self._audio, hold, lease))
        return True

    async def _stop_stream(self, *, drain: bool) -> None:
        """Ends the current stream: `drain` transcribes what it holds first (its results are
        still sent), else it is dropped."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if drain:
            self._audio.put_nowait(None)
            await asyncio.gather(stream, return_exceptions=True)
        else:
            stream.cancel()
            await asyncio.gather(stream, return_exceptions=True)
        self._base_ms += self._ms(self._stream_bytes)
        self._uncommitted = 0

    def _ms(self, size: int) -> int:
        encoding, _ = _FORMATS[self.config.format_type]
        return round(size / _BYTES_PER_SAMPLE.get(encoding, 1) / self.config.rate * 1000)

    async def _pump(self, session: StreamingSession, audio: asyncio.Queue, hold, lease) -> None:
        base = self._base_ms
        try:
            async for result in session.run(_drain(audio, session)):
                if isinstance(result, SpeechEvent):
                    await self._on_speech(result, base)
                elif isinstance(result, UtteranceResult):
                    await self._on_result(result, base)
                elif result is _SILENT_COMMIT:
                    await self._on_silent_commit()
        except ConnectionClosed:
            pass
        except ApiError as error:
            await self._end(error.message, 1011)
        except Exception as error:
            log.exception("realtime.failed", error=str(error))
            await self._end("the transcription stream failed", 1011)
        finally:
            hold.__exit__(None, None, None)
            await lease.__aexit__(None, None, None)

    async def _end(self, message: str, code: int) -> None:
        try:
            await self._error(EventError("stream_failed", message, kind="server_error"))
            await self.ws.close(code, message[:120])
        except ConnectionClosed:
            pass

    async def _on_speech(self, event: SpeechEvent, base: int) -> None:
        at = base + round(event.offset * 1000)
        if event.kind == "begin":
            await self._send(
                "input_audio_buffer.speech_started", audio_start_ms=at, item_id=self._item
            )
        elif event.kind == "end":
            await self._send(
                "input_audio_buffer.speech_stopped", audio_end_ms=at, item_id=self._item
            )

    async def _on_result(self, result: UtteranceResult, base: int) -> None:
        item = self._item
        if not result.is_final:
            delta = _continuation(self._sent, result.stable_transcript)
            if delta:
                self._sent += delta
                await self._delta(item, delta, result)
            return
        self._uncommitted = 0
        await self._send(
            "input_audio_buffer.committed", item_id=item, previous_item_id=self._previous_item
        )
        text = result.transcript
        if delta := _continuation(self._sent, text):
            await self._delta(item, delta, result)
        await self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item,
            content_index=0,
            transcript=text,
            usage={"type": "duration", "seconds": round(result.end - result.start, 3)},
            speechmesh={
                "language": result.language,
                "language_probability": result.language_probability,
                "start_ms": base + round(result.start * 1000),
                "end_ms": base + round(result.end * 1000),
                "words": [
                    {
                        "word": word.text,
                        "start_ms": base + round(word.start * 1000),
                        "end_ms": base + round(word.end * 1000),
                        "confidence": word.probability,
                    }
                    for word in result.words
                ],
            },
        )
        self._previous_item, self._item, self._sent = item, _item_id(), ""

    async def _on_silent_commit(self) -> None:
        """A commit of audio without speech: committed, and completed with no text, as OpenAI
        answers a commit of silence."""
        item = self._item
        await self._send(
            "input_audio_buffer.committed", item_id=item, previous_item_id=self._previous_item
        )
        await self._send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item,
            content_index=0,
            transcript="",
            usage={"type": "duration", "seconds": 0.0},
        )
        self._previous_item, self._item, self._sent = item, _item_id(), ""

    async def _delta(self, item: str, delta: str, result: UtteranceResult) -> None:
        await self._send(
            "conversation.item.input_audio_transcription.delta",
            item_id=item,
            content_index=0,
            delta=delta,
            speechmesh={
                "transcript": result.transcript,
                "stable_transcript": result.stable_transcript,
            },
        )


_HANDLERS = {
    "session.update": RealtimeTranscription._update,
    "transcription_session.update": RealtimeTranscription._update,
    "input_audio_buffer.append": RealtimeTranscription._append,
    "input_audio_buffer.commit": RealtimeTranscription._commit,
    "input_audio_buffer.clear": RealtimeTranscription._clear,
}


#: A commit that found no turn open (the audio since the last turn held no speech).
_SILENT_COMMIT = object()


async def _drain(queue: asyncio.Queue, session: StreamingSession) -> AsyncIterator[object]:
    """The queue's items until None. A commit while no turn is open (every earlier chunk has
    been read by then) is put in the session's ordered output instead, after the results of
    earlier turns, so that it is answered like any commit."""
    while (item := await queue.get()) is not None:
        if item is ForceEndpoint and session.utterance is None:
            session.emit(_SILENT_COMMIT)
            continue
        yield item


def _words(text: str) -> list[str]:
    """Words compared without case or punctuation ("not." is "not")."""
    return ["".join(c for c in word.lower() if c.isalnum()) for word in text.split()]


def _continuation(sent: str, text: str) -> str | None:
    """What `text` adds after the words already `sent` as deltas: its own words past them, with
    a leading space ("" when it adds none); None when it does not begin with them (the final
    decode chose other words: the deltas stop, and completed carries the text). Words compare
    without case or punctuation, so a full stop an interim put after "not" does not stop the
    deltas when the final goes on "not an"."""
    done, words = _words(sent), text.split()
    if _words(" ".join(words[: len(done)])) != done:
        return None
    rest = " ".join(words[len(done) :])
    return (" " + rest if done else rest) if rest else ""


def _item_id() -> str:
    return "item_" + uuid.uuid4().hex[:20]


def _field_of(error: ApiError) -> str:
    """The field an INVALID_ARGUMENT names (its message starts with 'field: ')."""
    head, sep, _ = error.message.partition(": ")
    return head if sep else ""


def route(models: AsrModels, slots: StreamSlots):
    """The `/v1/realtime` handler for the service's WebSocket port."""

    async def handle(ws: ServerConnection, session: Session) -> None:
        await RealtimeTranscription(models, slots, ws, session).run()

    return {PATH: handle}
