"""SenseVoice against Whisper in the ASR service, on the same CPU and clips, in one run.

    python -m bench.sensevoice --model ../shared/models/whisper-tiny.en [--quick]

Serves the ASR service in this process twice: once with Whisper (the --model checkpoint) as its
default on the default engine (engine=auto: CTranslate2, int8 on a CPU) and SenseVoiceSmall as
a second model of the same service, and once with the same Whisper on the transformers engine.
Every path is called over a real grpc.aio channel, like any client, naming its model:

With --whisper-base (the tests build it: tests/whisper_base.py), multilingual Whisper base on
CTranslate2 is served beside them as a third Whisper path.

- unary Recognize of the LibriVox clips (WAV uploads) from 1 and 8 closed-loop callers:
  throughput (audio seconds per wall second) and latency;
- StreamingRecognize at 1 and 4 concurrent live streams (LINEAR16 in 100 ms chunks, each sent
  when a microphone would have captured it, interim results on, a final at the first pause:
  sentence_pause 100 ms): time from the end of speech to the final result, and throughput.

No SenseVoice weights can be had here, so SenseVoiceSmall runs with random weights of its real
shape (512 wide, 50 + 20 SAN-M blocks, 25,055 tokens: 234M parameters, written once to a
temporary folder in the published layout). A non-autoregressive CTC model costs the same
whatever its weights say, so its speed is the real one; its transcripts are noise, so no WER is
given for it. Whisper's are real (its WER is reported). Paths compared with each other run on
the same blocks of requests, interleaved, so that other load on the machine falls on all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pathlib
import sys
import tempfile
import time

from bench import sensevoice_report
from bench.asr_served import Served, Streams
from bench.common import (
    SHARED,
    Block,
    bench_parser,
    cpu_of,
    environment,
    interleaved,
    load_clips,
    pooled,
    run_and_write,
    summary,
    word_error_rate,
)

UNARY_CONCURRENCY = (1, 8)
STREAM_CONCURRENCY = (1, 4)
SENSEVOICE = "sensevoice"
WHISPER_BASE = "whisper-base"
#: Where the tests build multilingual Whisper base (tests/whisper_base.py), if they did.
WHISPER_BASE_CACHE = (
    pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    / "speechmesh-tests"
    / "whisper-base"
)
#: encoder_conf of the published SenseVoiceSmall (FunAudioLLM/SenseVoiceSmall config.yaml).
SMALL_ENCODER = {
    "output_size": 512,
    "attention_heads": 4,
    "linear_units": 2048,
    "num_blocks": 50,
    "tp_blocks": 20,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.1,
    "input_layer": "pe",
    "pos_enc_class": "SinusoidalPositionEncoder",
    "normalize_before": True,
    "kernel_size": 11,
    "sanm_shfit": 0,
    "selfattention_layer_type": "sanm",
}


def _log(message: str) -> None:
    print(f"[bench.sensevoice {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def small_random_checkpoint() -> pathlib.Path:
    """SenseVoiceSmall's published layout with random weights of its real shape, built once."""
    import torch
    import yaml

    from speechmesh.asr.engines.sensevoice_checkpoint import CONFIG, WEIGHTS
    from speechmesh.asr.engines.sensevoice_model import EncoderConfig, SenseVoiceSmall
    from speechmesh.tiny.models import build_tiny
    from speechmesh.tiny.sensevoice import VOCAB_SIZE

    dest = pathlib.Path(tempfile.gettempdir()) / "speechmesh-bench" / "sensevoice-small-random"
    if (dest / "done").is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    build_tiny("sensevoice", dest)  # files, vocabulary, front end and marker: the real layout
    config = yaml.safe_load((dest / CONFIG).read_text())
    config["encoder_conf"] = SMALL_ENCODER
    (dest / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(0)
    model = SenseVoiceSmall(560, VOCAB_SIZE, EncoderConfig.from_conf(SMALL_ENCODER))
    torch.save(model.state_dict(), dest / WEIGHTS)
    (dest / "done").write_text("")
    return dest


class Named:
    """A model of a served ASR service, called by name: what Streams needs of a Served."""

    def __init__(self, served: Served, name: str, language: str = ""):
        self.served = served
        self.pb = served.pb
        self.stub = served.stub
        self.recorder = served.recorder
        self.models = served.models
        self.model = served.models.get(name)
        self.engine = self.model.engine
        self.recognizer = self.model.recognizer
        self.config = served.pb.RecognitionConfig(model=name, language_code=language)

    async def grpc_recognize(self, index: int, clip) -> str:
        request = self.pb.RecognizeRequest(
            request_id=f"bench-{index}", config=self.config, audio=clip.data
        )
        return (await self.stub.Recognize(request)).transcript


async def unary_block(named: Named, clips, concurrency: int, total: int) -> Block:
    from bench.common import timed_block

    counter = itertools.count()
    records: list = []

    async def caller(_worker: int) -> None:
        while (index := next(counter)) < total:
            clip = clips[index % len(clips)]
            sent = time.perf_counter()
            text = await named.grpc_recognize(index, clip)
            records.append((clip, time.perf_counter() - sent, text))

    return await timed_block(caller, concurrency, records, named.recorder)


def unary_figures(blocks: list[Block], concurrency: int, real_words: bool) -> dict:
    records, wall = pooled(blocks)
    audio = sum(clip.seconds for clip, _, _ in records)
    return {
        "concurrency": concurrency,
        "requests": len(records),
        "audio_s": audio,
        "wall_s": wall,
        "audio_s_per_s": audio / wall,
        "latency_s": summary([lat for _, lat, _ in records]),
        "rtf": summary([lat / clip.seconds for clip, lat, _ in records]),
        "wer": word_error_rate([(c.reference, t) for c, _, t in records]) if real_words else None,
        "cpu": cpu_of(blocks),
    }


async def run(args: argparse.Namespace) -> dict:
    from speechmesh.runtime.logging import configure_logging

    configure_logging(args.log_level, "json")
    began = time.perf_counter()
    quick = args.quick
    _log("SenseVoiceSmall, random weights of the real shape: building (once) ...")
    small = await asyncio.to_thread(small_random_checkpoint)
    extras = [f"{SENSEVOICE}={small}"]
    if args.whisper_base:
        extras.append(f"{WHISPER_BASE}={args.whisper_base}")
    whisper_ct2 = Served(args, "auto", extra_models=",".join(extras))
    await whisper_ct2.start()
    whisper_tf = Served(args, "transformers")
    await whisper_tf.start()
    paths = {
        "whisper_ctranslate2": Named(whisper_ct2, whisper_ct2.model.name, "en"),
        "whisper_transformers": Named(whisper_tf, whisper_tf.model.name, "en"),
        SENSEVOICE: Named(whisper_ct2, SENSEVOICE, "en"),
    }
    if args.whisper_base:
        paths["whisper_base_ctranslate2"] = Named(whisper_ct2, WHISPER_BASE, "en")
    clips = load_clips(args.audio, 16000)
    env = environment(whisper_ct2.engine, whisper_ct2.settings)
    env["models"] = {
        name: {
            "model": n.model.name,
            "engine": n.engine.family,
            "runtime": n.engine.runtime,
            "dtype": str(n.engine.dtype),
            "weights_mib": round(n.engine.memory_bytes / (1 << 20), 1),
            "random_weights": n.engine.random_weights,
        }
        for name, n in paths.items()
    }
    _log(f"models: {env['models']}; {len(clips)} clips")
    results: dict = {"benchmark": "sensevoice", "quick": quick, "environment": env}
    try:
        _log("warm-up")
        for named in paths.values():
            await unary_block(named, clips, 2, 2)
        runs = []
        for c in UNARY_CONCURRENCY:
            total = max(c * 2, 8 if quick else 16)
            blocks = 1 if quick else 2

            measured = await interleaved(
                lambda named, _i, c=c, total=total: unary_block(named, clips, c, total),
                paths,
                blocks,
            )
            figures = {name: unary_figures(measured[name], c, name != SENSEVOICE) for name in paths}
            ratios = {
                f"sensevoice_over_{name}": figures[SENSEVOICE]["audio_s_per_s"]
                / figures[name]["audio_s_per_s"]
                for name in paths
                if name != SENSEVOICE
            }
            _log(
                f"unary x{c}: "
                + "; ".join(f"{k} {v['audio_s_per_s']:.2f} audio s/s" for k, v in figures.items())
                + "; "
                + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
            )
            runs.append({"concurrency": c, **figures, "ratios": ratios})
        results["unary"] = runs
        results["streams"] = await _streams(paths, clips, quick)
    finally:
        await whisper_tf.stop()
        await whisper_ct2.stop()
    env["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = time.perf_counter() - began
    return results


async def _streams(paths: dict[str, Named], clips, quick: bool) -> list[dict]:
    runs = []
    from speechmesh.asr.mapping import stream_settings

    compared = {k: paths[k] for k in ("whisper_ctranslate2", SENSEVOICE)}
    streams = {name: Streams(named, clips) for name, named in compared.items()}
    for name, s in streams.items():
        # A final at the first pause, for both: random SenseVoice text never ends a sentence,
        # so with the default sentence_pause its utterances would wait 1.5 s more than
        # Whisper's, a cost of the weights, not of the engine.
        s.config.sentence_pause.FromMilliseconds(100)  # at or below the endpoint silence
        s.settings = stream_settings(compared[name].model, s.config)
    for c in STREAM_CONCURRENCY:
        rounds = 1 if quick else 2
        measured = await interleaved(
            lambda s, _i, c=c: s.block(s.grpc_stream, c, c, 0), streams, rounds
        )
        figures = {name: streams[name].figures(measured[name], c) for name in streams}
        for name in figures:
            figures[name].pop("per_stream", None)
        eos = {k: v["end_of_speech_to_final_s"]["p50"] for k, v in figures.items()}
        _log(f"streams x{c}: end of speech to final p50 {eos}")
        runs.append({"concurrency": c, **figures})
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("sensevoice", __doc__, "unary,streams", audio=True)
    parser.add_argument(
        "--model",
        default=str(SHARED / "models" / "whisper-tiny.en"),
        help="the Whisper checkpoint to compare with (default: ../shared/models/whisper-tiny.en)",
    )
    parser.add_argument(
        "--whisper-base",
        default=str(WHISPER_BASE_CACHE) if (WHISPER_BASE_CACHE / "config.json").is_file() else "",
        help="multilingual Whisper base (74M), served beside them on CTranslate2 (default: the"
        " tests' build in ~/.cache/speechmesh-tests/whisper-base when there; '' for none)",
    )
    args = parser.parse_args(argv)
    return run_and_write(args, run, sensevoice_report, _log)


if __name__ == "__main__":
    sys.exit(main())
