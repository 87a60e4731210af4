"""Realtime benchmark: WebSocket realtime sessions against StreamingRecognize, same clips.

    python -m bench.realtime [--model ../shared/models/whisper-tiny.en] [--quick] [--out DIR]

Serves one ASR service in this process (ServiceHost + build_app, gRPC and WebSocket ports 0, no
metrics server, the default engine) and streams the same clips to it both ways, live, at 1, 4
and 16 concurrent sessions:

- grpc: StreamingRecognize over a grpc.aio channel (bench.asr's live streams);
- realtime: OpenAI's Realtime transcription protocol on `/v1/realtime` (speechmesh.asr.realtime),
  from a plain `websockets` client (no SDK): `session.update` (GA shape: audio/pcm at 16 kHz,
  language en, server_vad threshold 0.5, silence 500 ms), then `input_audio_buffer.append`
  events, then the SDK's end marker (a `session.update` that changes noise reduction, answered
  once everything before it is transcribed) and a close.

Both send the clip as PCM16 at the engine's 16 kHz (no resampling either way) in 100 ms chunks,
each when a microphone would have captured it, then 1 s of silence (bench.asr_served.paced). The
gRPC stream's config is the one the realtime session derives (interim results, voice activity
events, endpoint silence 500 ms, VAD threshold 0.5, word time offsets): the run checks that the
realtime module builds the identical StreamingRecognitionConfig and stream settings, and stops
if not. Both paths run the same StreamingSession in the same process, sharing its batcher.

Per path and concurrency: throughput (speech seconds per wall second of the blocks, as
bench.asr) and end of speech -> final, as bench.asr defines it: from the moment the chunk that
ends the clip's speech was handed to the transport to the arrival of the stream's last final
result (gRPC `is_final`; realtime `...input_audio_transcription.completed`). The two paths run on
the same blocks of streams (same clips, same order), interleaved A B, B A, ... so that other load
on the machine falls on both; the CPU other processes used meanwhile is recorded. The clients run
on the server's event loop, so each figure carries its client's cost too.

Writes NAME.json and, by bench.realtime_report, NAME.md under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import pathlib
import sys
import time

from bench import realtime_report
from bench.asr_served import CHUNK_S, TRAILING_SILENCE_S, Served, Streams, _result
from bench.common import (
    SHARED,
    Clip,
    bench_parser,
    environment,
    interleaved,
    load_clips,
    process_memory,
    run_and_write,
)
from bench.report import fmt

CONCURRENCY = (1, 4, 16)
#: The realtime session every stream configures (GA shape), and the settings it stands for.
LANGUAGE = "en"
VAD_THRESHOLD = 0.5
ENDPOINT_SILENCE_MS = 500
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


class Plan:
    """Blocks per path and streams per block at each concurrency: full (4 to 6 min on 2 cores,
    by their load) or --quick (2 to 3.5 min). 5 streams at 1 concurrent: each clip once a block."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.runs = (
            {1: (1, 5), 4: (1, 8), 16: (1, 16)} if quick else {1: (2, 5), 4: (2, 8), 16: (2, 16)}
        )


class Paths(Streams):
    """Live streams on `served`, over gRPC (Streams.grpc_stream) or a realtime WebSocket."""

    def __init__(self, served: Served, clips: list[Clip]):
        # Not Streams.__init__: the streams here take the realtime session's config.
        from speechmesh.asr.mapping import stream_settings

        self.served = served
        self.clips = clips
        self.rate = served.engine.sample_rate
        self.config = self.grpc_config()
        self.settings = stream_settings(served.model, self.config)
        self.same_config = self.check_same_config()
        port = served.service.host.websocket_port
        if not port:
            raise SystemExit("bench: the ASR service opened no WebSocket port")
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"

    def grpc_config(self):
        """StreamingRecognize's equivalent of the realtime session."""
        from speechmesh.audio.v1 import audio_pb2

        pb = self.served.pb
        config = pb.StreamingRecognitionConfig(
            config=pb.RecognitionConfig(
                model=self.served.model.name,
                language_code=LANGUAGE,
                audio_format=audio_pb2.AudioFormat(
                    encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=self.rate
                ),
                enable_word_time_offsets=True,
            ),
            interim_results=True,
            enable_voice_activity_events=True,
            vad_threshold=VAD_THRESHOLD,
        )
        config.endpoint_silence.FromMilliseconds(ENDPOINT_SILENCE_MS)
        return config

    def session(self) -> dict:
        """The `session` of the realtime stream's session.update."""
        return {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": self.rate},
                    "transcription": {"model": "", "language": LANGUAGE},
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": VAD_THRESHOLD,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": ENDPOINT_SILENCE_MS,
                    },
                    "noise_reduction": None,
                }
            },
        }

    def check_same_config(self) -> bool:
        """The realtime module's own StreamingRecognitionConfig for that session (the server
        derives it the same way) is the gRPC one; stops the run if not."""
        from speechmesh.asr import realtime
        from speechmesh.asr.mapping import stream_settings

        parsed = realtime.parse_session({"type": "session.update", "session": self.session()}, None)
        theirs = realtime.RealtimeTranscription._recognition_config(None, parsed, self.served.model)
        if theirs != self.config or stream_settings(self.served.model, theirs) != self.settings:
            raise SystemExit(
                "bench: the realtime session's StreamingRecognitionConfig is not the gRPC"
                f" one:\nrealtime: {theirs}\ngRPC: {self.config}"
            )
        return True

    async def realtime_stream(self, index: int, clip: Clip, record: dict) -> None:
        from websockets.asyncio.client import connect

        update = json.dumps({"type": "session.update", "session": self.session()})
        end = json.dumps(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"noise_reduction": {"type": "near_field"}}},
                },
            }
        )
        async with connect(self.url, compression=None, max_size=None, open_timeout=30) as ws:
            receiver = asyncio.create_task(_receive(ws, record))
            try:
                await ws.send(update)
                async for chunk in self.paced(clip, record):
                    if receiver.done():
                        break
                    audio = base64.b64encode(chunk).decode("ascii")
                    await ws.send(f'{{"type":"input_audio_buffer.append","audio":"{audio}"}}')
                await ws.send(end)
                await receiver
            finally:
                receiver.cancel()


async def _receive(ws, record: dict) -> None:
    """The session's events until the answer to the end marker (the second session.updated)."""
    updated = 0
    onset = 0.0
    async for message in ws:
        event = json.loads(message)
        kind = event.get("type")
        if kind == "session.updated":
            updated += 1
            if updated == 2:
                return
        elif kind == COMPLETED:
            extra = event.get("speechmesh") or {}
            start, end = extra.get("start_ms", 0) / 1000, extra.get("end_ms", 0) / 1000
            _result(record, True, event.get("transcript", ""), start, end)
        elif kind == DELTA:
            _result(record, False, "", onset, onset)
        elif kind == "input_audio_buffer.speech_started":
            onset = event.get("audio_start_ms", 0) / 1000
        elif kind == "error":
            raise RuntimeError(f"error event: {event.get('error')}")
    raise RuntimeError(f"the socket closed before the end: {ws.close_code} {ws.close_reason}")


def _log(message: str) -> None:
    print(f"[bench.realtime {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict:
    from speechmesh.runtime.logging import configure_logging

    configure_logging(args.log_level, "json")
    plan = Plan(args.quick)
    began = time.perf_counter()
    served = Served(args, "auto", websocket_port=0)
    await served.start()
    try:
        clips = load_clips(args.audio, served.engine.sample_rate)
        paths = Paths(served, clips)
        env = environment(served.engine, served.settings)
        env["engine"] = served.describe()
        env["websockets"] = _version("websockets")
        env["note"] = (
            "a shared 2-core development machine: other engineers' test runs may have been"
            " running meanwhile (see other_processes_cores per figure and the load averages)"
        )
        _log(
            f"model {served.engine.name}: {served.engine.runtime} on {served.engine.device}"
            f" ({served.engine.dtype}), loaded in {served.load_s:.1f} s; {len(clips)} clips"
            f" ({sum(c.seconds for c in clips):.1f} s of audio); WebSocket {paths.url}"
        )
        results: dict = {
            "benchmark": "realtime",
            "quick": plan.quick,
            "environment": env,
            "clips": [
                {"index": i, "name": c.name, "audio_s": c.seconds, "reference": c.reference}
                for i, c in enumerate(clips)
            ],
            "setup": {
                "audio": "PCM16 (LINEAR16) at 16000 Hz both ways, no resampling",
                "chunk_s": CHUNK_S,
                "trailing_silence_s": TRAILING_SILENCE_S,
                "endpoint_silence_s": paths.settings.endpoint_silence,
                "vad_threshold": paths.settings.vad_threshold,
                "interim_results": paths.settings.interim_results,
                "voice_activity_events": paths.settings.voice_activity_events,
                "word_time_offsets": paths.config.config.enable_word_time_offsets,
                "interim_interval_s": paths.settings.interim_interval,
                "realtime_config_identical_to_grpc": paths.same_config,
                "order": "grpc first in even blocks, realtime first in odd ones",
            },
            "load_s": served.load_s,
        }
        calls = {"grpc": paths.grpc_stream, "realtime": paths.realtime_stream}
        _log("warm-up: 2 streams per path")
        for call in calls.values():
            await paths.block(call, 2, 2, 1)
        runs = []
        for c in CONCURRENCY:
            blocks, size = plan.runs[c]
            _log(f"{c} concurrent: {blocks} blocks of {size} streams per path, interleaved")

            def measure(call, i, c=c, size=size):
                return paths.block(call, c, size, i * size)

            measured = await interleaved(measure, calls, blocks)
            run_ = _run(c, {k: paths.figures(v, c) for k, v in measured.items()})
            run_["realtime_vs_grpc"]["p50_per_block_s"] = _per_block(paths, measured, c)
            runs.append(run_)
        results["runs"] = runs
        results["memory"] = process_memory(served.rss_after_load_mib, str(served.engine.device))
    finally:
        await served.stop()
    env["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = time.perf_counter() - began
    return results


def _run(concurrency: int, figures: dict[str, dict]) -> dict:
    g, r = figures["grpc"], figures["realtime"]
    ge, re_ = g["end_of_speech_to_final_s"], r["end_of_speech_to_final_s"]

    def diff(key: str) -> float | None:
        return None if re_[key] is None or ge[key] is None else re_[key] - ge[key]

    comparison = {
        "throughput_ratio": r["audio_s_per_s"] / g["audio_s_per_s"],
        "end_of_speech_to_final_p50_diff_s": diff("p50"),
        "end_of_speech_to_final_p90_diff_s": diff("p90"),
    }
    _log(
        f"  throughput realtime {r['audio_s_per_s']:.2f}, gRPC {g['audio_s_per_s']:.2f} speech"
        f" s/s (ratio {comparison['throughput_ratio']:.3f}); end of speech to final p50/p90"
        f" realtime {fmt(re_['p50'], 3)}/{fmt(re_['p90'], 3)} s, gRPC"
        f" {fmt(ge['p50'], 3)}/{fmt(ge['p90'], 3)} s; completed {r['completed']}/{r['streams']}"
        f" and {g['completed']}/{g['streams']}; others"
        f" {fmt(r['cpu']['other_processes_cores'])} / {fmt(g['cpu']['other_processes_cores'])}"
        " cores"
    )
    return {"concurrency": concurrency, **figures, "realtime_vs_grpc": comparison}


def _per_block(paths: Paths, measured: dict, concurrency: int) -> list[list]:
    """Each block's end of speech -> final p50, [path, seconds], in the order they ran."""
    order = []
    for i in range(len(measured["grpc"])):
        names = ["grpc", "realtime"] if i % 2 == 0 else ["realtime", "grpc"]
        for name in names:
            eos = paths.figures([measured[name][i]], concurrency)["end_of_speech_to_final_s"]
            order.append([name, eos["p50"]])
    return order


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    given = {a.split("=", 1)[0] for a in argv}
    if not SHARED.is_dir() and not {"--model", "--audio"} <= given:
        print(
            f"bench.realtime: {SHARED} is absent: it holds the real weights"
            " (models/whisper-tiny.en) and the clips (audio/librivox) this benchmark runs on;"
            " give --model and --audio instead",
            file=sys.stderr,
        )
        return 2
    parser = bench_parser("realtime", __doc__, "streams", audio=True)
    parser.add_argument(
        "--model",
        type=pathlib.Path,
        default=SHARED / "models" / "whisper-tiny.en",
        help="Whisper checkpoint folder or hub id (default: ../shared/models/whisper-tiny.en)",
    )
    return run_and_write(parser.parse_args(argv), run, realtime_report, _log)


if __name__ == "__main__":
    sys.exit(main())
