"""TTS benchmark: the gRPC service against the same synthesizer called in-process.

    python -m bench.tts [--model PATH] [--quick] [--out bench/results] [--sections ...]

Starts the TTS service in this process (ServiceHost + build_app, port 0, no metrics server,
voices in a temporary folder) and talks to it over a real grpc.aio channel, like any client.
Without --model it runs on a tiny random CSM built offline (the model hub is out of reach
here): the figures then measure the service around the model, not speech quality; random
weights never write the end-of-audio frame, so every sentence runs to its length cap. The model
must clone voices (CSM). A voice is created through CreateVoice from a real LibriVox recording
(resampled by the service) and speaks every call. On the loaded model:

- unary: Synthesize of one English sentence per call from 1, 4 and 16 concurrent callers, and
  the same calls through the same synthesizer and batcher in-process (`Synthesizer.speak`):
  audio seconds produced per wall second as a ratio, real-time factor (call latency / audio
  seconds) and, for one caller, time to first audio (the call's latency: a unary call returns
  all its audio at once);
- streams: StreamingSynthesize of a three-sentence text sent word by word at a language
  model's pace (one piece every 30 ms), 1 and 4 concurrent streams, gRPC and the same stream
  through `SynthesisStream.run` in-process: time from sending the piece that completes the first
  sentence (it carries the start of the next) to the first audio chunk, split at the forward
  pass that spoke that sentence (wait, pass, delivery); and the same first sentence spoken alone
  in-process (`Synthesizer.speak_sentence`), the engine's own time for it;
- voices: the same sentence and seed through Synthesize with the stored voice
  (`voice="voices/..."`) and with the recording inline (`reference_audio`, decoded, validated and
  Mimi-encoded on every call): both latencies and the time the stored voice saves.

Every call has a fixed seed and both paths make the same calls with the same seeds, so they do
identical work (same seed, text and voice: same audio); the audio seconds of each path are
reported to show it. Every block of a run repeats the same calls, and a warm-up makes each of
them once first: on CPU the codec's first decode of an audio length costs far more than later
ones, and would otherwise fall on whichever path meets that length first. Paths compared run on
the same blocks of work, interleaved (direct, gRPC, then gRPC, direct, ...), so that other load
on the machine falls on both alike; the CPU other processes used meanwhile is recorded beside
each figure. The gRPC client shares this process (and its interpreter) with the service, so its
own work counts against the gRPC path. Torch keeps its default thread settings, as the service
does (recorded in the environment block). Writes NAME.json and, by bench.tts_report (the
headline figures, the targets and the tables), NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys
import time

import numpy as np

from bench import tts_report
from bench.common import SHARED, bench_parser, existing, run_and_write, summary
from bench.report import fmt
from bench.served import measuring
from bench.translate import SENTENCES
from bench.tts_paths import PIECE_INTERVAL_S, UNARY_SEED, VOICE_NAME, VOICE_SEED, Bench

CONCURRENCY = (1, 4, 16)
STREAM_CONCURRENCY = (1, 4)
DEFAULT_REFERENCE = SHARED / "audio" / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"


class Plan:
    def __init__(self, quick: bool):
        self.quick = quick
        #: Unary calls per block, by concurrency (at least one call per caller).
        self.unary_calls = {1: 2, 4: 4, 16: 16} if quick else {1: 8, 4: 16, 16: 32}
        #: Blocks per path (interleaved AB, BA, ...).
        self.unary_blocks = 2 if quick else 3
        #: Blocks per path of the stream runs, by concurrent streams.
        self.stream_blocks = {1: 3, 4: 2} if quick else {1: 6, 4: 4}
        #: Calls per voice (stored, inline), interleaved.
        self.voice_rounds = 4 if quick else 10


def _log(message: str) -> None:
    print(f"[bench.tts] {message}", file=sys.stderr, flush=True)


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-3


async def run(args: argparse.Namespace) -> dict:
    plan = Plan(args.quick)
    bench = Bench(args, plan)
    sections = set(args.sections.split(","))
    async with measuring("tts", args, bench, _log) as results:
        env = results["environment"]
        env["torch_interop_threads"] = _interop_threads()
        env["sentence_pause_ms"] = bench.settings.sentence_pause_ms
        results["voice"] = {
            "name": VOICE_NAME,
            "reference": bench.reference.name,
            "reference_file_s": bench.reference.seconds,
            "stored_reference_s": bench.voice_seconds,
            "prompt_frames": bench.prompt_frames,
        }
        results["warmup_s"] = await _warm_up(bench, plan, "unary" in sections)
        if "unary" in sections:
            results["unary"] = await _unary(bench, plan)
        if "streams" in sections:
            results["streams"] = await _streams(bench, plan)
        if "voices" in sections:
            results["voices"] = await _voices(bench, plan)
    return results


async def _warm_up(bench: Bench, plan: Plan, unary: bool) -> float:
    """Every call measured later, once, so that neither path meets a new audio length first:
    the codec's first decode of a length costs far more than later ones on CPU."""
    _log("warm-up")
    warm = time.perf_counter()
    calls = max(plan.unary_calls.values()) if unary else 1
    await asyncio.gather(
        *(bench.direct_unary(SENTENCES[k % len(SENTENCES)], UNARY_SEED + k) for k in range(calls))
    )
    await bench.grpc_unary(SENTENCES[0], UNARY_SEED)
    await bench.grpc_unary(bench.first_sentence, VOICE_SEED)
    await bench.grpc_unary(bench.first_sentence, VOICE_SEED, "inline")
    await bench.grpc_stream({})
    await bench.direct_stream({})
    seconds = time.perf_counter() - warm
    _log(f"warm-up done in {seconds:.1f} s")
    return seconds


async def _unary(bench: Bench, plan: Plan) -> dict:
    runs = []
    for c in CONCURRENCY:
        run_ = await bench.compare("unary", (c,), plan.unary_blocks, "audio_s_per_s")
        direct, via_grpc = run_["direct"], run_["grpc"]
        _log(
            f"unary x {c}: direct {direct['audio_s_per_s']:.2f}, gRPC"
            f" {via_grpc['audio_s_per_s']:.2f} audio s/s, ratio {run_['grpc_over_direct']:.3f};"
            f" RTF p50 {fmt(direct['rtf']['p50'], 3)} / {fmt(via_grpc['rtf']['p50'], 3)}"
        )
        same = _same(via_grpc["audio_s"], direct["audio_s"])
        runs.append({"concurrency": c, **run_, "same_audio_s": same})
    return {
        "calls": "call k of every block: sentence k of bench.translate.SENTENCES, seed"
        f" {UNARY_SEED} + k, voice {VOICE_NAME}",
        "calls_per_block": {str(c): max(plan.unary_calls[c], c) for c in CONCURRENCY},
        "blocks_per_path": plan.unary_blocks,
        "runs": runs,
    }


async def _streams(bench: Bench, plan: Plan) -> dict:
    runs = []
    for c in STREAM_CONCURRENCY:
        # At one stream, also the first sentence alone: the engine's own time for it.
        more = {"first_sentence_alone": bench.alone} if c == 1 else {}
        run_ = await bench.compare("stream", (c,), plan.stream_blocks[c], **more)
        first = {path: figures["first_audio_s"]["p50"] for path, figures in run_.items()}
        run_ = {"concurrency": c, **run_}
        run_["same_audio_s"] = _same(run_["grpc"]["audio_s"], run_["direct"]["audio_s"])
        if more:
            run_["grpc_first_audio_over_alone_s"] = first["grpc"] - first["first_sentence_alone"]
        runs.append(run_)
        _log(
            f"streams x {c}: first audio p50 "
            + ", ".join(f"{path.replace('_', ' ')} {fmt(s, 3)} s" for path, s in first.items())
        )
    return {
        "text": bench.stream_text,
        "pieces": len(bench.pieces),
        "piece_interval_s": PIECE_INTERVAL_S,
        "first_sentence": bench.first_sentence,
        "first_sentence_completed_by_piece": bench.completing_piece,
        "runs": runs,
    }


async def _voices(bench: Bench, plan: Plan) -> dict:
    check = await bench.voice_check()
    rounds = []
    for i in range(plan.voice_rounds):
        order = ["stored", "inline"] if i % 2 == 0 else ["inline", "stored"]
        rounds.append(await bench.voice_round(order))
    stored = [r["stored"][0] for r in rounds]
    inline = [r["inline"][0] for r in rounds]
    saved = [b - a for a, b in zip(stored, inline, strict=True)]
    audio = {p: sum(r[p][1] for r in rounds) for p in ("stored", "inline")}
    _log(
        f"voices: stored {np.median(stored):.3f} s, inline {np.median(inline):.3f} s,"
        f" saved {np.median(saved):.3f} s (p50)"
    )
    return {
        "text": bench.first_sentence,
        "calls_per_path": len(rounds),
        **check,
        "stored_latency_s": summary(stored),
        "inline_latency_s": summary(inline),
        "saved_s": summary(saved),
        "saved_p50_difference_s": float(np.median(inline) - np.median(stored)),
        "audio_s": audio,
        "same_audio_s": _same(audio["stored"], audio["inline"]),
    }


def _interop_threads() -> int:
    import torch

    return torch.get_num_interop_threads()


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("tts", __doc__, "unary,streams,voices")
    parser.add_argument("--model", help="CSM folder or hub id (default: tiny random)")
    parser.add_argument(
        "--reference",
        type=existing(pathlib.Path.is_file, "reference recording"),
        default=str(DEFAULT_REFERENCE),
        help="reference recording of the voice (default: a LibriVox clip in ../shared/audio)",
    )
    parser.add_argument(
        "--transcript", help="its exact words (default: from the MANIFEST.tsv above it)"
    )
    return run_and_write(parser.parse_args(argv), run, tts_report, _log)


if __name__ == "__main__":
    sys.exit(main())
