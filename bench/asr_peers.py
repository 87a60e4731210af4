"""What the ASR benchmark measures speechmesh against, and the service's memory in a child.

Peers, in this process, each called from N Python threads in a closed loop (each thread sends
its next clip as soon as the last is transcribed), on the decoded float32 samples of the clips
(what both accept; the service decodes the uploaded file itself):

- faster-whisper (`faster_whisper.WhisperModel`) on the very CTranslate2 conversion speechmesh
  serves (its model.bin, config and vocabulary, beside the checkpoint's tokenizer.json and
  preprocessor_config.json, which faster-whisper would otherwise fetch from the hub), int8 on
  the CPU, decoding as speechmesh does by default: greedy (beam_size=1, temperature=0.0),
  language "en", no word timestamps, no VAD filter;
- a plain transformers pipeline (`pipeline("automatic-speech-recognition", float32)`), what a
  naive FastAPI + pipeline server runs per request.

And `service_memory`: `speechmesh serve asr` started as a child process with one engine, loaded
with concurrent Recognize calls, its peak and current resident memory read from /proc.
"""

from __future__ import annotations

import asyncio
import itertools
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from bench.common import Block, Clip, CpuMeter, word_error_rate

#: faster-whisper configurations measured: (num_workers, cpu_threads).
FASTER_WHISPER_CONFIGS = ((1, 2), (2, 1))
#: Files of a CTranslate2 Whisper conversion, and those faster-whisper takes from the checkpoint.
_CT2_FILES = ("model.bin", "config.json", "vocabulary.json")
_CHECKPOINT_FILES = ("tokenizer.json", "preprocessor_config.json")


class Peer(Protocol):
    """Something that transcribes float32 samples at 16 kHz, from any thread."""

    name: str  # key in the results
    label: str  # what the report calls it

    def transcribe(self, samples: np.ndarray) -> str: ...


class FasterWhisper:
    def __init__(self, folder: pathlib.Path, workers: int, threads: int):
        from faster_whisper import WhisperModel

        self.workers, self.threads = workers, threads
        self.name = f"faster_whisper_w{workers}_t{threads}"
        self.label = f"faster-whisper W={workers} T={threads}"
        self.model = WhisperModel(
            str(folder),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            num_workers=workers,
        )

    def transcribe(self, samples: np.ndarray) -> str:
        segments, _info = self.model.transcribe(
            samples,
            language="en",
            beam_size=1,
            temperature=0.0,
            word_timestamps=False,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments)  # the generator does the decoding


class TransformersPipeline:
    name = "pipeline"
    label = "transformers pipeline"

    def __init__(self, checkpoint: pathlib.Path, sample_rate: int):
        import torch
        import transformers

        self.sample_rate = sample_rate
        self.pipe = transformers.pipeline(
            "automatic-speech-recognition",
            model=str(checkpoint),
            device="cpu",
            dtype=torch.float32,
        )

    def transcribe(self, samples: np.ndarray) -> str:
        return self.pipe({"raw": samples, "sampling_rate": self.sample_rate})["text"].strip()


def faster_whisper_folder(
    converted: pathlib.Path, checkpoint: pathlib.Path, into: pathlib.Path
) -> pathlib.Path:
    """A folder faster-whisper loads offline: links to speechmesh's CTranslate2 conversion (the
    same model.bin) and to the checkpoint's tokenizer and feature-extractor settings."""
    folder = into / "faster-whisper"
    folder.mkdir()
    for name, source in [
        *((n, converted) for n in _CT2_FILES),
        *((n, checkpoint) for n in _CHECKPOINT_FILES),
    ]:
        if (source / name).is_file():
            (folder / name).symlink_to(source / name)
        elif name != "preprocessor_config.json":  # faster-whisper has defaults for that one
            raise SystemExit(f"bench: faster-whisper needs {source / name}, which is missing")
    return folder


def load_peers(
    converted: pathlib.Path, checkpoint: pathlib.Path, into: pathlib.Path, sample_rate: int
) -> list[Peer]:
    """Every faster-whisper configuration, then the transformers pipeline."""
    folder = faster_whisper_folder(converted, checkpoint, into)
    peers: list[Peer] = [FasterWhisper(folder, w, t) for w, t in FASTER_WHISPER_CONFIGS]
    peers.append(TransformersPipeline(checkpoint, sample_rate))
    return peers


def threaded_block(
    transcribe: Callable[[np.ndarray], str],
    clips: Sequence[Clip],
    concurrency: int,
    total: int,
    first: int,
) -> Block:
    """`total` transcriptions from `concurrency` threads in a closed loop, on the clips numbered
    first, first + 1, ... (as the unary gRPC blocks send them); blocks the caller."""
    counter = itertools.count(first)
    lock = threading.Lock()
    records: list[tuple[Clip, float, str]] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            while True:
                with lock:
                    index = next(counter)
                if index >= first + total or errors:
                    return
                clip = clips[index % len(clips)]
                sent = time.perf_counter()
                text = transcribe(clip.samples)
                records.append((clip, time.perf_counter() - sent, text))
        except BaseException as error:  # reported by the block, not lost in a thread
            errors.append(error)

    threads = [
        threading.Thread(target=caller, name=f"bench-peer-{w}", daemon=True)
        for w in range(concurrency)
    ]
    cpu = CpuMeter()
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return Block(records, wall, [], cpu.stop())


# -- the service's memory, in a child process ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak resident memory) of a process, in MiB."""
    out = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB
    return out


async def service_memory(
    model: str,
    engine: str,
    device: str | None,
    clips: Sequence[Clip],
    concurrency: int,
    rounds: int,
    log: Callable[[str], None],
    start_timeout_s: float = 600.0,
) -> dict:
    """Starts `speechmesh serve asr --engine ENGINE` as a child, waits for SERVING (gRPC
    health), sends `rounds` rounds of `concurrency` concurrent Recognize calls (the clips in
    turn, as files), reads its memory from /proc, and stops it with SIGTERM."""
    import grpc

    from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
    from speechmesh.runtime.healthcheck import check

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "speechmesh.cli",
        "serve",
        "asr",
        "--model",
        model,
        "--engine",
        engine,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--websocket-port",
        "0",
        "--log-level",
        "warning",
        *(["--device", device] if device else []),
    ]
    figures: dict = {"engine": engine, "command": " ".join(command[1:])}
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while True:
                if child.poll() is not None:
                    stderr.seek(0)
                    tail = stderr.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"the {engine} service exited ({child.returncode}): {tail}")
                if time.perf_counter() - started > start_timeout_s:
                    raise RuntimeError(
                        f"the {engine} service was not SERVING after {start_timeout_s:.0f} s"
                    )
                serving, _seen = await asyncio.to_thread(check, "127.0.0.1", port, "", 2.0)
                if serving:
                    break
                await asyncio.sleep(0.25)
            figures["start_to_serving_s"] = time.perf_counter() - started
            loaded = _proc_status(child.pid)
            figures["rss_after_load_mib"] = loaded["VmRSS"]
            figures["peak_rss_after_load_mib"] = loaded["VmHWM"]
            log(
                f"  {engine} service (pid {child.pid}) SERVING after"
                f" {figures['start_to_serving_s']:.1f} s, RSS {loaded['VmRSS']:.0f} MiB;"
                f" {rounds} rounds of {concurrency} concurrent Recognize calls"
            )
            pairs: list[tuple[str, str]] = []
            errors: list[str] = []
            config = asr_pb2.RecognitionConfig(language_code="en")
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]
            ) as channel:
                stub = asr_pb2_grpc.AsrServiceStub(channel)

                async def call(index: int) -> None:
                    clip = clips[index % len(clips)]
                    request = asr_pb2.RecognizeRequest(
                        request_id=f"bench-memory-{index}", config=config, audio=clip.data
                    )
                    try:
                        pairs.append((clip.reference, (await stub.Recognize(request)).transcript))
                    except grpc.aio.AioRpcError as error:
                        errors.append(f"{error.code().name}: {error.details()}")

                began = time.perf_counter()
                for r in range(rounds):
                    await asyncio.gather(*(call(r * concurrency + k) for k in range(concurrency)))
                figures["load_wall_s"] = time.perf_counter() - began
            after = _proc_status(child.pid)
            figures.update(
                concurrency=concurrency,
                rounds=rounds,
                requests=rounds * concurrency,
                errors=errors,
                wer=word_error_rate(pairs),
                rss_after_requests_mib=after["VmRSS"],
                peak_rss_mib=after["VmHWM"],
            )
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(child.wait, 30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    await asyncio.to_thread(child.wait)
            figures["exit_code"] = child.returncode
    return figures
