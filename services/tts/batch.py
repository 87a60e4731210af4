"""BatchSynthesize as a long-running job (speechmesh.operations): the job kind the runner runs.

When the job is created, the text (1 to 1,000,000 code points) and the config are checked as
Synthesize would check them, and the voice is resolved for the caller (a stored voice must be
theirs: `check_for_owner`). The job speaks the sentences at the job's priority, counting each as
it is spoken, joins them and encodes the audio once at the end, kept beside the response (blob
"audio"); `render` gives that audio (the default) or the response as JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.operations import results
from speechmesh.operations.job import Blob, JobContext, JobKind, JobOutcome
from speechmesh.operations.store import Progress
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import (
    body_content_type,
    check_request_id,
    duration,
    encode_output,
)
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.mapping import sentence_protos, synthesis_request
from speechmesh.tts.models import TtsModel, TtsModels
from speechmesh.tts.resolver import VoiceResolver, option_fields
from speechmesh.tts.speaker import Speaker, SynthesisRequest, check_text
from speechmesh.tts.synthesizer import INLINE_SPLIT_CHARACTERS
from speechmesh.tts.v1 import tts_pb2

METHOD = "speechmesh.tts.v1.TtsService/BatchSynthesize"
#: Most code points of a job's text.
MAX_TEXT_CHARACTERS = 1_000_000
#: The blob that holds the audio.
AUDIO = "audio"


class _SentenceProgress:
    """A synthesis job's progress: sentences spoken (the items) and their seconds of speech;
    the total audio stays unknown until the end."""

    def __init__(self, progress: Progress, sentences: int):
        self.progress = progress
        progress.total_items = sentences
        progress.processed_items = 0
        progress.processed_audio_s = 0.0
        progress.total_audio_s = None
        progress.percent = 0.0

    def on_sentence(self, index: int, count: int, seconds: float) -> None:
        progress = self.progress
        progress.total_items = count
        progress.processed_items += 1
        progress.processed_audio_s += seconds
        progress.percent = 100.0 * progress.processed_items / count

    def finish(self, seconds: float) -> None:
        """All spoken: the audio with its pauses lasts `seconds`."""
        self.progress.processed_audio_s = max(self.progress.processed_audio_s, seconds)
        self.progress.percent = 100.0


def batch_synthesize_kind(models: TtsModels, settings: TtsSettings) -> JobKind:
    """The BatchSynthesize job kind over the service's models and stored voices."""
    resolver = VoiceResolver(models, settings)
    speaker = Speaker(models, settings, resolver)

    def asked_for(request: tts_pb2.BatchSynthesizeRequest) -> SynthesisRequest:
        check_request_id(request.request_id)
        check_text(request.text, MAX_TEXT_CHARACTERS, "text")
        return synthesis_request(request.config, "config.")

    async def sentences(model: TtsModel, text: str) -> list[str]:
        synthesizer = speaker.synthesizer(model)
        if len(text) <= INLINE_SPLIT_CHARACTERS:
            return synthesizer.sentences(text)
        return await asyncio.to_thread(synthesizer.sentences, text)

    def check(request: tts_pb2.BatchSynthesizeRequest) -> int:
        """What can be checked without the caller (the text, the config, the model); the
        number of sentences as the model the request names (or the default) splits them."""
        asked = asked_for(request)
        voice = asked.voice
        if voice.model or voice.voice is not None:
            model = models.get(voice.model)
        elif voice.preset is not None:
            model = resolver.with_preset("", voice.preset, asked.at)
        elif voice.reference is not None:
            model = models.cloning("", asked.at + "model")
        else:
            model = models.get("")
        return len(speaker.synthesizer(model).sentences(request.text))

    async def check_for_owner(request: tts_pb2.BatchSynthesizeRequest, owner: str) -> int:
        asked = asked_for(request)
        model, _ = await resolver.resolve(asked.voice, owner, asked.at)
        return len(await sentences(model, request.text))

    async def run(request: tts_pb2.BatchSynthesizeRequest, ctx: JobContext) -> JobOutcome:
        asked = asked_for(request)
        model, voice = await resolver.resolve(asked.voice, ctx.owner, asked.at)
        progress = _SentenceProgress(ctx.progress, len(await sentences(model, request.text)))
        with option_fields(asked.at):
            speech = await speaker.synthesizer(model).speak(
                request.text,
                voice,
                asked.style,
                priority=ctx.priority,
                on_sentence=progress.on_sentence,
            )
        # Hours of speech take a while to encode: off the event loop.
        audio, rate = await asyncio.to_thread(
            encode_output,
            speech.audio,
            speech.sample_rate,
            asked.encoding,
            asked.rate,
            asked.output_field,
        )
        content_type = body_content_type(asked.encoding, rate)
        progress.finish(speech.seconds)
        response = tts_pb2.BatchSynthesizeResponse(
            audio_duration=duration(speech.seconds),
            sample_rate_hertz=rate,
            audio_size_bytes=len(audio),
            audio_content_type=content_type,
            sentences=sentence_protos(speech),
            model=model.name,
            seed=asked.style.seed,
        )
        return JobOutcome(response, {AUDIO: Blob(audio, content_type)})

    return JobKind(
        method=METHOD,
        request_type=tts_pb2.BatchSynthesizeRequest,
        response_type=tts_pb2.BatchSynthesizeResponse,
        check=check,
        run=run,
        render=render,
        check_for_owner=check_for_owner,
    )


async def render(
    response: tts_pb2.BatchSynthesizeResponse,
    fmt: int,
    file_index: int,
    load: Callable[[str], Awaitable[Blob | None]],
) -> tuple[str, bytes]:
    """The audio (AUDIO, the default) or the response as JSON; `file_index` is ignored."""
    if fmt == ops_pb2.RESULT_FORMAT_JSON:
        return results.json_body(response)
    if fmt not in (ops_pb2.RESULT_FORMAT_UNSPECIFIED, ops_pb2.RESULT_FORMAT_AUDIO):
        raise results.no_format(fmt, "a synthesis result is RESULT_FORMAT_AUDIO or _JSON")
    blob = await load(AUDIO)
    if blob is None:
        raise errors.not_found(
            "speechmesh.dev/OperationResult", AUDIO, "the audio is gone; run the job again"
        )
    return blob.content_type, blob.data
