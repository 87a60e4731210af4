"""The ASR service bench.jobs serves, with its jobs, and the calls and figures it measures.

`Bench` is bench.asr_served.Served (the default engine, served in this process) with its jobs on
a fresh SQLite store in a temporary folder, which is also the jobs' file root: unary calls,
BatchRecognize jobs submitted and waited on through the OperationsService, blocks of them
measured, their figures, the queue of long jobs, and the cleanup. `PriorityRecorder` records
the batcher's forward passes with their priority (live or background) and audio.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import pathlib
import time
import wave
from collections import Counter

from bench.asr_served import Served
from bench.common import (
    BatchRecorder,
    Block,
    Clip,
    costs,
    load_clips,
    pooled,
    summary,
    word_error_rate,
)

#: Each queued long job: the longest clip repeated to about this many seconds, one file.
LONG_RECORDING_S = 300.0
#: WaitOperation's timeout per call, and the longest the benchmark waits for one job.
WAIT_S = 30
JOB_LIMIT_S = 900.0
#: A job to cancel has been RUNNING at least this long (its windows are in the batcher).
RUNNING_BEFORE_CANCEL_S = 1.0


class PriorityRecorder(BatchRecorder):
    """A BatchRecorder that also keeps every forward pass as a span (start, end, windows,
    audio seconds, background?), and counts the background passes running now."""

    def __init__(self, batcher, sample_rate: int):
        from speechmesh.inference.batcher import PRIORITY_BACKGROUND

        self.background_priority = PRIORITY_BACKGROUND
        self.sample_rate = sample_rate
        self.priorities: dict[int, int] = {}
        self.spans: list[tuple[float, float, int, float, bool]] = []
        self.active_background = 0
        super().__init__(batcher)

    async def _submit(self, job, **kwargs):
        self.priorities[id(job)] = kwargs.get("priority", 0)
        try:
            return await super()._submit(job, **kwargs)
        finally:
            self.priorities.pop(id(job), None)

    def _run(self, jobs):
        priority = self.background_priority
        background = any(self.priorities.get(id(j), 0) >= priority for j in jobs)
        audio = sum(len(j.audio) for j in jobs) / self.sample_rate
        with self._lock:
            self.active_background += background
        started = time.perf_counter()
        try:
            return super()._run(jobs)
        finally:
            with self._lock:
                self.active_background -= background
                self.spans.append((started, time.perf_counter(), len(jobs), audio, background))


def background_audio(spans: list[tuple], start: float, end: float) -> float:
    """Audio seconds background passes decoded within [start, end], pro rata of their time."""
    total = 0.0
    for a, b, _n, audio, background in spans:
        if background and b > start and a < end:
            total += audio * (min(b, end) - max(a, start)) / max(b - a, 1e-9)
    return total


def background_share(spans: list[tuple], start: float, end: float) -> float:
    """The share of [start, end] during which at least one background pass ran."""
    covered, reach = 0.0, start
    for a, b, *_rest in sorted(s for s in spans if s[4]):
        a, b = max(a, reach), min(b, end)
        if b > a:
            covered += b - a
            reach = b
    return covered / max(end - start, 1e-9)


def stretch_figures(spans: list[tuple], start: float, end: float) -> dict:
    """What the background passes did within [start, end]: audio seconds per second, the
    share of the time one ran, and the passes that overlapped it."""
    passes = [s for s in spans if s[4] and s[1] > start and s[0] < end]
    return {
        "wall_s": end - start,
        "audio_s_per_s": background_audio(spans, start, end) / max(end - start, 1e-9),
        "background_running_share": background_share(spans, start, end),
        "passes": len(passes),
        "pass_windows": summary([s[2] for s in passes])["mean"],
        "pass_audio_s": summary([s[3] for s in passes])["mean"],
        "pass_s": summary([s[1] - s[0] for s in passes]),
    }


class Bench(Served):
    """The ASR service (default engine) with its jobs on a fresh SQLite store in `folder`."""

    def __init__(self, args: argparse.Namespace, folder: pathlib.Path):
        from speechmesh.operations.settings import JobsSettings

        (folder / "files").mkdir()
        self.folder = folder
        jobs = JobsSettings(
            database_url=f"sqlite:///{folder / 'jobs.sqlite3'}", file_root=str(folder / "files")
        )
        super().__init__(args, "auto", jobs=jobs)
        self.created: list[str] = []
        #: Stretches of the live part (start, end), by name: the queue alone, during live calls.
        self.stretches: dict[str, tuple[float, float]] = {}

    def record(self, batcher) -> None:
        self.recorder = PriorityRecorder(batcher, self.engine.sample_rate)

    async def start(self) -> None:
        from google.longrunning import operations_pb2 as lro_pb2
        from google.protobuf import duration_pb2

        from speechmesh.asr.v1 import asr_pb2_grpc
        from speechmesh.common.v1 import operations_pb2 as ops_pb2

        await super().start()
        self.ops = asr_pb2_grpc.OperationsServiceStub(self.channel)
        self.lro, self.ops_pb, self.duration_pb = lro_pb2, ops_pb2, duration_pb2
        self.clips = load_clips(self.args.audio, self.engine.sample_rate)
        self.short = min(self.clips, key=lambda c: c.seconds)
        self.longest = max(self.clips, key=lambda c: c.seconds)
        self.repeats = math.ceil(LONG_RECORDING_S / self.longest.seconds)
        self.long_path = self.folder / "files" / "long.wav"
        with wave.open(str(self.long_path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.longest.sample_rate)
            out.writeframes(self.longest.pcm16 * self.repeats)
        self.long_s = self.longest.seconds * self.repeats

    # -- calls -------------------------------------------------------------------------------

    async def unary(self, index: int, clip: Clip) -> tuple[Clip, str]:
        return clip, await self.grpc_recognize(index, clip)

    async def submit(self, clips: list[Clip] = (), uri: str = "", tag: str = "") -> str:
        inputs = self.ops_pb.AudioInput
        files = [inputs(content=c.data) for c in clips] if clips else [inputs(uri=uri)]
        request = self.pb.BatchRecognizeRequest(config=self.config, files=files, request_id=tag)
        op = await self.stub.BatchRecognize(request)
        self.created.append(op.name)
        return op.name

    async def wait(self, name: str):
        """The operation once done (WaitOperation, long polls of WAIT_S seconds)."""
        deadline = time.monotonic() + JOB_LIMIT_S
        timeout = self.duration_pb.Duration(seconds=WAIT_S)
        while True:
            op = await self.ops.WaitOperation(
                self.lro.WaitOperationRequest(name=name, timeout=timeout)
            )
            if op.done:
                return op
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {name} not done after {JOB_LIMIT_S:.0f} s")

    async def get(self, name: str):
        return await self.ops.GetOperation(self.lro.GetOperationRequest(name=name))

    def metadata(self, op):
        meta = self.ops_pb.OperationMetadata()
        op.metadata.Unpack(meta)
        return meta

    # -- measured blocks ---------------------------------------------------------------------

    async def unary_block(self, concurrency: int, clips: list[Clip]) -> Block:
        """Every clip once, from `concurrency` closed-loop callers; items ((clip, text), s)."""
        return await self.closed_loop(len(clips), concurrency, lambda i: self.unary(i, clips[i]))

    async def jobs_block(self, per_clip: bool, clips: list[Clip]) -> Block:
        """The clips as one job holding every clip as a file, or as one job per clip: submitted
        one after the other, then waited on in that order. Items: one record per job."""
        groups = [[c] for c in clips] if per_clip else [list(clips)]
        records: list[dict] = []

        async def client(_worker: int) -> None:
            first_submit = time.time()
            names = [await self.submit(group, tag="bench-jobs") for group in groups]
            submit_s = time.time() - first_submit
            for name, group in zip(names, groups, strict=True):
                records.append(self.job_record(await self.wait(name), group))
            for r in records:
                r.update(first_submit=first_submit, submit_s=submit_s)

        return await self.block(client, 1, records)

    def job_record(self, op, clips: list[Clip]) -> dict:
        meta = self.metadata(op)
        response = self.pb.BatchRecognizeResponse()
        texts: list[str | None] = [None] * len(clips)
        if op.HasField("response") and op.response.Unpack(response):
            texts = [
                None if r.HasField("error") else r.response.transcript for r in response.results
            ]
        seconds = lambda stamp: stamp.ToNanoseconds() / 1e9  # noqa: E731
        return {
            "clips": clips,
            "texts": texts,
            "state": self.ops_pb.OperationState.Name(meta.state).removeprefix("OPERATION_STATE_"),
            "create": seconds(meta.create_time),
            "start": seconds(meta.start_time),
            "end": seconds(meta.end_time),
        }

    async def live_block(self, calls: int) -> Block:
        """`calls` Recognize calls of the short clip, one after the other; items (sent, done)."""
        records: list[tuple[float, float]] = []

        async def caller(_worker: int) -> None:
            for index in range(calls):
                sent = time.perf_counter()
                await self.unary(index, self.short)
                records.append((sent, time.perf_counter()))

        return await self.block(caller, 1, records)

    # -- figures -----------------------------------------------------------------------------

    def unary_figures(self, blocks: list[Block], concurrency: int) -> dict:
        records, wall = pooled(blocks)
        audio = sum(clip.seconds for (clip, _), _ in records)
        return {
            "concurrency": concurrency,
            "requests": len(records),
            "blocks": [len(b.items) for b in blocks],
            "audio_s": audio,
            "wall_s": wall,
            "requests_per_s": len(records) / wall,
            "audio_s_per_s": audio / wall,
            "latency_s": summary([lat for _, lat in records]),
            "wer": word_error_rate([(clip.reference, text) for (clip, text), _ in records]),
            **costs(blocks, wall),
        }

    def jobs_figures(self, blocks: list[Block], mode: str) -> dict:
        jobs, wall = pooled(blocks)
        files = [(c, t) for j in jobs for c, t in zip(j["clips"], j["texts"], strict=True)]
        audio = sum(c.seconds for c, _ in files)
        # per block: first submit -> the last job's end_time, as the store wrote it
        server_wall = sum(
            max(j["end"] for j in b.items) - b.items[0]["first_submit"] for b in blocks
        )
        return {
            "mode": mode,
            "jobs": len(jobs),
            "files": len(files),
            "blocks": [len(b.items) for b in blocks],
            "states": dict(Counter(j["state"] for j in jobs)),
            "succeeded_files": sum(t is not None for _, t in files),
            "audio_s": audio,
            "wall_s": wall,
            "audio_s_per_s": audio / wall,
            "server_wall_s": server_wall,
            "submit_s": sum(b.items[0]["submit_s"] for b in blocks),
            "job_queued_s": summary([j["start"] - j["create"] for j in jobs]),
            "job_running_s": summary([j["end"] - j["start"] for j in jobs]),
            "wer": word_error_rate([(c.reference, t or "") for c, t in files]),
            **costs(blocks, wall),
        }

    def live_figures(self, blocks: list[Block]) -> dict:
        calls, wall = pooled(blocks)
        spans = self.recorder.spans
        shares = [background_share(spans, a, b) for a, b in calls]
        # each call's own forward pass (the live pass within its time), and the rest: gRPC,
        # decoding the file, features, the batcher
        passes = [
            sum(e - s for s, e, _n, _a, bg in spans if not bg and s >= a and e <= b)
            for a, b in calls
        ]
        return {
            "calls": len(calls),
            "wall_s": wall,
            "latency_s": summary([b - a for a, b in calls]),
            "forward_pass_s": summary(passes),
            "outside_pass_s": summary([b - a - p for (a, b), p in zip(calls, passes, strict=True)]),
            "background_running_share": summary(shares)["mean"],
            **costs(blocks, wall),
        }

    # -- the queue ---------------------------------------------------------------------------

    async def queued_progress(self, names: list[str]) -> dict[str, int]:
        states = Counter()
        for name in names:
            states[self.ops_pb.OperationState.Name(self.metadata(await self.get(name)).state)] += 1
        return {k.removeprefix("OPERATION_STATE_"): v for k, v in states.items()}

    async def running_job(self, names: list[str]) -> str | None:
        """A job of `names` RUNNING for RUNNING_BEFORE_CANCEL_S or more (waits for one)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for name in names:
                meta = self.metadata(await self.get(name))
                if meta.state == self.ops_pb.OPERATION_STATE_RUNNING:
                    ran = time.time() - meta.start_time.ToNanoseconds() / 1e9
                    if ran >= RUNNING_BEFORE_CANCEL_S:
                        return name
            await asyncio.sleep(0.1)
        return None

    async def cleanup(self) -> dict:
        """Cancels every job still going, deletes every job created, and waits until no
        background pass runs any more."""
        from grpc.aio import AioRpcError

        began = time.perf_counter()
        cancelled = deleted = 0
        errors: list[str] = []
        for name in self.created:
            try:
                if not (await self.get(name)).done:
                    await self.ops.CancelOperation(self.lro.CancelOperationRequest(name=name))
                    cancelled += 1
            except AioRpcError as error:
                errors.append(f"{name}: {error.code().name}: {error.details()}")
        cancel_s = time.perf_counter() - began
        for name in self.created:
            try:
                await self.ops.DeleteOperation(self.lro.DeleteOperationRequest(name=name))
                deleted += 1
            except AioRpcError as error:
                errors.append(f"{name}: {error.code().name}: {error.details()}")
        listed = await self.ops.ListOperations(
            self.lro.ListOperationsRequest(name="operations/asr", page_size=1000)
        )
        while self.recorder.active_background and time.perf_counter() - began < 120:
            await asyncio.sleep(0.05)
        return {
            "operations_created": len(self.created),
            "cancelled": cancelled,
            "deleted": deleted,
            "left_after": len(listed.operations),
            "errors": errors,
            "cancel_all_s": cancel_s,
            "background_passes_drained_s": time.perf_counter() - began,
        }
