"""The OpenAI-compatible face of the suite: requests in OpenAI's shapes, answers in its shapes.

Envoy cannot parse multipart/form-data, so the OpenAI routes take the HTTP body as it arrives
(google.api.HttpBody: `content_type` with its boundary, and the bytes) and answer with an
HttpBody whose body is exactly what OpenAI's API returns. Everything OpenAI-specific lives here,
so servicers only map: parse the request, call the domain, format the result.

- Model aliases: OpenAI model names the suite accepts for its default models.
- multipart/form-data parsing (RFC 7578): text fields, repeated fields (`name[]`), file parts.
- Transcription and translation requests (`/v1/audio/transcriptions`, `/v1/audio/translations`)
  and their response formats (json, verbose_json, text, srt, vtt).
- The model list (`/v1/models`).
- For `/v1/audio/speech` (the TTS service): the JSON body and OpenAI's audio formats.

Errors: every mistake raises ApiError INVALID_ARGUMENT whose BadRequest field violation names the
OpenAI parameter (`file`, `model`, `response_format`, ...). Through Envoy it becomes
google.rpc.Status JSON with the HTTP status of its code, like every other route, rather than
OpenAI's `{"error": {...}}`: OpenAI's clients raise by HTTP status (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx InternalServerError), and the
`openai` Python package takes the exception text from a top-level `message` as readily as from
`error.message`, so the one error shape of the gateway serves them too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Iterable, Sequence
from email.message import Message
from typing import Any, Protocol

from speechmesh.runtime import errors

#: OpenAI speech-recognition model names that mean the ASR service's default model.
ASR_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
#: OpenAI speech-synthesis model names that mean the TTS service's default model.
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: `owned_by` of every model in /v1/models.
OWNED_BY = "speechmesh"

#: Response formats of /v1/audio/transcriptions and /v1/audio/translations.
RESPONSE_FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
#: Values of `timestamp_granularities[]`.
GRANULARITIES = ("segment", "word")
#: Content types of the answers, as OpenAI sends them.
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

#: OpenAI `response_format` of /v1/audio/speech -> the suite's output encoding. OpenAI's "opus"
#: is Ogg Opus; its "pcm" is raw 16-bit little-endian samples at PCM_RATE. "aac" has no
#: encoder here.
SPEECH_FORMATS = {"mp3": "mp3", "opus": "ogg_opus", "wav": "wav", "flac": "flac", "pcm": "pcm"}
#: Sample rate of OpenAI's "pcm" speech output, in hertz.
PCM_RATE = 24000

#: Limits of multipart uploads (the file part is bounded by the request size only).
MAX_PARTS = 64
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024


def resolve_model(name: str, aliases: Sequence[str]) -> str:
    """The model a request names: "" (the service's default) for an alias or nothing, else the
    name as given (the service answers NOT_FOUND for one it does not serve)."""
    name = name.strip()
    return "" if not name or name in aliases else name


def resolve_asr_model(name: str) -> str:
    return resolve_model(name, ASR_ALIASES)


def resolve_tts_model(name: str) -> str:
    return resolve_model(name, TTS_ALIASES)


# -- multipart/form-data ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FilePart:
    """An uploaded file: a form part with a filename."""

    name: str
    filename: str
    content_type: str
    data: bytes


@dataclasses.dataclass
class Form:
    """The parts of a multipart/form-data body, in order, by field name."""

    fields: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    files: dict[str, list[FilePart]] = dataclasses.field(default_factory=dict)

    def text(self, name: str, default: str = "") -> str:
        """The one value of a text field; `default` when absent; INVALID_ARGUMENT when given
        twice or as a file."""
        if name in self.files:
            raise errors.invalid_argument(name, "must be a text field, not a file")
        values = self.fields.get(name, [])
        if len(values) > 1:
            raise errors.invalid_argument(name, f"is given {len(values)} times; give it once")
        return values[0] if values else default

    def texts(self, name: str) -> list[str]:
        """Every value of a repeated field (`timestamp_granularities[]`), in order."""
        if name in self.files:
            raise errors.invalid_argument(name, "must be a text field, not a file")
        return list(self.fields.get(name, []))

    def file(self, name: str) -> FilePart:
        """The one uploaded file of a field; INVALID_ARGUMENT when missing or repeated."""
        files = self.files.get(name, [])
        if not files:
            hint = (
                " (it came as a text field: send it as a file, e.g. curl -F file=@speech.wav)"
                if name in self.fields
                else " (e.g. curl -F file=@speech.wav)"
            )
            raise errors.invalid_argument(name, f"is required: upload the audio file{hint}")
        if len(files) > 1:
            raise errors.invalid_argument(name, f"is given {len(files)} times; upload one file")
        return files[0]


def _header_params(value: str, header: str) -> Message:
    message = Message()
    message[header] = value
    return message


def parse_multipart(
    content_type: str,
    body: bytes,
    *,
    max_parts: int = MAX_PARTS,
    max_field_bytes: int = MAX_FIELD_BYTES,
) -> Form:
    """Parses a multipart/form-data body (RFC 7578, CRLF line ends as RFC 2046 requires).

    Parts with a filename are files (any size); the others are UTF-8 text fields of at most
    `max_field_bytes`. INVALID_ARGUMENT naming `content_type` for a body that is not
    multipart/form-data, or the field for a bad part.
    """
    header = _header_params(content_type or "", "content-type")
    if header.get_content_type() != "multipart/form-data":
        raise errors.invalid_argument(
            "content_type",
            f"is {content_type or 'empty'!r}; send multipart/form-data"
            " (curl -F file=@speech.wav -F model=whisper-1)",
        )
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise errors.invalid_argument(
            "content_type", "multipart/form-data needs a boundary parameter of 1 to 70 characters"
        )
    delimiter = b"--" + boundary.encode("latin-1")
    # The first delimiter opens the body or follows a preamble's CRLF.
    if body.startswith(delimiter):
        position = len(delimiter)
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise errors.invalid_argument(
                "content_type", "the body holds no part delimited by the boundary it names"
            )
        position = found + 2 + len(delimiter)
    form = Form()
    parts = 0
    next_delimiter = b"\r\n" + delimiter
    while True:
        if body.startswith(b"--", position):
            return form  # the close delimiter; an epilogue after it is ignored
        # Transport padding (spaces, tabs), then the CRLF that ends the delimiter line.
        while position < len(body) and body[position] in b" \t":
            position += 1
        if not body.startswith(b"\r\n", position):
            raise errors.invalid_argument(
                "content_type", "malformed multipart body: a delimiter line does not end in CRLF"
            )
        position += 2
        end = body.find(next_delimiter, position)
        if end < 0:
            raise errors.invalid_argument(
                "content_type", "malformed multipart body: it ends before its close delimiter"
            )
        parts += 1
        if parts > max_parts:
            raise errors.invalid_argument("content_type", f"has over {max_parts} form parts")
        _add_part(form, body[position:end], max_field_bytes)
        position = end + len(next_delimiter)


def _add_part(form: Form, part: bytes, max_field_bytes: int) -> None:
    if part.startswith(b"\r\n"):
        raw_headers, data = b"", part[2:]
    else:
        split = part.find(b"\r\n\r\n")
        if split < 0 or split > MAX_HEADER_BYTES:
            raise errors.invalid_argument(
                "content_type", "malformed multipart body: a part's headers do not end"
            )
        raw_headers, data = part[:split], part[split + 4 :]
    headers: dict[str, str] = {}
    for line in raw_headers.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    disposition = _header_params(headers.get("content-disposition", ""), "content-disposition")
    name = disposition.get_param("name", header="content-disposition")
    if disposition.get_content_disposition() != "form-data" or not isinstance(name, str):
        raise errors.invalid_argument(
            "content_type",
            "every multipart part needs `Content-Disposition: form-data; name=...`",
        )
    filename = disposition.get_filename()
    if filename is not None:
        content_type = headers.get("content-type", "application/octet-stream")
        form.files.setdefault(name, []).append(FilePart(name, filename, content_type, data))
        return
    if len(data) > max_field_bytes:
        raise errors.invalid_argument(
            name, f"is {len(data)} bytes; a text field may hold at most {max_field_bytes}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_argument(name, "is not UTF-8 text") from None
    form.fields.setdefault(name, []).append(text)


def parse_json_body(content_type: str, body: bytes) -> dict[str, Any]:
    """A JSON object request body (/v1/audio/speech): INVALID_ARGUMENT naming `content_type`
    for another media type or a body that is not a JSON object."""
    media = _header_params(content_type or "", "content-type").get_content_type()
    if content_type and media != "application/json":
        raise errors.invalid_argument("content_type", f"is {content_type!r}; send application/json")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise errors.invalid_argument(
            "content_type", f"the body is not valid JSON: {error}"
        ) from None
    if not isinstance(value, dict):
        raise errors.invalid_argument("content_type", "the body must be a JSON object")
    return value


# -- transcription and translation requests --------------------------------------------------

#: Engine option (InvalidOptionError.option) -> the form field to name in the error.
OPTION_FIELDS = {
    "language": "language",
    "task": "model",
    "word_timestamps": "timestamp_granularities[]",
    "prompt": "prompt",
}


def option_error(option: str, message: str, model: str) -> errors.ApiError:
    """INVALID_ARGUMENT for an option the engine refused, naming the form field; a model
    that cannot translate gets advice in this API's terms."""
    if option == "task":
        message = (
            f"model {model} cannot translate speech to English (it is English-only);"
            " /v1/audio/transcriptions transcribes English speech, or serve a multilingual model"
        )
    return errors.invalid_argument(OPTION_FIELDS[option], message)


@dataclasses.dataclass(frozen=True)
class AudioRequest:
    """A transcription or translation request, validated."""

    file: FilePart
    #: The model to use: "" for the default (an alias or nothing), else a served model's name.
    model: str
    #: "transcribe" or "translate" (to English).
    task: str
    #: BCP-47 or ISO-639-1 code; "" to detect.
    language: str
    prompt: str
    temperature: float
    response_format: str
    granularities: tuple[str, ...]

    @property
    def word_timestamps(self) -> bool:
        """Word times are worked out only when the answer shows them."""
        return self.response_format == "verbose_json" and "word" in self.granularities


def audio_request(content_type: str, body: bytes, *, translate: bool) -> AudioRequest:
    """Validates a multipart /v1/audio/transcriptions (or translations) upload. Fields
    OpenAI added later and this service does not use (`include[]`, `chunking_strategy`, ...)
    are ignored; `stream=true` is INVALID_ARGUMENT."""
    form = parse_multipart(content_type, body)
    file = form.file("file")
    if not file.data:
        raise errors.invalid_argument("file", "is empty; upload the audio file's bytes")
    response_format = form.text("response_format", "json").strip() or "json"
    if response_format not in RESPONSE_FORMATS:
        raise errors.invalid_argument(
            "response_format",
            f"{response_format!r} is not offered here; use one of {', '.join(RESPONSE_FORMATS)}",
        )
    temperature_text = form.text("temperature", "0").strip() or "0"
    try:
        temperature = float(temperature_text)
    except ValueError:
        temperature = math.nan
    if not 0.0 <= temperature <= 1.0:
        raise errors.invalid_argument(
            "temperature", f"is {temperature_text!r}; use a number from 0 to 1"
        )
    if form.text("stream", "false").strip().lower() not in ("", "false", "0"):
        raise errors.invalid_argument(
            "stream",
            "streamed transcription is not offered on this route; stream audio to"
            " /v1/asr:streamingRecognize (server-sent events) or the StreamingRecognize RPC",
        )
    granularities: tuple[str, ...] = ()
    language = ""
    if not translate:
        language = form.text("language").strip()
        asked = form.texts("timestamp_granularities[]")
        granularities = tuple(dict.fromkeys(value.strip() for value in asked))
        for value in granularities:
            if value not in GRANULARITIES:
                raise errors.invalid_argument(
                    "timestamp_granularities[]",
                    f"{value!r} is not a granularity; use segment, word or both",
                )
    return AudioRequest(
        file=file,
        model=resolve_asr_model(form.text("model")),
        task="translate" if translate else "transcribe",
        language=language,
        prompt=form.text("prompt").strip(),
        temperature=temperature,
        response_format=response_format,
        granularities=granularities or ("segment",),
    )


# -- transcription and translation answers ---------------------------------------------------


class WordLike(Protocol):
    text: str
    start: float
    end: float


class SegmentLike(Protocol):
    text: str
    start: float
    end: float
    probability: float
    words: Sequence[WordLike]


class TranscriptLike(Protocol):
    segments: Sequence[SegmentLike]
    language: str
    duration: float

    @property
    def text(self) -> str: ...


def language_name(code: str) -> str:
    """OpenAI names languages in English words ("english"), as Whisper does; a code Whisper
    does not name stays as it is."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code.split("-", 1)[0].lower(), code)


def _seconds(value: float) -> float:
    return round(value, 3)


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


def _segment_json(index: int, segment: SegmentLike, temperature: float) -> dict[str, Any]:
    """A segment in OpenAI's verbose_json shape. The engine keeps no token ids or no-speech
    probability, so `tokens` is empty and `no_speech_prob` 0; `avg_logprob` is the log of
    the segment's mean token probability."""
    return {
        "id": index,
        "seek": round(segment.start * 100),
        "start": _seconds(segment.start),
        "end": _seconds(segment.end),
        "text": segment.text,
        "tokens": [],
        "temperature": temperature,
        "avg_logprob": round(math.log(max(segment.probability, 1e-10)), 4),
        "compression_ratio": _compression_ratio(segment.text),
        "no_speech_prob": 0.0,
    }


def _usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(duration)}


def transcription_body(result: TranscriptLike, request: AudioRequest) -> tuple[str, bytes]:
    """(content type, body) of the answer in the request's response format."""
    fmt = request.response_format
    if fmt == "text":
        return TEXT, (result.text + "\n").encode()
    if fmt == "srt":
        return TEXT, srt(result.segments).encode()
    if fmt == "vtt":
        return TEXT, vtt(result.segments).encode()
    if fmt == "json":
        return JSON, _json({"text": result.text, "usage": _usage(result.duration)})
    language = "english" if request.task == "translate" else language_name(result.language)
    body: dict[str, Any] = {
        "task": request.task,
        "language": language,
        "duration": _seconds(result.duration),
        "text": result.text,
    }
    if "segment" in request.granularities:
        body["segments"] = [
            _segment_json(i, s, request.temperature) for i, s in enumerate(result.segments)
        ]
    if request.word_timestamps:
        body["words"] = [
            {"word": w.text, "start": _seconds(w.start), "end": _seconds(w.end)}
            for s in result.segments
            for w in s.words
        ]
    body["usage"] = _usage(result.duration)
    return JSON, _json(body)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(text: str) -> str:
    # A blank line would end the cue early: one line per cue.
    return " ".join(text.split())


def srt(segments: Iterable[SegmentLike]) -> str:
    """SubRip subtitles: numbered cues `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after
    each."""
    cues = []
    for number, segment in enumerate(segments, 1):
        start, end = _timestamp(segment.start, ","), _timestamp(segment.end, ",")
        cues.append(f"{number}\n{start} --> {end}\n{_cue_text(segment.text)}\n\n")
    return "".join(cues)


def vtt(segments: Iterable[SegmentLike]) -> str:
    """WebVTT subtitles: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm`."""
    cues = ["WEBVTT\n\n"]
    for segment in segments:
        start, end = _timestamp(segment.start, "."), _timestamp(segment.end, ".")
        cues.append(f"{start} --> {end}\n{_cue_text(segment.text)}\n\n")
    return "".join(cues)


# -- /v1/models ------------------------------------------------------------------------------


def model_ids(served: Iterable[str]) -> list[str]:
    """Every id /v1/models lists: the models a service serves, then the OpenAI aliases."""
    return list(dict.fromkeys([*served, *ASR_ALIASES, *TTS_ALIASES]))


def model_json(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNED_BY}


def models_body(ids: Iterable[str], created: int) -> tuple[str, bytes]:
    """(content type, body) of OpenAI's model list."""
    data = [model_json(model_id, created) for model_id in ids]
    return JSON, _json({"object": "list", "data": data})


def model_body(model_id: str, ids: Sequence[str], created: int) -> tuple[str, bytes]:
    """(content type, body) of one model; NOT_FOUND for an id the list does not hold."""
    if model_id not in ids:
        raise errors.not_found(
            "model", model_id, f"model {model_id!r} is not served here; GET /v1/models lists them"
        )
    return JSON, _json(model_json(model_id, created))


# -- /v1/audio/speech (TTS) ------------------------------------------------------------------


def speech_format(value: str) -> str:
    """The suite's output encoding for OpenAI's speech `response_format` (default "mp3");
    INVALID_ARGUMENT naming `response_format` for one it cannot encode."""
    value = (value or "mp3").strip()
    if value not in SPEECH_FORMATS:
        raise errors.invalid_argument(
            "response_format",
            f"{value!r} is not offered here; use one of {', '.join(SPEECH_FORMATS)}",
        )
    return SPEECH_FORMATS[value]


#: OpenAI's built-in voice names: they mean the model's default voice here.
OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "onyx",
        "nova",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)
#: Speaking rate OpenAI accepts.
SPEECH_SPEEDS = (0.25, 4.0)


@dataclasses.dataclass(frozen=True)
class SpeechRequest:
    """A validated /v1/audio/speech request."""

    input: str
    #: "" for the default model (an alias or nothing), else a served model's name.
    model: str
    #: As sent: a stored voice ("jane" or "voices/jane"), a preset, or an OpenAI voice name.
    voice: str
    #: The suite's output encoding ("mp3", "ogg_opus", "wav", "flac", "pcm").
    encoding: str
    speed: float


def speech_request(content_type: str, body: bytes) -> SpeechRequest:
    """Validates a /v1/audio/speech JSON body (`model`, `input`, `voice`, `response_format`,
    `speed`; other fields such as `instructions` are ignored)."""
    fields = parse_json_body(content_type, body)
    text = fields.get("input")
    if not isinstance(text, str) or not text.strip():
        raise errors.invalid_argument("input", "is required: the text to speak")
    voice = fields.get("voice", "")
    if not isinstance(voice, str):
        raise errors.invalid_argument("voice", "must be a string (a voice name)")
    speed = fields.get("speed", 1.0)
    low, high = SPEECH_SPEEDS
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not low <= speed <= high:
        raise errors.invalid_argument("speed", f"is {speed!r}; use a number from {low} to {high}")
    if fields.get("stream_format", "audio") not in ("audio", None):
        raise errors.invalid_argument(
            "stream_format",
            "only 'audio' is offered here; stream speech with the StreamingSynthesize RPC or"
            " /v1/tts:streamingSynthesize (server-sent events)",
        )
    return SpeechRequest(
        input=text,
        model=resolve_tts_model(str(fields.get("model") or "")),
        voice=voice.strip(),
        encoding=speech_format(str(fields.get("response_format") or "mp3")),
        speed=float(speed),
    )
