"""Cascade benchmark: speech-to-speech through the translate service's cascade path (ASR ->
text model -> TTS over the suite's services) against the same three services called directly.

    python -m bench.cascade [--quick] [--out bench/results] [--sections overhead,rtf]

Runs the ASR, TTS and translate services as child processes (bench.cascade_stack; the translate
service's peers are the other two) and calls them from this process over gRPC. Real models only:
the ASR service serves whisper-tiny.en and the TTS service the real English VITS voice
vits-en-joe, both from ../shared/models, on real English speech (the LibriVox clips of
../shared/audio); without ../shared the benchmark says so and exits 1, measuring nothing.
The translate service's text model is a tiny random NLLB (no translation weights can be had
here), and the TTS service also serves a tiny random VITS voice of French (letters: every
character the tiny NLLB writes) and a tiny random CSM (the one model that clones a voice).

- overhead: on every clip, one TranslateSpeech call on the cascade path, and the three
  services called by this process one after the other with the inputs the cascade sends them
  (bench.cascade_stack.Stack.direct), in alternating order, over several rounds, one call at a
  time; three ways:
  - revoiced: English to English, the real voice (preset "default"): ASR and TTS, no text model;
  - translated: English to French: ASR, the tiny NLLB, the tiny French VITS (random weights:
    the stage times are the service's, not a real translator's or voice's);
  - cloned: English to English in the speaker's own voice (the cascade's default), on the tiny
    CSM: the cascade picks each segment's reference from the source (a speaker test) and sends
    it to TTS; the direct path sends the same reference, chosen before its TTS stage is timed.
  The target: a clip's cascade latency at most 1.1x the sum of the three direct calls' latencies
  (the median, over clips and rounds, of the per-clip ratio).
- rtf: speech-to-speech real-time factor through the cascade (revoiced, the real models) with
  1, 4 and 16 files at once (closed loop: each caller sends its next clip when the last
  returns): each file's latency / its audio seconds, the run's wall time / the audio seconds it
  translated, and audio seconds translated per wall second.

Writes NAME.json and, by bench.cascade_report (the targets and the tables), NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pathlib
import signal
import sys
import time

import numpy as np

from bench import cascade_report
from bench.cascade_stack import SAMPLE_RATE, STAGES, Stack, Variant
from bench.common import (
    SHARED,
    Clip,
    bench_parser,
    load_clips,
    machine,
    revision,
    run_and_write,
    summary,
    word_error_rate,
)

CONCURRENCY = (1, 4, 16)
DEFAULT_ASR = SHARED / "models" / "whisper-tiny.en"
DEFAULT_TTS = SHARED / "models" / "vits-en-joe"
DEFAULT_AUDIO = SHARED / "audio" / "librivox"


class Plan:
    def __init__(self, quick: bool):
        self.quick = quick
        #: Rounds over every clip (one cascade call and one direct sequence each), per way.
        self.rounds = (
            {"revoiced": 1, "translated": 1, "cloned": 1}
            if quick
            else {"revoiced": 3, "translated": 2, "cloned": 2}
        )
        #: Files translated per concurrency (at least one per caller).
        self.files = {1: 2, 4: 4, 16: 16} if quick else {1: 5, 4: 8, 16: 16}


def _log(message: str) -> None:
    print(f"[bench.cascade] {message}", file=sys.stderr, flush=True)


def variants(stack: Stack) -> dict[str, Variant]:
    names = stack.names()
    return {
        "revoiced": Variant("revoiced", "en", names["real_voice"], "default"),
        "translated": Variant("translated", "fr", names["tiny_vits"], "default"),
        "cloned": Variant("cloned", "en", names["tiny_csm"]),
    }


async def run(args: argparse.Namespace) -> dict:
    # A SIGTERM (a timeout) ends the run through the finally below: the services stop too.
    signal.signal(signal.SIGTERM, _terminated)
    plan = Plan(args.quick)
    sections = set(args.sections.split(","))
    began = time.perf_counter()
    clips = load_clips(args.audio, SAMPLE_RATE)
    stack = Stack(args)
    try:
        _log("starting the ASR, TTS and translate services")
        await stack.start()
        _log(f"services ready in {stack.startup_s:.1f} s")
        ways = variants(stack)
        results: dict = {
            "benchmark": "cascade",
            "quick": args.quick,
            "environment": {
                **machine(),
                **_versions(),
                **revision(),
                "services": "child processes (python -m speechmesh.cli serve), default settings",
                "startup_s": stack.startup_s,
            },
            "models": {
                "asr": str(args.asr_model),
                "tts_real_voice": str(args.tts_model),
                "tiny_random": {k: str(v) for k, v in stack.tiny.items()},
                "served": stack.models,
            },
            "clips": {
                "folder": str(args.audio),
                "files": [{"name": c.name, "seconds": round(c.seconds, 3)} for c in clips],
                "total_s": sum(c.seconds for c in clips),
            },
            "ways": {
                name: {"target": v.target, "synthesis_model": v.synthesis_model, "voice": v.preset}
                for name, v in ways.items()
            },
        }
        if "overhead" in sections:
            results["overhead"] = {
                "rounds": plan.rounds,
                "runs": [
                    await _overhead(stack, ways[name], clips, rounds)
                    for name, rounds in plan.rounds.items()
                ],
            }
        if "rtf" in sections:
            results["rtf"] = {
                "way": "revoiced",
                "synthesis_model": ways["revoiced"].synthesis_model,
                "runs": [
                    await _rtf(stack, ways["revoiced"], clips, c, plan.files[c])
                    for c in CONCURRENCY
                ],
            }
    finally:
        await stack.stop()
    results["environment"]["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = time.perf_counter() - began
    return results


async def _overhead(stack: Stack, way: Variant, clips: list[Clip], rounds: int) -> dict:
    _log(f"{way.name}: warm-up")
    await stack.cascade(clips[0], way)  # first calls of a way cost more: once on each path
    await stack.direct(clips[0], way)
    pairs = []
    cpu = stack.cpu()
    started = time.perf_counter()
    for r, (k, clip) in itertools.product(range(rounds), enumerate(clips)):
        order = ("cascade", "direct") if (r + k) % 2 == 0 else ("direct", "cascade")
        done = {}
        for path in order:
            done[path] = await getattr(stack, path)(clip, way)
        pairs.append({"clip": clip.name, "clip_s": clip.seconds, "round": r, **done})
    wall = time.perf_counter() - started
    used = cpu.stop()
    figures = _overhead_figures(way, pairs, wall, used)
    heard = {p["clip"]: p["direct"]["transcript"] for p in pairs}
    figures["asr_wer"] = word_error_rate([(c.reference, heard[c.name]) for c in clips])
    _log(
        f"{way.name}: cascade p50 {figures['cascade_latency_s']['p50']:.3f} s, direct sum p50"
        f" {figures['direct_sum_latency_s']['p50']:.3f} s, cascade/sum per clip p50"
        f" {figures['ratio']['p50']:.3f}"
    )
    return figures


def _overhead_figures(way: Variant, pairs: list[dict], wall: float, cpu: dict) -> dict:
    cascade = [p["cascade"]["latency_s"] for p in pairs]
    direct = [p["direct"]["latency_s"] for p in pairs]
    ratios = [a / b for a, b in zip(cascade, direct, strict=True)]
    stage = {
        path: {
            s: summary([p[path]["stages_s"][s] for p in pairs if s in p[path]["stages_s"]])
            for s in STAGES
            if any(s in p[path]["stages_s"] for p in pairs)
        }
        for path in ("cascade", "direct")
    }
    # The cascade's time outside its three stages: decoding, planning, references, layout, reply.
    outside = [p["cascade"]["latency_s"] - sum(p["cascade"]["stages_s"].values()) for p in pairs]
    texts_same = all(p["cascade"]["texts"] == p["direct"]["texts"] for p in pairs)
    return {
        "way": way.name,
        "target_language": way.target,
        "synthesis_model": way.synthesis_model,
        "voice": way.preset or "the speaker's own (cloned)",
        "pairs": len(pairs),
        "segments_per_clip": summary([p["cascade"]["segments"] for p in pairs]),
        "voices": sorted({v for p in pairs for v in p["cascade"]["voices"]}),
        "models": pairs[0]["cascade"]["models"],
        "same_texts": texts_same,
        "cascade_latency_s": summary(cascade),
        "direct_sum_latency_s": summary(direct),
        "ratio": summary(ratios),
        "ratio_of_p50": float(np.median(cascade) / np.median(direct)),
        "ratio_of_p90": float(np.percentile(cascade, 90) / np.percentile(direct, 90)),
        "overhead_s": summary([a - b for a, b in zip(cascade, direct, strict=True)]),
        "stages_s": stage,
        "cascade_outside_stages_s": summary(outside),
        "by_clip": _by_clip(pairs),
        "wall_s": wall,
        "cpu_s": cpu,
        "other_processes_cores": (cpu.get("other") or 0.0) / wall if wall else None,
    }


def _by_clip(pairs: list[dict]) -> list[dict]:
    out = []
    for name in dict.fromkeys(p["clip"] for p in pairs):
        mine = [p for p in pairs if p["clip"] == name]
        c = float(np.median([p["cascade"]["latency_s"] for p in mine]))
        d = float(np.median([p["direct"]["latency_s"] for p in mine]))
        out.append(
            {
                "clip": name,
                "clip_s": mine[0]["clip_s"],
                "segments": mine[0]["cascade"]["segments"],
                "cascade_p50_s": c,
                "direct_sum_p50_s": d,
                "ratio_of_p50": c / d,
            }
        )
    return out


async def _rtf(stack: Stack, way: Variant, clips: list[Clip], concurrency: int, files: int):
    files = max(files, concurrency)
    _log(f"rtf: {files} files, {concurrency} at once")
    counter = itertools.count()
    records: list[tuple[Clip, float, float]] = []
    errors: list[str] = []

    async def caller() -> None:
        while (k := next(counter)) < files:
            clip = clips[k % len(clips)]
            try:
                latency, reply = await stack.cascade_call(clip, way)
            except Exception as error:  # reported in the results
                errors.append(repr(error))
                continue
            records.append((clip, latency, reply.translated_audio_duration.ToNanoseconds() / 1e9))

    cpu = stack.cpu()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    used = cpu.stop()
    audio = sum(clip.seconds for clip, _, _ in records)
    figures = {
        "concurrency": concurrency,
        "files": len(records),
        "errors": errors,
        "audio_s": audio,
        "speech_out_s": sum(out for _, _, out in records),
        "wall_s": wall,
        "wall_over_audio": wall / audio if audio else None,
        "audio_s_per_s": audio / wall,
        "latency_s": summary([lat for _, lat, _ in records]),
        "rtf": summary([lat / clip.seconds for clip, lat, _ in records]),
        "cpu_s": used,
        "other_processes_cores": (used.get("other") or 0.0) / wall,
    }
    _log(
        f"rtf x {concurrency}: wall/audio {figures['wall_over_audio']:.3f},"
        f" {figures['audio_s_per_s']:.2f} audio s/s, file RTF p50 {figures['rtf']['p50']:.3f}"
    )
    return figures


def _terminated(*_) -> None:
    raise SystemExit(143)


def _versions() -> dict:
    import grpc
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "torch_threads_per_service": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "grpcio": grpc.__version__,
        "device": "cpu",
    }


def missing_shared(args: argparse.Namespace) -> list[str]:
    """What of the real weights and speech is not there."""
    wanted = {
        "ASR model (--asr-model)": args.asr_model / "config.json",
        "TTS voice (--tts-model)": args.tts_model / "config.json",
        "speech clips (--audio)": args.audio,
    }
    return [f"{what}: {path}" for what, path in wanted.items() if not path.exists()]


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("cascade", __doc__, "overhead,rtf")
    parser.add_argument("--asr-model", type=pathlib.Path, default=DEFAULT_ASR)
    parser.add_argument("--tts-model", type=pathlib.Path, default=DEFAULT_TTS)
    parser.add_argument("--audio", type=pathlib.Path, default=DEFAULT_AUDIO)
    args = parser.parse_args(argv)
    missing = missing_shared(args)
    if missing:
        _log(
            f"real weights and speech not found (../shared is expected at {SHARED}); this"
            " benchmark measures real models only, so nothing was measured:\n  "
            + "\n  ".join(missing)
        )
        return 1
    return run_and_write(args, run, cascade_report, _log)


if __name__ == "__main__":
    sys.exit(main())
