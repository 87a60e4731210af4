"""A service served in a benchmark's own process, and the paths measured on it.

`ServedBench` serves one service in this process (ServiceHost + build_app, port 0, no metrics
server) and talks to it over a real grpc.aio channel, like any client, with direct handles on
the model it loaded and a BatchRecorder on its batcher. A subclass names its ways of calling the
service by kind: for a kind K, `direct_K` (the same model and batcher called in-process) and
`grpc_K` are the paths, `K_measure(*shape)` measures one block of calls on a path and
`K_figures(blocks, *shape)` sums up a path's blocks; `compare` measures them side by side.
`measuring` runs a benchmark's sections on a started bench and records what every run records.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor

from bench.common import (
    BatchRecorder,
    Block,
    environment,
    interleaved,
    process_memory,
    rss_mib,
    timed_block,
)


def service_settings(settings_type: type, args: argparse.Namespace, **fields):
    """A service's settings for serving it in this process: port 0, no metrics server, the
    benchmark's --log-level and --device (else the service's default device)."""
    overrides = {"device": args.device} if args.device else {}
    if "websocket_port" in settings_type.model_fields:
        fields.setdefault("websocket_port", 0)  # a free port, like the others
    return settings_type(
        host="127.0.0.1",
        port=0,
        metrics=False,
        metrics_port=0,
        log_level=args.log_level,
        **overrides,
        **fields,
    )


def tiny_checkpoint(arch: str, folder: str = "") -> pathlib.Path:
    """A tiny random checkpoint of `arch` (offline), built once per machine (in `folder`,
    default tiny-ARCH, of a temporary folder) in a child process: this one loads no more than
    the model it serves (the gateway benchmark's client, none)."""
    dest = pathlib.Path(tempfile.gettempdir()) / "speechmesh-bench" / (folder or f"tiny-{arch}")
    if (dest / "config.json").is_file():
        return dest
    partial = dest.with_name(dest.name + ".partial")  # renamed into place once complete
    shutil.rmtree(partial, ignore_errors=True)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as child:
        child.submit(_build_tiny, arch, str(partial)).result()
    shutil.rmtree(dest, ignore_errors=True)  # what an interrupted build left there, if any
    partial.rename(dest)
    return dest


def _build_tiny(arch: str, dest: str) -> None:
    from speechmesh.tiny.models import build_tiny

    build_tiny(arch, pathlib.Path(dest))


def loaded_by(load: Callable, kind: type):
    """The object of `kind` an app's load hook loads: the one it is a bound method of, or one
    it closes over (a service with jobs loads its models, then starts its jobs); else None."""
    found = [getattr(load, "__self__", None)]
    for cell in getattr(load, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            found.append(cell.cell_contents)
    return next((x for x in found if isinstance(x, kind)), None)


class InProcessService:
    """A service app served in this process on port 0, as a client sees it (a grpc.aio
    channel), with a handle on the models object its `build_app` made."""

    def __init__(self, build_app, settings, models_type: type):
        from speechmesh.operations.host import Jobs
        from speechmesh.runtime.server import ServiceHost

        self.settings = settings
        app = build_app(settings)
        # build_app keeps the models (and the jobs) to itself; its load hook loads them.
        self.models = loaded_by(app.load, models_type)
        if self.models is None:
            raise SystemExit(
                f"bench: build_app no longer exposes {models_type.__name__} through app.load"
            )
        #: The service's jobs (store and runner), None for a service without them.
        self.jobs = loaded_by(app.load, Jobs)
        self.host = ServiceHost(app, settings)
        self.channel = None
        self.load_s = 0.0

    async def start(self):
        """Starts the service, waits until it is ready; returns the channel."""
        import grpc

        started = time.perf_counter()
        await self.host.start()
        await self.host.ready.wait()
        if self.host.failed is not None:
            await self.host.stop(0)
            raise SystemExit(f"bench: the service failed to start: {self.host.failed}")
        self.load_s = time.perf_counter() - started
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.host.port}",
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ],
        )
        return self.channel

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        await self.host.stop(1)


class ServedBench:
    """One service served in this process, plus direct handles on the model it loaded."""

    recorder: BatchRecorder | None = None

    async def serve(self, build_app, settings, models_type: type) -> None:
        """Serves the app `build_app` makes of `settings`; waits until it is ready."""
        self.settings = settings
        self.service = InProcessService(build_app, settings, models_type)
        self.channel = await self.service.start()
        self.models = self.service.models
        self.jobs = self.service.jobs
        self.load_s = self.service.load_s
        self.rss_after_load_mib = rss_mib()
        self.model = self.models.default
        self.engine = self.model.engine

    def record(self, batcher) -> None:
        """Records the forward passes of `batcher` (the one the measured paths share)."""
        self.recorder = BatchRecorder(batcher)

    async def stop(self) -> None:
        if self.recorder is not None:
            self.recorder.restore()
        await self.service.stop()

    async def block(self, worker: Callable, concurrency: int, items: list) -> Block:
        """`concurrency` workers run to the end: wall time, forward passes, CPU."""
        return await timed_block(worker, concurrency, items, self.recorder)

    async def closed_loop(
        self, calls: int, concurrency: int, call: Callable[[int], Awaitable]
    ) -> Block:
        """`call(0)` ... `call(calls - 1)` from `concurrency` callers, each making its next call
        as soon as its last returned. The block's items: (what a call returned, its latency)."""
        counter = itertools.count()
        records: list[tuple] = []

        async def caller(_worker: int) -> None:
            while (index := next(counter)) < calls:
                sent = time.perf_counter()
                out = await call(index)
                records.append((out, time.perf_counter() - sent))

        return await self.block(caller, concurrency, records)

    async def compare(
        self, kind: str, shape: tuple, blocks: int, throughput: str = "", **more: Callable
    ) -> dict:
        """The gRPC and the direct path of `kind` (and `more` paths, by name), each measured on
        the same `blocks` blocks of `shape`, interleaved: figures by path, and with
        `throughput` (a key of the figures) gRPC's over direct's as grpc_over_direct."""
        paths = {"direct": getattr(self, f"direct_{kind}"), "grpc": getattr(self, f"grpc_{kind}")}
        measure = getattr(self, f"{kind}_measure")(*shape)
        measured = await interleaved(measure, {**paths, **more}, blocks)
        figures = getattr(self, f"{kind}_figures")
        run = {path: figures(measured[path], *shape) for path in ("grpc", "direct", *more)}
        if throughput:
            run["grpc_over_direct"] = run["grpc"][throughput] / run["direct"][throughput]
        return run


@contextlib.asynccontextmanager
async def measuring(
    name: str, args: argparse.Namespace, bench: ServedBench, log: Callable[[str], None]
) -> AsyncIterator[dict]:
    """Starts `bench` and yields the results, begun with the environment; once the sections
    ran (or failed), adds this process's memory, the load average and the duration, and stops
    the bench."""
    from speechmesh.runtime.logging import configure_logging

    configure_logging(args.log_level, "json")
    began = time.perf_counter()
    await bench.start()
    env = environment(bench.engine, bench.settings)
    env["random_weights"] = bench.engine.random_weights
    log(f"model {bench.engine.name} on {bench.engine.device}, loaded in {bench.load_s:.1f} s")
    results: dict = {"benchmark": name, "quick": args.quick, "environment": env}
    try:
        yield results
    finally:
        results["memory"] = process_memory(bench.rss_after_load_mib, str(bench.engine.device))
        env["load_average_at_end"] = list(os.getloadavg())
        results["duration_s"] = time.perf_counter() - began
        await bench.stop()
