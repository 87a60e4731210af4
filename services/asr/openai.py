"""The ASR service's OpenAI-compatible face: `/v1/audio/transcriptions`,
`/v1/audio/translations`, and the suite's model list `/v1/models`.

Requests come as the multipart upload Envoy hands over whole (speechmesh.runtime.multipart);
answers are OpenAI's bodies in every response format (json, verbose_json, text, srt, vtt).
Errors name the OpenAI form field (see speechmesh.runtime.openai for how they reach OpenAI's
clients). `/v1/models` lists every model the suite serves: this service's, those its peers
(SPEECHMESH_ASR_PEERS) answer ListModels with, and the OpenAI aliases of the services present.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Iterable
from typing import Any

from speechmesh.asr.engines.base import DecodeOptions, InvalidOptionError, Segment
from speechmesh.asr.models import AsrModel, AsrModels
from speechmesh.asr.recognizer import Transcript
from speechmesh.dsp import subtitles
from speechmesh.runtime import errors, openai
from speechmesh.runtime.multipart import FilePart, parse_multipart
from speechmesh.runtime.peers import Peers

#: Response formats of /v1/audio/transcriptions and /v1/audio/translations.
RESPONSE_FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
#: Values of `timestamp_granularities[]`.
GRANULARITIES = ("segment", "word")


class AsrOpenAi:
    """The OpenAI routes over this service's models and its peers; each method takes the
    request as it came and returns the answer's (content type, body)."""

    def __init__(self, models: AsrModels, peers: Peers):
        self.models = models
        self.peers = peers
        #: `created` of the models in the list: when this service started.
        self.created = int(time.time())

    async def transcription(
        self, content_type: str, body: bytes, *, translate: bool
    ) -> tuple[str, bytes]:
        """A transcription (or, with `translate`, a translation to English) of the upload."""
        asked = audio_request(content_type, body, translate=translate)
        async with self.models.use(asked.model) as model:
            options = decode_options(model, asked)
            method = "CreateTranslation" if translate else "CreateTranscription"
            transcript = await model.recognizer.recognize_audio(
                asked.file.data, None, options, method=method, field="file"
            )
        return transcription_body(transcript, asked)

    async def model_list(self) -> tuple[str, bytes]:
        return openai.models_body(await self.model_ids(), self.created)

    async def model(self, model_id: str) -> tuple[str, bytes]:
        """One model; its peers are asked only for an id this service does not know."""
        ids = model_ids(self.models.models, {})
        if model_id not in ids:
            ids = await self.model_ids()
        return openai.model_body(model_id, ids, self.created)

    async def model_ids(self) -> list[str]:
        return model_ids(self.models.models, await self.peers.model_names())


def model_ids(served: Iterable[str], peers: dict[str, list[str]]) -> list[str]:
    """Every id /v1/models lists: this service's models, the models of each peer that answered,
    then the OpenAI aliases of ASR and of each of those peers."""
    aliases = [alias for name in ("asr", *peers) for alias in openai.ALIASES.get(name, ())]
    return list(dict.fromkeys([*served, *(m for names in peers.values() for m in names), *aliases]))


def decode_options(model: AsrModel, asked: AudioRequest) -> DecodeOptions:
    """Decode options of an OpenAI request; errors name its form fields."""
    try:
        return model.engine.options(
            language=asked.language,
            task=asked.task,
            word_timestamps=asked.word_timestamps,
            prompt=asked.prompt,
            beam_size=1,
            temperature=asked.temperature,
        )
    except InvalidOptionError as error:
        raise option_error(error.option, str(error), model.name) from None


# -- requests --------------------------------------------------------------------------------

#: Engine option (InvalidOptionError.option) -> the form field to name in the error.
OPTION_FIELDS = {
    "language": "language",
    "task": "model",
    "word_timestamps": "timestamp_granularities[]",
    "prompt": "prompt",
    "temperature": "temperature",
    "beam_size": "model",
    "text_normalization": "model",
}


def option_error(option: str, message: str, model: str) -> errors.ApiError:
    """INVALID_ARGUMENT for an option the engine refused, naming the form field; a model
    that cannot translate gets advice in this API's terms."""
    if option == "task":
        message = (
            f"model {model} cannot translate speech to English;"
            " /v1/audio/transcriptions transcribes, or name a multilingual Whisper model"
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
        model=openai.resolve_model(form.text("model"), openai.ALIASES["asr"]),
        task="translate" if translate else "transcribe",
        language=language,
        prompt=form.text("prompt").strip(),
        temperature=temperature,
        response_format=response_format,
        granularities=granularities or ("segment",),
    )


# -- answers ---------------------------------------------------------------------------------


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


def _segment_json(index: int, segment: Segment, temperature: float) -> dict[str, Any]:
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


def transcription_body(result: Transcript, request: AudioRequest) -> tuple[str, bytes]:
    """(content type, body) of the answer in the request's response format."""
    fmt = request.response_format
    if fmt == "text":
        return openai.TEXT, (result.text + "\n").encode()
    if fmt == "srt":
        return openai.TEXT, srt(result.segments).encode()
    if fmt == "vtt":
        return openai.TEXT, vtt(result.segments).encode()
    if fmt == "json":
        return openai.JSON, openai.json_bytes(
            {"text": result.text, "usage": _usage(result.duration)}
        )
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
    return openai.JSON, openai.json_bytes(body)


def srt(segments: Iterable[Segment]) -> str:
    """SubRip subtitles, one cue per segment, each on one line (speechmesh.dsp.subtitles)."""
    return subtitles.srt(((s.start, s.end, s.text) for s in segments), width=None)


def vtt(segments: Iterable[Segment]) -> str:
    """WebVTT subtitles, one cue per segment, each on one line (speechmesh.dsp.subtitles)."""
    return subtitles.vtt(((s.start, s.end, s.text) for s in segments), width=None)
