"""Jobs benchmark: BatchRecognize jobs against unary Recognize on the same model and clips,
live Recognize latency while a queue of long jobs runs, and how soon a cancel ends a job.

    python -m bench.jobs --model ../shared/models/whisper-tiny.en [--quick] [--out bench/results]

Serves the ASR service in this process as bench.asr does (bench.asr_served.Served: the default
engine, CTranslate2 int8 on a CPU; ServiceHost + build_app, port 0, no metrics server), its jobs
on a fresh SQLite store in a temporary folder (also the jobs' file root), and talks to it over a
real grpc.aio channel, like any client. One run, the same server settings for every part
(SPEECHMESH_ASR_* and SPEECHMESH_JOBS_* variables as in production; the store and the file root
are the benchmark's own):

- throughput, in audio seconds per wall second, over the clip set (LibriVox clips as WAV files)
  repeated: unary Recognize from 1, 4 and 8 closed-loop callers, and the same clips as
  BatchRecognize jobs with the files inline, as one job holding every clip as a file and as one
  job per clip, timed from the first submit to the last job seen done by WaitOperation (the
  jobs are waited on one after the other, in the order submitted); every path on the same
  blocks of clips, interleaved (A..E, then E..A);
- live latency: sequential Recognize calls of the shortest clip, idle (before the queue and
  again once it was cleared) and while a queue of long jobs runs: each job one recording of the
  longest clip repeated to about LONG_RECORDING_S, read as a file:// input, more than the run
  can finish; the audio the model decoded for the jobs meanwhile, against the same queue alone;
- cancel: CancelOperation on a job of that queue that has been RUNNING for a while, to
  WaitOperation answering it done and CANCELLED, a few times.

The batcher's forward passes are recorded with their priority (live or background) and audio.
Every job left is cancelled and deleted at the end. Writes NAME.json (every figure, the targets
and whether each passed) and, by bench.jobs_report, NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import pathlib
import sys
import tempfile
import time
from collections import Counter

from bench import jobs_report
from bench.common import SHARED, Block, bench_parser, interleaved, run_and_write, summary
from bench.jobs_served import Bench, stretch_figures
from bench.served import measuring

UNARY_CONCURRENCY = (1, 4, 8)


class Plan:
    """How much work each part does: full (~4 min on 2 cores) or --quick (~1.5 min)."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.passes = 1 if quick else 4  # passes over the clip set in each throughput block
        self.blocks = 1 if quick else 2  # throughput blocks per path, interleaved
        self.idle_calls = 5 if quick else 12  # before the queue, and again after it
        self.loaded_calls = 10 if quick else 30
        self.alone_s = 5.0 if quick else 20.0  # the queue measured alone
        self.queue_jobs = 5 if quick else 10
        self.cancel_samples = 2 if quick else 5


# -- the run -------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench.jobs {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict:
    plan = Plan(args.quick)
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as folder:
        bench = Bench(args, pathlib.Path(folder))
        async with measuring("jobs", args, bench, _log) as results:
            _describe(bench, results)
            try:
                results["warmup_s"] = await _warm_up(bench)
                if "throughput" in sections:
                    results["throughput"] = await _throughput(bench, plan)
                if sections & {"live", "cancel"}:
                    await _queue_parts(bench, plan, sections, results)
            finally:
                _log("cancelling and deleting every job left")
                results["cleanup"] = await bench.cleanup()
            if "live" in sections:
                after = await bench.live_block(plan.idle_calls)
                _live_results(bench, results["live"], after)
    return results


def _describe(bench: Bench, results: dict) -> None:
    from importlib.metadata import version

    from speechmesh.inference.background import background_slots

    env = results["environment"]
    jobs = bench.settings.jobs
    env["engine"] = bench.describe()
    env["ctranslate2"] = (
        version("ctranslate2") if env["engine"]["runtime"] == "ctranslate2" else None
    )
    env["jobs"] = {
        "store": "SQLite, a fresh file in a temporary folder",
        "concurrency": jobs.concurrency,
        "max_queued": jobs.max_queued,
        "lease_s": jobs.lease_s,
        # the runner's: progress, lease and the cancel flag, every heartbeat
        "heartbeat_s": bench.jobs.runner.heartbeat_s,
        "poll_interval_s": jobs.poll_interval_s,
        "background_slots": background_slots(bench.recognizer.batcher),
        "batcher_background_workers": getattr(bench.recognizer.batcher, "background_workers", None),
    }
    env["dirty_paths"] = _dirty_paths()
    results["clips"] = [
        {"index": i, "name": c.name, "audio_s": round(c.seconds, 3), "reference": c.reference}
        for i, c in enumerate(bench.clips)
    ]
    _log(
        f"{len(bench.clips)} clips ({sum(c.seconds for c in bench.clips):.1f} s);"
        f" engine {env['engine']['runtime']} ({env['engine']['workers']} workers);"
        f" jobs {env['jobs']}"
    )


def _dirty_paths() -> list[str]:
    """Tracked files that differ from the commit measured (another session's work in progress
    is measured too)."""
    from bench.common import _git

    return (_git("diff", "--name-only", "HEAD") or "").split()


async def _warm_up(bench: Bench) -> float:
    """Every batch size the unary runs form, both paths; a job of each shape."""
    _log("warm-up")
    began = time.perf_counter()
    await asyncio.gather(*(bench.direct_recognize(i, c) for i, c in enumerate(bench.clips * 2)))
    await bench.unary_block(2, bench.clips[:2])
    for name in [await bench.submit(bench.clips[:2]), await bench.submit(bench.clips[2:3])]:
        await bench.wait(name)
    return time.perf_counter() - began


async def _throughput(bench: Bench, plan: Plan) -> dict:
    clips = bench.clips * plan.passes
    paths = {
        f"unary_c{c}": functools.partial(bench.unary_block, c, clips) for c in UNARY_CONCURRENCY
    }
    paths["jobs_one"] = functools.partial(bench.jobs_block, False, clips)
    paths["jobs_per_clip"] = functools.partial(bench.jobs_block, True, clips)
    _log(f"throughput: {', '.join(paths)}; {plan.blocks} blocks of {len(clips)} clips each")
    measured = await interleaved(lambda path, _i: path(), paths, plan.blocks)
    unary = [bench.unary_figures(measured[f"unary_c{c}"], c) for c in UNARY_CONCURRENCY]
    jobs = {m: bench.jobs_figures(measured[f"jobs_{m}"], m) for m in ("one", "per_clip")}
    best_unary = max(unary, key=lambda r: r["audio_s_per_s"])
    best_jobs = max(jobs.values(), key=lambda r: r["audio_s_per_s"])
    for r in unary:
        r["over_best_unary"] = r["audio_s_per_s"] / best_unary["audio_s_per_s"]
    for r in jobs.values():
        r["over_best_unary"] = r["audio_s_per_s"] / best_unary["audio_s_per_s"]
    out = {
        "passes": plan.passes,
        "clips_per_block": len(clips),
        "unary": unary,
        "jobs": jobs,
        "best_unary_concurrency": best_unary["concurrency"],
        "best_unary_audio_s_per_s": best_unary["audio_s_per_s"],
        "best_jobs_mode": best_jobs["mode"],
        "best_jobs_audio_s_per_s": best_jobs["audio_s_per_s"],
        "jobs_over_best_unary": best_jobs["audio_s_per_s"] / best_unary["audio_s_per_s"],
    }
    _log(
        "  "
        + "; ".join(f"unary x{r['concurrency']} {r['audio_s_per_s']:.2f}" for r in unary)
        + "; "
        + "; ".join(f"jobs {m} {r['audio_s_per_s']:.2f}" for m, r in jobs.items())
        + f" audio s/s; jobs / best unary {out['jobs_over_best_unary']:.3f}"
    )
    return out


async def _queue_parts(bench: Bench, plan: Plan, sections: set[str], results: dict) -> None:
    """Live calls idle, then the queue of long jobs: alone, under live calls, then cancels."""
    live = "live" in sections
    if live:
        _log(
            f"live: {plan.idle_calls} calls of {bench.short.name}"
            f" ({bench.short.seconds:.1f} s), idle"
        )
        results["live"] = {"idle_before": await bench.live_block(plan.idle_calls)}
    uri = f"file://{bench.long_path}"
    names = [await bench.submit(uri=uri, tag=f"bench-queue-{k}") for k in range(plan.queue_jobs)]
    _log(
        f"queue: {len(names)} jobs of {bench.long_s:.0f} s each"
        f" ({bench.longest.name} x {bench.repeats})"
    )
    # The queue is flowing once a background pass has finished.
    while not any(s[4] for s in bench.recorder.spans):
        await asyncio.sleep(0.05)
    queue = {
        "jobs": len(names),
        "recording": bench.longest.name,
        "repeats": bench.repeats,
        "recording_s": bench.long_s,
        "audio_s": bench.long_s * len(names),
    }
    if live:
        # The figures of these stretches come once every pass in them has ended (_live_results).
        began = time.perf_counter()
        await asyncio.sleep(plan.alone_s)
        bench.stretches["alone"] = (began, time.perf_counter())
        _log(f"live: {plan.loaded_calls} calls with the queue running")
        loaded = await bench.live_block(plan.loaded_calls)
        bench.stretches["during_live"] = (loaded.items[0][0], loaded.items[-1][1])
        queue["states_after_live"] = await bench.queued_progress(names)
        results["live"].update(loaded=loaded, queue=queue)
    if "cancel" in sections:
        results["cancel"] = await _cancel(bench, plan, names)
    if not live:
        results["cancel"]["queue"] = queue


async def _cancel(bench: Bench, plan: Plan, names: list[str]) -> dict:
    _log(f"cancel: {plan.cancel_samples} running jobs")
    samples = []
    for _ in range(plan.cancel_samples):
        name = await bench.running_job(names)
        if name is None:
            break
        before = bench.metadata(await bench.get(name))
        sent, sent_at = time.perf_counter(), time.time()
        await bench.ops.CancelOperation(bench.lro.CancelOperationRequest(name=name))
        answered = time.perf_counter() - sent
        op = await bench.wait(name)
        done = time.perf_counter() - sent
        meta = bench.metadata(op)
        samples.append(
            {
                "cancel_call_s": answered,
                "cancel_to_done_s": done,
                "cancel_to_end_time_s": meta.end_time.ToNanoseconds() / 1e9 - sent_at,
                "running_before_s": sent_at - before.start_time.ToNanoseconds() / 1e9,
                "processed_audio_s": meta.processed_audio.ToNanoseconds() / 1e9,
                "state": bench.ops_pb.OperationState.Name(meta.state).removeprefix(
                    "OPERATION_STATE_"
                ),
                "error_code": op.error.code,
            }
        )
        names.remove(name)
    seconds = [s["cancel_to_done_s"] for s in samples]
    out = {
        "samples": samples,
        "cancel_to_done_s": {"median": summary(seconds)["p50"], "max": max(seconds, default=None)},
        "cancel_to_end_time_s": summary([s["cancel_to_end_time_s"] for s in samples]),
        "all_cancelled": bool(samples) and all(s["state"] == "CANCELLED" for s in samples),
    }
    _log(
        f"  cancel -> done: median {out['cancel_to_done_s']['median']:.3f} s,"
        f" max {out['cancel_to_done_s']['max']:.3f} s; states"
        f" {Counter(s['state'] for s in samples)}"
    )
    return out


def _live_results(bench: Bench, live: dict, after: Block) -> None:
    """The live figures: idle before and after the queue (and both), loaded, the ratios."""
    before, loaded = live.pop("idle_before"), live.pop("loaded")
    live["clip"] = {"name": bench.short.name, "audio_s": bench.short.seconds}
    live["idle_before"] = bench.live_figures([before])
    live["idle_after"] = bench.live_figures([after])
    live["idle"] = bench.live_figures([before, after])
    live["loaded"] = bench.live_figures([loaded])
    idle, busy = live["idle"]["latency_s"], live["loaded"]["latency_s"]
    live["loaded_over_idle_p50"] = busy["p50"] / idle["p50"]
    live["loaded_over_idle_p90"] = busy["p90"] / idle["p90"]
    q = live["queue"]
    for name, (start, end) in bench.stretches.items():
        q[name] = stretch_figures(bench.recorder.spans, start, end)
    q["during_live_over_alone"] = q["during_live"]["audio_s_per_s"] / q["alone"]["audio_s_per_s"]
    _log(
        f"  live p50: idle {idle['p50']:.3f} s, loaded {busy['p50']:.3f} s"
        f" ({live['loaded_over_idle_p50']:.3f}x); p90 {idle['p90']:.3f} / {busy['p90']:.3f} s;"
        f" jobs {q['alone']['audio_s_per_s']:.2f} audio s/s alone,"
        f" {q['during_live']['audio_s_per_s']:.2f} during the live calls"
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("jobs", __doc__, "throughput,live,cancel", audio=True)
    parser.add_argument(
        "--model",
        type=pathlib.Path,
        default=SHARED / "models" / "whisper-tiny.en",
        help="Whisper checkpoint folder or hub id (default: ../shared/models/whisper-tiny.en)",
    )
    return run_and_write(parser.parse_args(argv), run, jobs_report, _log)


if __name__ == "__main__":
    sys.exit(main())
