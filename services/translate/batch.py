"""BatchTranslateSpeech as a long-running job (speechmesh.operations): the job kind the runner
runs.

`check` validates a request when the job is created, as TranslateSpeech would (model, languages,
modalities, output audio, 1 to 100 files each with a source); `run` translates the files in
order at the job's priority, each as TranslateSpeech would, a file that fails keeping its error
in its result while the others go on. A file's translated speech is kept beside the response
(blob "audio/{index}"), not in it; `render` gives the result as JSON, or one file's translated
text, SRT/VTT subtitles of its translated segments, or its translated speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.dsp.audio import AudioError
from speechmesh.operations import results
from speechmesh.operations.files import FileProgress, check_files, file_error, source_labels
from speechmesh.operations.job import Blob, JobContext, JobKind, JobOutcome
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import body_content_type, check_request_id, duration
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.mapping import (
    SPEECH_FIELDS,
    add_speech,
    option_fields,
    speech_plan,
    speech_response,
)
from speechmesh.translate.models import TranslateModels
from speechmesh.translate.v1 import translate_pb2

METHOD = "speechmesh.translate.v1.TranslateService/BatchTranslateSpeech"
#: Its name in metrics (the real-time factor's `method` label).
METRIC_METHOD = "BatchTranslateSpeech"


def audio_key(index: int) -> str:
    """The blob that holds file `index`'s translated speech."""
    return f"audio/{index}"


def batch_translate_speech_kind(models: TranslateModels, settings: TranslateSettings) -> JobKind:
    """The BatchTranslateSpeech job kind over the service's models."""

    def check(request: translate_pb2.BatchTranslateSpeechRequest) -> int:
        check_request_id(request.request_id)
        speech_plan(models, request.config)
        return check_files(request.files)

    async def run(
        request: translate_pb2.BatchTranslateSpeechRequest, ctx: JobContext
    ) -> JobOutcome:
        config = request.config
        plan = speech_plan(models, config)
        model = plan.model
        progress = FileProgress(ctx.progress, len(request.files))
        outcome = JobOutcome(translate_pb2.BatchTranslateSpeechResponse())
        response = outcome.response
        total = 0.0
        for index, (file, label) in enumerate(
            zip(request.files, source_labels(request.files), strict=True)
        ):
            field = f"files[{index}]"
            result = response.results.add(source=label)
            try:
                with option_fields({**SPEECH_FIELDS, "audio": field}):
                    translation = await model.translator.translate_recording(
                        await ctx.read(file),
                        plan.raw,
                        plan.options,
                        method=METRIC_METHOD,
                        field=field,
                        priority=ctx.priority,
                        on_progress=progress.hook(index),
                    )
                answer = speech_response(request.request_id, config, model.name, translation)
                if plan.output is not None:
                    # Hours of speech take a while to encode: off the event loop.
                    await asyncio.to_thread(add_speech, answer, translation, *plan.output)
                    encoding = plan.output[0]
                    rate = answer.translated_audio_sample_rate_hertz
                    outcome.blobs[audio_key(index)] = Blob(
                        answer.translated_audio, body_content_type(encoding, rate)
                    )
                    result.translated_audio_size_bytes = len(answer.translated_audio)
                    answer.ClearField("translated_audio")
            except (errors.ApiError, AudioError) as error:
                result.error.CopyFrom(file_error(error, field))
            else:
                result.response.CopyFrom(answer)
                total += translation.duration
            progress.file_done(index)
        response.total_audio_duration.CopyFrom(duration(total))
        return outcome

    return JobKind(
        method=METHOD,
        request_type=translate_pb2.BatchTranslateSpeechRequest,
        response_type=translate_pb2.BatchTranslateSpeechResponse,
        check=check,
        run=run,
        render=render,
        inputs=lambda request: list(request.files),
    )


def _speaks(response: translate_pb2.BatchTranslateSpeechResponse) -> bool:
    """Whether the job translated into speech (a file that succeeded has audio)."""
    return any(r.translated_audio_size_bytes for r in response.results)


async def render(
    response: translate_pb2.BatchTranslateSpeechResponse,
    fmt: int,
    file_index: int,
    load: Callable[[str], Awaitable[Blob | None]],
) -> tuple[str, bytes]:
    """JSON (the whole response), or file `file_index`'s translated TEXT, SRT or VTT subtitles
    of its translated segments (times in the recording), or its translated speech (AUDIO).
    Unspecified: AUDIO when the job translated into speech, else JSON."""
    if fmt == ops_pb2.RESULT_FORMAT_UNSPECIFIED:
        fmt = ops_pb2.RESULT_FORMAT_AUDIO if _speaks(response) else ops_pb2.RESULT_FORMAT_JSON
    if fmt == ops_pb2.RESULT_FORMAT_JSON:
        return results.json_body(response)
    if fmt not in (
        ops_pb2.RESULT_FORMAT_TEXT,
        ops_pb2.RESULT_FORMAT_SRT,
        ops_pb2.RESULT_FORMAT_VTT,
        ops_pb2.RESULT_FORMAT_AUDIO,
    ):
        raise results.no_format(fmt, "use RESULT_FORMAT_JSON, _TEXT, _SRT, _VTT or _AUDIO")
    result = results.file_result(response.results, file_index)
    translation = result.response
    if fmt == ops_pb2.RESULT_FORMAT_TEXT:
        return results.text_body(translation.translated_text)
    if fmt != ops_pb2.RESULT_FORMAT_AUDIO:
        cues = [
            (results.seconds(s.start_offset), results.seconds(s.end_offset), s.translated_text)
            for s in translation.segments
        ]
        return results.subtitles_body(fmt, cues)
    if not result.translated_audio_size_bytes:
        raise results.no_format(
            fmt, "this job translated into text only (ask for MODALITY_SPEECH to get speech)"
        )
    blob = await load(audio_key(file_index))
    if blob is None:
        raise errors.not_found(
            "speechmesh.dev/OperationResult",
            audio_key(file_index),
            f"the translated speech of file {file_index} is gone; run the job again",
        )
    return blob.content_type, blob.data
