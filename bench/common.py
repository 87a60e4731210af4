"""What the measuring modules share: clips, statistics, batch recording, CPU time, the
environment, measured blocks of work, and the command line (writing the results: bench.report;
a service served in-process: bench.served)."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import os
import pathlib
import platform
import re
import resource
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from bench.report import write_results

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MiB = 1024 * 1024


# -- clips -------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # compared by identity
class Clip:
    name: str
    data: bytes  # the file as it is on disk (what a client uploads)
    samples: np.ndarray  # float32 mono at the engine's rate, as the service decodes it
    pcm16: bytes  # the same samples as raw LINEAR16 (what a live client streams)
    sample_rate: int
    reference: str  # the manifest's transcript, "" when unknown

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def load_clips(folder: pathlib.Path, sample_rate: int) -> list[Clip]:
    """Every .wav/.flac under `folder`, decoded once the way the service decodes uploads."""
    from speechmesh.dsp.audio import decode_audio

    references = _manifest(folder)
    clips = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".wav", ".flac")):
        data = path.read_bytes()
        samples = decode_audio(data, None, sample_rate).samples
        pcm = np.clip(np.round(samples * 32768), -32768, 32767).astype("<i2").tobytes()
        key = next((k for k in references if path.as_posix().endswith(k)), None)
        clips.append(
            Clip(path.name, data, samples, pcm, sample_rate, references.get(key, "") if key else "")
        )
    if not clips:
        raise SystemExit(f"no .wav or .flac clips under {folder}")
    return clips


def _manifest(folder: pathlib.Path) -> dict[str, str]:
    for parent in (folder, *folder.parents):
        manifest = parent / "MANIFEST.tsv"
        if manifest.is_file():
            with manifest.open(newline="", encoding="utf-8") as f:
                return {row["path"]: row["transcript"] for row in csv.DictReader(f, delimiter="\t")}
    return {}


# -- statistics --------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, mean, min and max (None when there are no values)."""
    if not values:
        return {"p50": None, "p90": None, "mean": None, "min": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.casefold()).split()


def word_error_rate(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Word edit distance over reference words, for (reference, hypothesis) pairs with one."""
    errors = total = 0
    for reference, hypothesis in pairs:
        ref, hyp = _words(reference), _words(hypothesis)
        if not ref:
            continue
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            prev, row[0] = row[0], i
            for j, h in enumerate(hyp, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
        errors += row[-1]
        total += len(ref)
    return errors / total if total else None


# -- what the model did --------------------------------------------------------


class BatchRecorder:
    """Wraps a MicroBatcher's submit and batch function to record every job's arrival and every
    forward pass: (start, end, size, mean queue wait of its jobs, spread of their arrivals).

    Instrumentation only: the batcher still queues, forms and runs batches as it always does.
    """

    def __init__(self, batcher):
        self._batcher = batcher
        self._inner_run: Callable = batcher._run_batch
        self._inner_submit: Callable = batcher.submit
        self._lock = threading.Lock()
        self._arrivals: dict[int, float] = {}
        self.records: list[tuple[float, float, int, float, float]] = []
        batcher._run_batch = self._run
        batcher.submit = self._submit

    async def _submit(self, job, **kwargs):
        self._arrivals[id(job)] = time.perf_counter()
        try:
            return await self._inner_submit(job, **kwargs)
        finally:
            self._arrivals.pop(id(job), None)

    def _run(self, jobs):
        started = time.perf_counter()
        arrivals = [self._arrivals.get(id(job), started) for job in jobs]
        try:
            return self._inner_run(jobs)
        finally:
            record = (
                started,
                time.perf_counter(),
                len(jobs),
                started - sum(arrivals) / len(arrivals),
                max(arrivals) - min(arrivals),
            )
            with self._lock:
                self.records.append(record)

    def mark(self) -> int:
        return len(self.records)

    def since(self, mark: int) -> list[tuple[float, float, int, float, float]]:
        return self.records[mark:]

    def restore(self) -> None:
        self._batcher._run_batch = self._inner_run
        del self._batcher.submit


def batch_summary(blocks: Sequence[Sequence[tuple]], wall: float) -> dict:
    """What the model did during `wall` seconds (over blocks of forward passes, each block one
    measured stretch): passes, sizes, the share of time it was busy, idle gaps within blocks."""
    records = [r for block in blocks for r in block]
    sizes = [r[2] for r in records]
    busy = sum(r[1] - r[0] for r in records)
    gaps = [b[0] - a[1] for block in blocks for a, b in itertools.pairwise(block) if b[0] >= a[1]]
    return {
        "forward_passes": len(records),
        "jobs": sum(sizes),
        "mean_batch_size": float(np.mean(sizes)) if sizes else None,
        "batch_sizes": {str(k): v for k, v in sorted(Counter(sizes).items())},
        "model_busy_s": busy,
        "model_busy_s_per_job": busy / sum(sizes) if sizes else None,
        "model_utilisation": busy / max(wall, 1e-9),
        "mean_idle_gap_between_batches_s": float(np.mean(gaps)) if gaps else None,
        "mean_queue_wait_s": (sum(r[3] * r[2] for r in records) / sum(sizes) if sizes else None),
        "mean_arrival_spread_s": float(np.mean([r[4] for r in records])) if records else None,
    }


class CpuMeter:
    """CPU seconds this process and everything else on the machine used (Linux /proc)."""

    def __init__(self):
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = self._read()

    def _read(self) -> tuple[float, float] | None:
        try:
            fields = pathlib.Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
            own = pathlib.Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            busy = user + nice + system + irq + softirq + steal
            return busy / self._tick, (int(own[11]) + int(own[12])) / self._tick
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> dict:
        end = self._read()
        if end is None or self._start is None:
            return {"this_process_cpu_s": None, "other_processes_cpu_s": None}
        busy, own = end[0] - self._start[0], end[1] - self._start[1]
        return {"this_process_cpu_s": own, "other_processes_cpu_s": max(busy - own, 0.0)}


def add_cpu(a: dict, b: dict) -> dict:
    return {k: (a[k] + b[k]) if a[k] is not None and b[k] is not None else None for k in a}


# -- environment and memory ----------------------------------------------------


def machine() -> dict:
    """When and where a benchmark ran: date, host, Python, platform and CPUs."""
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
    }


def revision() -> dict:
    """The commit measured, whether tracked files differed from it, and the load average."""
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": list(os.getloadavg()),
    }


def environment(engine, settings) -> dict:
    import grpc
    import torch
    import transformers

    device = str(engine.device)
    return {
        **machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "grpcio": grpc.__version__,
        "device": device,
        "dtype": str(engine.dtype),
        "gpu": torch.cuda.get_device_name(engine.device) if device.startswith("cuda") else None,
        "model": engine.name,
        "model_parameters_mib": round(engine.memory_bytes / MiB, 1),
        "max_batch_size": settings.max_batch_size,
        "max_batch_wait_ms": settings.max_batch_wait_ms,
        "max_queue": settings.max_queue,
        **revision(),
    }


def _cpu_model() -> str | None:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def rss_mib() -> float:
    """This process's resident memory now."""
    try:
        pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MiB
    except (OSError, ValueError, IndexError):
        return peak_rss_mib()


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MiB if platform.system() == "Darwin" else peak / 1024  # bytes vs KiB


def process_memory(rss_after_load_mib: float, device: str) -> dict:
    """This process's memory: after the model loaded, at its peak, and CUDA's peaks."""
    return {
        "rss_after_load_mib": rss_after_load_mib,
        "peak_rss_mib": peak_rss_mib(),
        **cuda_memory(device),
    }


def cuda_memory(device: str) -> dict:
    import torch

    if not device.startswith("cuda"):
        return {}
    return {
        "cuda_max_allocated_mib": torch.cuda.max_memory_allocated(device) / MiB,
        "cuda_max_reserved_mib": torch.cuda.max_memory_reserved(device) / MiB,
    }


# -- measured blocks of work ------------------------------------------------------------------


@dataclass
class Block:
    """One measured stretch of work on one path: what it did, how long, the model's forward
    passes meanwhile, and the CPU time used."""

    items: list
    wall: float
    batches: list[tuple]
    cpu: dict


def pooled(blocks: Sequence[Block]) -> tuple[list, float]:
    """What blocks did together: every item, and their wall seconds."""
    return [item for b in blocks for item in b.items], sum(b.wall for b in blocks)


def costs(blocks: Sequence[Block], wall: float) -> dict:
    """The model's forward passes and the CPU time of blocks together (`wall`: their seconds)."""
    return {"batches": batch_summary([b.batches for b in blocks], wall), "cpu": cpu_of(blocks)}


def cpu_of(blocks: Sequence[Block]) -> dict:
    """CPU seconds of blocks together, and the cores other processes used meanwhile."""
    total = blocks[0].cpu
    for b in blocks[1:]:
        total = add_cpu(total, b.cpu)
    wall = sum(b.wall for b in blocks)
    other = total["other_processes_cpu_s"]
    return {**total, "other_processes_cores": other / wall if other is not None else None}


async def interleaved(
    measure: Callable, paths: dict[str, Callable], blocks: int
) -> dict[str, list[Block]]:
    """Each path measured on the same blocks of work, interleaved (AB, BA, ...), so that a drift
    in the machine's speed (other processes) falls on every path alike."""
    out: dict[str, list[Block]] = {name: [] for name in paths}
    for i in range(blocks):
        names = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in names:
            out[name].append(await measure(paths[name], i))
    return out


async def timed_block(
    worker: Callable, concurrency: int, items: list, recorder: BatchRecorder
) -> Block:
    """Runs `concurrency` workers to the end, measuring wall time, passes and CPU."""
    import asyncio

    mark = recorder.mark()
    cpu = CpuMeter()
    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - start
    return Block(items, wall, recorder.since(mark), cpu.stop())


# -- the command line every benchmark shares ---------------------------------------------------


def bench_parser(
    name: str, doc: str | None, sections: str, service: bool = True, audio: bool = False
):
    """The options of `python -m bench.NAME`: --out, --name, --quick, --sections; for a
    benchmark that serves a model in-process, --device and --log-level; with `audio`, --audio
    (a folder of clips)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{name}", description=(doc or "").split("\n")[0]
    )
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results")
    parser.add_argument("--name", default=name, help="result file names: NAME.json, NAME.md")
    parser.add_argument("--quick", action="store_true", help="less work, for a quick look")
    parser.add_argument("--sections", default=sections, help="comma-separated subset")
    if service:
        parser.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: the service's)")
        parser.add_argument(
            "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
        )
    if audio:
        parser.add_argument(
            "--audio",
            type=existing(pathlib.Path.is_dir, "folder"),
            default=str(SHARED / "audio" / "librivox"),  # a string: checked like a given one
            help="folder of .wav/.flac clips (default: ../shared/audio/librivox)",
        )
    return parser


def existing(check: Callable[[pathlib.Path], bool], what: str) -> Callable[[str], pathlib.Path]:
    """An argparse type: a path that passes `check` (e.g. Path.is_file), else an error that
    names `what` it should be."""
    import argparse

    def path(text: str) -> pathlib.Path:
        if not check(pathlib.Path(text)):
            raise argparse.ArgumentTypeError(f"no {what} at {text}")
        return pathlib.Path(text)

    return path


def run_and_write(args, run: Callable, report: ModuleType, log: Callable[[str], None]) -> int:
    """Runs the benchmark; writes NAME.json and NAME.md (by `report`: bench.NAME_report) under
    --out and prints the tables."""
    import asyncio

    results = asyncio.run(run(args))
    print(write_results(args.out, args.name, results, report))
    log(f"wrote {args.out / args.name}.json and .md in {results['duration_s']:.0f} s")
    return 0
