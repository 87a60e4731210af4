"""The client's test suite: the three services in-process, and a real Envoy gateway before them.

The services run on an event loop of their own, in a background thread, so that the blocking
SDK and the CLI (`speechmesh.cli.main([...])`) can be called straight from plain tests. ASR
serves the real whisper-tiny.en from ../shared when present (so transcripts can be checked word
for word), else a tiny random Whisper; translate serves a tiny random SeamlessM4T v2; TTS a
tiny random CSM (clones voices) and VITS (a preset voice named "default").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import AUDIO, TINY_EN, running_asr, running_translate, running_tts
from tests.servers import free_port
from tests.sounds import REFERENCE

GOFORWARD = AUDIO / "goforward.wav"
JFK = AUDIO / "fw" / "jfk.flac"
LIBRIVOX = sorted((AUDIO / "librivox").glob("*.wav"))
REAL = TINY_EN.is_dir()
real_only = pytest.mark.skipif(not REAL, reason=f"real weights and audio not found at {TINY_EN}")


@dataclasses.dataclass
class Suite:
    asr: str
    translate: str
    tts: str
    gateway: str
    voices_dir: pathlib.Path


class Background:
    """An event loop in a thread, for the in-process servers."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack: list = []

    def enter(self, manager):
        entered = asyncio.run_coroutine_threadsafe(manager.__aenter__(), self.loop).result(300)
        self.stack.append(manager)
        return entered

    def close(self) -> None:
        while self.stack:
            manager = self.stack.pop()
            asyncio.run_coroutine_threadsafe(manager.__aexit__(None, None, None), self.loop).result(
                60
            )
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextlib.contextmanager
def envoy(tmp: pathlib.Path, suite: dict[str, str]) -> Iterator[str]:
    """A real Envoy (the gateway of `speechmesh up`) in front of the given upstreams."""
    from speechmesh.client import Client
    from speechmesh.gateway.config import GatewaySettings
    from speechmesh.gateway.envoy_process import envoy_command, write_config

    settings = GatewaySettings(
        host="127.0.0.1",
        port=free_port(),
        admin_port=free_port(),
        health_check_interval_s=0.5,
        access_log=False,
        asr_upstream=suite["asr"],
        translate_upstream=suite["translate"],
        tts_upstream=suite["tts"],
    )
    config = write_config(settings, tmp / "envoy.yaml")
    log = (tmp / "envoy.log").open("w")
    process = subprocess.Popen(envoy_command(settings, config), stdout=log, stderr=log)
    target = f"127.0.0.1:{settings.port}"
    try:
        deadline = time.monotonic() + 60
        with Client(target, retries=0) as client:
            while True:
                try:
                    if all(h.serving for h in client.health(timeout=1).values()):
                        break
                except Exception:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway not ready:\n{(tmp / 'envoy.log').read_text()}")
                time.sleep(0.2)
        yield target
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def quiet_servers(log: pathlib.Path) -> Iterator[None]:
    """The in-process services log to a file, not to the standard output and error that the
    CLI tests read (restored afterwards)."""
    import structlog

    from speechmesh.runtime.logging import _quiet_transformers

    saved = structlog.get_config()
    with log.open("w") as file:
        structlog.configure(
            processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(file=file),
            cache_logger_on_first_use=False,
        )
        _quiet_transformers("info")
        try:
            yield
        finally:
            structlog.configure(**saved)


@pytest.fixture(scope="session")
def suite(tmp_path_factory, tiny_seamless_checkpoint, tiny_csm_checkpoint, tiny_vits_checkpoint):
    """ASR, translate and TTS in-process, and Envoy before them: addresses of each."""
    if REAL:
        asr_model = TINY_EN
    else:
        from speechmesh.tiny.models import build_tiny

        asr_model = build_tiny("whisper", tmp_path_factory.mktemp("tiny-whisper"))
    voices = tmp_path_factory.mktemp("voices")
    with quiet_servers(tmp_path_factory.mktemp("logs") / "services.log"):
        yield from _suite(
            asr_model,
            voices,
            tmp_path_factory,
            tiny_seamless_checkpoint,
            tiny_csm_checkpoint,
            tiny_vits_checkpoint,
        )


def _suite(asr_model, voices, tmp_path_factory, seamless, csm, vits):
    background = Background()
    try:
        asr, _ = background.enter(running_asr(asr_model))
        translate, _ = background.enter(running_translate(seamless))
        tts, _ = background.enter(running_tts(csm, voices, str(vits)))
        upstreams = {
            "asr": f"127.0.0.1:{asr.port}",
            "translate": f"127.0.0.1:{translate.port}",
            "tts": f"127.0.0.1:{tts.port}",
        }
        with envoy(tmp_path_factory.mktemp("gateway"), upstreams) as gateway:
            yield Suite(**upstreams, gateway=gateway, voices_dir=voices)
    finally:
        background.close()


# -- audio for tests ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference_wav(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("reference") / "reference.wav"
    path.write_bytes(REFERENCE)
    return path


@pytest.fixture(scope="session")
def long_recording(tmp_path_factory) -> pathlib.Path:
    """Three LibriVox clips one after the other with a second of silence between (~19 s), at
    16 kHz: long enough to go in pieces when the piece length is made small."""
    if not LIBRIVOX:
        pytest.skip(f"no LibriVox clips in {AUDIO}")
    silence = np.zeros(16000, dtype=np.float32)
    parts = []
    for clip in LIBRIVOX[::2]:
        samples, rate = sf.read(clip, dtype="float32")
        assert rate == 16000
        parts += [samples, silence]
    path = tmp_path_factory.mktemp("long") / "librivox.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path


@dataclasses.dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, suite):
    """Runs `speechmesh ARGS --target <gateway>` in-process: Ran(code, out, err)."""
    from speechmesh.cli import main

    def run(*argv: str, target: str | None = None) -> Ran:
        capsys.readouterr()
        args = [*argv, "--target", target or suite.gateway]
        try:
            code = main(args)
        except SystemExit as exit:  # argparse's usage errors
            code = exit.code
        sys.stdout.flush()
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run
