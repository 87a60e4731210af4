"""The cascade benchmark's services and the two ways bench.cascade calls them.

`Stack` runs the ASR, TTS and translate services as child processes (`python -m speechmesh.cli
serve NAME`, as a deployment runs each service in a process of its own), the translate service's
peers set to the other two, and waits until all three serve. This process is the client:

- `cascade(clip, variant)`: one TranslateSpeech call on the cascade path (the translate service
  calls ASR Recognize, its own text model when the target differs from English, and TTS
  Synthesize for every segment at once), with the cascade's own stage times read from the
  translate service's Prometheus histogram (speechmesh_cascade_stage_seconds) around the call;
- `direct(clip, variant)`: the same three services called by this process one after the other
  with the inputs the cascade sends them: Recognize of the recording as 16 kHz 16-bit WAV
  (transcribe, the ASR service's default model), TranslateText of the segments' texts, and
  Synthesize of every segment's text (all at once, as the cascade sends them) with the same
  model, language and voice; for the speaker's own voice, the reference the cascade would pick
  (speechmesh.translate.cascade.references, computed before the TTS stage is timed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np

from bench.common import Clip
from bench.gateway_stack import ProcessCpu
from bench.served import tiny_checkpoint

STARTUP_TIMEOUT_S = 300.0
#: The cascade's audio rate and how many segments of one call it speaks at once (pipeline.py).
SAMPLE_RATE = 16000
TTS_CONCURRENCY = 16
SOURCE = "en"
SERVICES = {
    "asr": "speechmesh.asr.v1.AsrService",
    "tts": "speechmesh.tts.v1.TtsService",
    "translate": "speechmesh.translate.v1.TranslateService",
}
STAGES = ("recognize", "translate", "synthesize")


@dataclass(frozen=True)
class Variant:
    """One way of running the cascade: target language, TTS model and voice."""

    name: str
    target: str
    #: The TTS model (a folder name, as the TTS service names it).
    synthesis_model: str
    #: A preset voice of that model; empty: the speaker's own voice, cloned from the source.
    preset: str = ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_vits(language: str) -> pathlib.Path:
    """A tiny random VITS voice of `language` (ISO 639-3) whose letters are every character the
    tiny NLLB writes, so that it can say whatever the random text model outputs (built once per
    machine, in a child process, beside bench.served's tiny checkpoints)."""
    dest = pathlib.Path(tempfile.gettempdir()) / "speechmesh-bench" / f"tiny-vits-{language}"
    if (dest / "config.json").is_file():
        return dest
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        child.submit(_build_vits, str(partial), language).result()
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest


def _build_vits(dest: str, language: str) -> None:
    import json

    from speechmesh.tiny.models import RANDOM_WEIGHTS_KEY
    from speechmesh.tiny.seq2seq import SPACE, _characters
    from speechmesh.tiny.tts import build_vits

    # "_" is the VITS vocabulary's blank; SPACE the SentencePiece word mark (a space in text).
    letters = " " + "".join(c for c in _characters() if c not in (SPACE, "_"))
    build_vits(pathlib.Path(dest), 0, characters=letters, language=language)
    config_path = pathlib.Path(dest) / "config.json"
    config = json.loads(config_path.read_text())
    config[RANDOM_WEIGHTS_KEY] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def wav16(samples: np.ndarray) -> bytes:
    """The recording as the cascade sends it to ASR (peers.wav_bytes)."""
    from speechmesh.translate.cascade.peers import wav_bytes

    return wav_bytes(samples, SAMPLE_RATE)


class Stack:
    """The three services as child processes, and this process's clients of them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = tempfile.TemporaryDirectory(prefix="speechmesh-bench-cascade-")
        self.folder = pathlib.Path(self.workdir.name)
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: list = []
        self.channels: dict[str, grpc.aio.Channel] = {}

    # -- processes ---------------------------------------------------------

    def _spawn(self, name: str, flags: list[str], env: dict[str, str]) -> None:
        log = (self.folder / f"{name}.log").open("w")
        self.logs.append(log)
        argv = [sys.executable, "-m", "speechmesh.cli", "serve", name, *flags]
        self.processes[name] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.folder / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def start(self) -> None:
        args = self.args
        self.tiny = {
            "nllb": tiny_checkpoint("nllb", "tiny-nllb"),
            "csm": tiny_checkpoint("csm", "tiny-csm"),
            "vits": tiny_vits("fra"),
        }
        self.ports = {name: _free_port() for name in SERVICES}
        self.metrics_port = _free_port()
        env = dict(os.environ)
        # The services keep their own default settings (batching, threads); only these differ.
        common = ["--host", "127.0.0.1", "--log-level", args.log_level, "--log-format", "json"]
        if args.device:
            common += ["--device", args.device]
        for name in SERVICES:
            # A realtime WebSocket port of its own: the default ones may be taken.
            env[f"SPEECHMESH_{name.upper()}_WEBSOCKET_PORT"] = "0"
        for name in ("asr", "tts"):
            env[f"SPEECHMESH_{name.upper()}_METRICS"] = "false"
        env["SPEECHMESH_TRANSLATE_METRICS"] = "true"
        started = time.perf_counter()
        self._spawn(
            "asr", [*common, "--port", str(self.ports["asr"]), "--model", args.asr_model], env
        )
        extra = f"{self.tiny['vits']},{self.tiny['csm']}"
        self._spawn(
            "tts",
            [
                *common,
                "--port",
                str(self.ports["tts"]),
                "--model",
                str(args.tts_model),
                "--extra-models",
                extra,
                "--voices-dir",
                str(self.folder / "voices"),
            ],
            env,
        )
        peers = f"asr=127.0.0.1:{self.ports['asr']},tts=127.0.0.1:{self.ports['tts']}"
        self._spawn(
            "translate",
            [
                *common,
                "--port",
                str(self.ports["translate"]),
                "--metrics-port",
                str(self.metrics_port),
                "--model",
                str(self.tiny["nllb"]),
                "--peers",
                peers,
            ],
            env,
        )
        await asyncio.gather(*(self._wait_serving(name, started) for name in SERVICES))
        self.startup_s = time.perf_counter() - started
        options = [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ]
        for name in SERVICES:
            self.channels[name] = grpc.aio.insecure_channel(
                f"127.0.0.1:{self.ports[name]}", options=options
            )
        await self._stubs()

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SystemExit(
                    f"bench: the {name} service exited with code {process.returncode}:\n"
                    f"{self.tail(name)}"
                )

    async def _wait_serving(self, name: str, started: float) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.ports[name]}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(
                        health_pb2.HealthCheckRequest(service=SERVICES[name]), timeout=2
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if time.perf_counter() - started > STARTUP_TIMEOUT_S:
                    raise SystemExit(
                        f"bench: {name} not SERVING after {STARTUP_TIMEOUT_S:g} s:\n"
                        f"{self.tail(name)}"
                    )
                await asyncio.sleep(0.3)

    def pids(self) -> dict[str, int]:
        return {"client": os.getpid(), **{n: p.pid for n, p in self.processes.items()}}

    def cpu(self) -> ProcessCpu:
        """CPU seconds of this process, each service and everything else, from now on."""
        return ProcessCpu(self.pids())

    async def stop(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()
        self.workdir.cleanup()

    # -- what the services run ---------------------------------------------

    async def _stubs(self) -> None:
        from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
        from speechmesh.audio.v1 import audio_pb2
        from speechmesh.translate.v1 import translate_pb2, translate_pb2_grpc
        from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

        self.asr_pb, self.tts_pb, self.translate_pb, self.audio_pb = (
            asr_pb2,
            tts_pb2,
            translate_pb2,
            audio_pb2,
        )
        self.asr = asr_pb2_grpc.AsrServiceStub(self.channels["asr"])
        self.tts = tts_pb2_grpc.TtsServiceStub(self.channels["tts"])
        self.translate = translate_pb2_grpc.TranslateServiceStub(self.channels["translate"])
        asr_models = (await self.asr.ListModels(asr_pb2.ListModelsRequest())).models
        tts_models = (await self.tts.ListModels(tts_pb2.ListModelsRequest())).models
        text_models = (await self.translate.ListModels(translate_pb2.ListModelsRequest())).models
        self.recognition_model = next(m.name for m in asr_models if m.default)
        self.tts_models = {m.name: m for m in tts_models}
        self.models = {
            "asr": [_model_info(m) for m in asr_models],
            "tts": [_model_info(m) for m in tts_models],
            "translate": [_model_info(m) for m in text_models],
        }
        self.text_model = next(m.name for m in text_models if m.default)

    def names(self) -> dict[str, str]:
        """The TTS service's names of the benchmark's models."""
        return {
            "real_voice": pathlib.Path(self.args.tts_model).name,
            "tiny_vits": self.tiny["vits"].name,
            "tiny_csm": self.tiny["csm"].name,
        }

    # -- the cascade -------------------------------------------------------

    def speech_config(self, variant: Variant):
        pb = self.translate_pb
        cascade = pb.CascadeConfig(synthesis_model=variant.synthesis_model)
        if variant.preset:
            cascade.preset_voice = variant.preset
        return pb.SpeechTranslationConfig(
            source_language_code=SOURCE,
            target_language_code=variant.target,
            output_modalities=[pb.MODALITY_TEXT, pb.MODALITY_SPEECH],
            path=pb.SPEECH_TRANSLATION_PATH_CASCADE,
            cascade=cascade,
            output_audio_config=self.audio_pb.OutputAudioConfig(
                encoding=self.audio_pb.OUTPUT_ENCODING_PCM
            ),
        )

    async def cascade_call(self, clip: Clip, variant: Variant):
        """One TranslateSpeech call: (latency, response)."""
        request = self.translate_pb.TranslateSpeechRequest(
            audio=clip.data, config=self.speech_config(variant)
        )
        sent = time.perf_counter()
        reply = await self.translate.TranslateSpeech(request, timeout=600)
        return time.perf_counter() - sent, reply

    async def cascade(self, clip: Clip, variant: Variant) -> dict:
        """One call, alone, with the cascade's stage times (its histogram around the call)."""
        before = await asyncio.to_thread(self.stage_totals)
        latency, reply = await self.cascade_call(clip, variant)
        after = await asyncio.to_thread(self.stage_totals)
        stages = {s: after[s] - before[s] for s in STAGES if after[s] > before[s]}
        segments = [s for s in reply.segments if s.translated_text.strip()]
        return {
            "latency_s": latency,
            "stages_s": stages,
            "segments": len(reply.segments),
            "spoken_segments": len(segments),
            "texts": [s.translated_text for s in reply.segments],
            "voices": [self.translate_pb.SegmentVoice.Kind.Name(s.voice.kind) for s in segments],
            "audio_s": reply.translated_audio_duration.ToNanoseconds() / 1e9,
            "models": {
                "recognition": reply.cascade_models.recognition_model,
                "translation": reply.cascade_models.translation_model,
                "synthesis": reply.cascade_models.synthesis_model,
            },
        }

    def stage_totals(self) -> dict[str, float]:
        """Seconds the translate service's cascade spent in each stage so far (its metric)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        totals = dict.fromkeys(STAGES, 0.0)
        for stage, value in re.findall(
            r'^speechmesh_cascade_stage_seconds_sum\{stage="(\w+)"\} (\S+)$', text, re.M
        ):
            totals[stage] = float(value)
        return totals

    # -- the three services called directly ----------------------------------

    async def direct(self, clip: Clip, variant: Variant) -> dict:
        """ASR, text translation (when the target is not English), TTS: each stage timed."""
        from speechmesh.translate.cascade.peers import wav_bytes
        from speechmesh.translate.cascade.references import (
            NoReference,
            Reference,
            choose_references,
        )

        asr, tts, pb = self.asr_pb, self.tts_pb, self.translate_pb
        stages: dict[str, float] = {}
        request = asr.RecognizeRequest(
            audio=wav16(clip.samples),
            config=asr.RecognitionConfig(
                model=self.recognition_model,
                language_code=SOURCE,
                task=asr.RECOGNITION_TASK_TRANSCRIBE,
            ),
        )
        sent = time.perf_counter()
        recognized = await self.asr.Recognize(request, timeout=600)
        stages["recognize"] = time.perf_counter() - sent
        segments = _segments(recognized, clip.samples)
        texts = [s.text for s in segments]
        if segments and variant.target != SOURCE:
            spoken = [i for i, t in enumerate(texts) if t.strip()]
            request = pb.TranslateTextRequest(
                texts=[texts[i] for i in spoken],
                source_language_code=SOURCE,
                target_language_code=variant.target,
                model=self.text_model,
            )
            sent = time.perf_counter()
            reply = await self.translate.TranslateText(request, timeout=600)
            stages["translate"] = time.perf_counter() - sent
            texts = [""] * len(texts)
            for i, t in zip(spoken, reply.translations, strict=True):
                texts[i] = t.translated_text
        spoken = [i for i, t in enumerate(texts) if t.strip()]
        references: dict = {}
        if not variant.preset:  # the speaker's own voice: the reference the cascade picks
            references = choose_references(segments, spoken)

        def config(i: int):
            config = tts.SynthesisConfig(
                model=variant.synthesis_model,
                language_code=variant.target,
                output_audio_config=self.audio_pb.OutputAudioConfig(
                    encoding=self.audio_pb.OUTPUT_ENCODING_PCM
                ),
            )
            reference = references.get(i)
            if variant.preset:
                config.preset_voice = variant.preset
            elif isinstance(reference, Reference):
                config.reference_audio.CopyFrom(
                    tts.ReferenceAudio(
                        audio=wav_bytes(reference.audio, SAMPLE_RATE),
                        transcript=reference.transcript,
                        language_code=SOURCE,
                    )
                )
            else:
                assert reference is None or isinstance(reference, NoReference)
            return config

        requests = [tts.SynthesizeRequest(text=texts[i], config=config(i)) for i in spoken]
        gate = asyncio.Semaphore(TTS_CONCURRENCY)

        async def one(request) -> float:
            async with gate:
                reply = await self.tts.Synthesize(request, timeout=600)
            return len(reply.audio) / 2 / reply.sample_rate_hertz

        sent = time.perf_counter()
        spoken_s = await asyncio.gather(*(one(r) for r in requests))
        stages["synthesize"] = time.perf_counter() - sent
        return {
            "latency_s": sum(stages.values()),
            "stages_s": stages,
            "segments": len(segments),
            "spoken_segments": len(spoken),
            "texts": texts,
            "transcript": " ".join(s.text for s in segments),
            "speech_s": float(sum(spoken_s)),
        }


def _segments(recognized, audio: np.ndarray) -> list:
    """The recognizer's segments with text and audio, as the cascade takes them
    (pipeline._segments, offset 0)."""
    from speechmesh.translate.cascade.references import SourceSegment

    segments = []
    for piece in recognized.segments:
        start = piece.start_offset.ToTimedelta().total_seconds()
        end = max(piece.end_offset.ToTimedelta().total_seconds(), start)
        samples = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        if not piece.text.strip() or not len(samples):
            continue
        segments.append(SourceSegment(start, end, piece.text.strip(), samples))
    return segments


def _model_info(info) -> dict:
    fields = {"name": info.name, "default": info.default}
    for extra in ("source", "native_sample_rate_hertz", "supports_voice_cloning"):
        if extra in info.DESCRIPTOR.fields_by_name:
            fields[extra] = getattr(info, extra)
    return fields
