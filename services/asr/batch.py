"""BatchRecognize as a long-running job (speechmesh.operations): the job kind the runner runs.

`check` validates a request when the job is created, as Recognize would (model, config, 1 to 100
files each with a source); `run` recognizes the files in order at the job's priority, each as
Recognize would, a file that fails keeping its error in its result while the others go on;
`render` gives the result as JSON, or one file's transcript as text or SRT/VTT subtitles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.mapping import decode_options, recognize_response
from speechmesh.asr.models import AsrModels
from speechmesh.asr.v1 import asr_pb2
from speechmesh.common.v1 import operations_pb2 as ops_pb2
from speechmesh.dsp.audio import AudioError
from speechmesh.inference.batcher import gather_all
from speechmesh.operations import results
from speechmesh.operations.files import FileProgress, check_files, file_error, source_labels
from speechmesh.operations.job import Blob, JobContext, JobKind, JobOutcome
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import check_request_id, duration, raw_format

METHOD = "speechmesh.asr.v1.AsrService/BatchRecognize"
#: Its name in metrics (the real-time factor's `method` label).
METRIC_METHOD = "BatchRecognize"
#: Files of one job recognized at once: two batches' worth of short clips, so that both of the
#: batcher's background workers have a batch (bench/results/jobs.md). Each holds its decoded
#: audio meanwhile (an hour at 16 kHz is 230 MB); one long file alone keeps the model busy.
FILES_AT_ONCE = 16


def batch_recognize_kind(models: AsrModels, settings: AsrSettings) -> JobKind:
    """The BatchRecognize job kind over the service's models."""

    def check(request: asr_pb2.BatchRecognizeRequest) -> int:
        check_request_id(request.request_id)
        config = request.config
        model = models.known(config.model)
        if model.engine is not None:  # an unloaded model's options are checked when it runs
            decode_options(model, config)
        raw_format(config.audio_format, "config.audio_format")
        return check_files(request.files)

    async def run(request: asr_pb2.BatchRecognizeRequest, ctx: JobContext) -> JobOutcome:
        async with models.use(request.config.model) as model:
            return await _run(model, request, ctx)

    async def _run(model, request: asr_pb2.BatchRecognizeRequest, ctx: JobContext) -> JobOutcome:
        config = request.config
        options = decode_options(model, config)
        raw = raw_format(config.audio_format, "config.audio_format")
        progress = FileProgress(ctx.progress, len(request.files))
        response = asr_pb2.BatchRecognizeResponse()
        results = [response.results.add(source=label) for label in source_labels(request.files)]
        durations = [0.0] * len(results)
        # Several files at once, so that short recordings fill batches as concurrent calls do.
        slots = asyncio.Semaphore(FILES_AT_ONCE)

        async def recognize(index: int, file) -> None:
            field = f"files[{index}]"
            async with slots:
                try:
                    transcript = await model.recognizer.recognize_audio(
                        await ctx.read(file),
                        raw,
                        options,
                        method=METRIC_METHOD,
                        field=field,
                        priority=ctx.priority,
                        on_progress=progress.hook(index),
                    )
                except (errors.ApiError, AudioError) as error:
                    results[index].error.CopyFrom(file_error(error, field))
                else:
                    response_proto = recognize_response(request.request_id, model, transcript)
                    results[index].response.CopyFrom(response_proto)
                    durations[index] = transcript.duration
                progress.file_done(index)

        await gather_all(recognize(i, file) for i, file in enumerate(request.files))
        total = sum(durations)
        response.total_audio_duration.CopyFrom(duration(total))
        return JobOutcome(response)

    return JobKind(
        method=METHOD,
        request_type=asr_pb2.BatchRecognizeRequest,
        response_type=asr_pb2.BatchRecognizeResponse,
        check=check,
        run=run,
        render=render,
        inputs=lambda request: list(request.files),
    )


async def render(
    response: asr_pb2.BatchRecognizeResponse,
    fmt: int,
    file_index: int,
    load: Callable[[str], Awaitable[Blob | None]],
) -> tuple[str, bytes]:
    """JSON (the default: the whole response), or file `file_index`'s transcript as TEXT, SRT
    or VTT; AUDIO is INVALID_ARGUMENT."""
    if fmt in (ops_pb2.RESULT_FORMAT_UNSPECIFIED, ops_pb2.RESULT_FORMAT_JSON):
        return results.json_body(response)
    if fmt not in (
        ops_pb2.RESULT_FORMAT_TEXT,
        ops_pb2.RESULT_FORMAT_SRT,
        ops_pb2.RESULT_FORMAT_VTT,
    ):
        raise results.no_format(
            fmt, "a recognition result is RESULT_FORMAT_JSON, _TEXT, _SRT or _VTT"
        )
    transcript = results.file_result(response.results, file_index).response
    if fmt == ops_pb2.RESULT_FORMAT_TEXT:
        return results.text_body(transcript.transcript)
    cues = [
        (results.seconds(s.start_offset), results.seconds(s.end_offset), s.text)
        for s in transcript.segments
    ]
    return results.subtitles_body(fmt, cues)
