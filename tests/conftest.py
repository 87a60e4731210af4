"""Fixtures shared by the whole suite: paths, tiny checkpoints, in-process servers."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import AsyncIterator

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TINY_EN = SHARED / "models" / "whisper-tiny.en"
AUDIO = SHARED / "audio"

# Models converted for CTranslate2 during a test run go to a cache of the run's own, never to
# the user's (services started as processes inherit it too).
os.environ.setdefault(
    "SPEECHMESH_ASR_CACHE_DIR", tempfile.mkdtemp(prefix="speechmesh-test-model-cache-")
)

requires_shared = pytest.mark.skipif(
    not TINY_EN.is_dir(), reason=f"real weights and audio not found at {SHARED}"
)


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> pathlib.Path:
    """A tiny random multilingual Whisper checkpoint, built offline once per run."""
    from speechmesh.tiny.models import build_tiny

    return build_tiny("whisper", tmp_path_factory.mktemp("tiny-whisper"))


@contextlib.asynccontextmanager
async def serving(app, settings) -> AsyncIterator:
    """Runs a service app in-process until it is ready; yields (host, channel)."""
    from speechmesh.runtime.server import ServiceHost

    host = ServiceHost(app, settings)
    await host.start()
    await host.ready.wait()
    if host.failed is not None:
        await host.stop(0)
        raise host.failed
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{host.port}",
        options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 128 << 20),
        ],
    )
    try:
        yield host, channel
    finally:
        await channel.close()
        await host.stop(1)


@contextlib.asynccontextmanager
async def running_asr(model: pathlib.Path | str, **overrides) -> AsyncIterator:
    """Starts the ASR service in-process on a free port; yields (host, channel)."""
    from speechmesh.asr.app import build_app
    from speechmesh.asr.config import AsrSettings

    settings = AsrSettings(model=str(model), host="127.0.0.1", port=0, metrics_port=0, **overrides)
    async with serving(build_app(settings), settings) as served:
        yield served


#: Every ASR service test runs on both inference runtimes.
ASR_ENGINES = ["ctranslate2", "transformers"]


@pytest.fixture(scope="session", params=ASR_ENGINES)
async def tiny_asr(request, tiny_whisper):
    """ASR on the tiny random checkpoint, on each engine: (host, channel)."""
    async with running_asr(tiny_whisper, engine=request.param) as served:
        yield served


@pytest.fixture(scope="session")
async def real_asr():
    """ASR on the real whisper-tiny.en weights: (host, channel)."""
    if not TINY_EN.is_dir():
        pytest.skip(f"real weights not found at {TINY_EN}")
    async with running_asr(TINY_EN) as served:
        yield served


# -- translate -----------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_seamless_checkpoint(tmp_path_factory) -> pathlib.Path:
    """A tiny random SeamlessM4T v2 checkpoint (all four tasks), built offline once per run."""
    from speechmesh.tiny.models import build_tiny

    return build_tiny("seamless_m4t_v2", tmp_path_factory.mktemp("tiny-seamless"))


@pytest.fixture(scope="session")
def tiny_nllb_checkpoint(tmp_path_factory) -> pathlib.Path:
    """A tiny random NLLB-200 checkpoint (text to text), built offline once per run."""
    from speechmesh.tiny.models import build_tiny

    return build_tiny("nllb", tmp_path_factory.mktemp("tiny-nllb"))


@contextlib.asynccontextmanager
async def running_translate(
    model: pathlib.Path | str, text_model: pathlib.Path | str = "", **overrides
) -> AsyncIterator:
    """Starts the translate service in-process on a free port; yields (host, channel)."""
    from speechmesh.translate.app import build_app
    from speechmesh.translate.config import TranslateSettings

    settings = TranslateSettings(
        model=str(model),
        text_model=str(text_model),
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        **overrides,
    )
    async with serving(build_app(settings), settings) as served:
        yield served


@pytest.fixture(scope="session")
async def tiny_translate(tiny_seamless_checkpoint, tiny_nllb_checkpoint):
    """Translate on tiny random Seamless (default) and NLLB (text model): (host, channel)."""
    async with running_translate(tiny_seamless_checkpoint, tiny_nllb_checkpoint) as served:
        yield served


@pytest.fixture(scope="session")
def tiny_csm_checkpoint(tmp_path_factory) -> pathlib.Path:
    """A tiny random CSM checkpoint (with its Mimi codec): voice cloning, built offline once."""
    from speechmesh.tiny.models import build_tiny

    return build_tiny("csm", tmp_path_factory.mktemp("tiny-csm"))


@pytest.fixture(scope="session")
def tiny_vits_checkpoint(tmp_path_factory) -> pathlib.Path:
    """A tiny random VITS (MMS-TTS layout) checkpoint: a preset voice, built offline once."""
    from speechmesh.tiny.models import build_tiny

    return build_tiny("vits", tmp_path_factory.mktemp("tiny-vits"))


@contextlib.asynccontextmanager
async def running_tts(
    model: pathlib.Path | str, voices_dir: pathlib.Path, extra_models: str = "", **overrides
) -> AsyncIterator:
    """Starts the TTS service in-process on a free port; yields (host, channel)."""
    from speechmesh.tts.app import build_app
    from speechmesh.tts.config import TtsSettings

    settings = TtsSettings(
        model=str(model),
        extra_models=extra_models,
        voices_dir=str(voices_dir),
        host="127.0.0.1",
        port=0,
        metrics_port=0,
        **overrides,
    )
    async with serving(build_app(settings), settings) as served:
        yield served


@pytest.fixture(scope="session")
async def tiny_tts(tiny_csm_checkpoint, tiny_vits_checkpoint, tmp_path_factory):
    """TTS on tiny random CSM (default, clones) and VITS (presets): (host, channel)."""
    voices = tmp_path_factory.mktemp("voices")
    async with running_tts(tiny_csm_checkpoint, voices, str(tiny_vits_checkpoint)) as served:
        yield served


@pytest.fixture(scope="session")
async def tiny_tts_models(tiny_csm_checkpoint, tiny_vits_checkpoint, tmp_path_factory):
    """The models of tiny_tts loaded in-process, without a server, for the TTS domain's unit
    tests: tiny CSM (default, clones) and VITS (presets), voices in a folder of their own."""
    from speechmesh.tts.config import TtsSettings
    from speechmesh.tts.models import TtsModels

    settings = TtsSettings(
        model=str(tiny_csm_checkpoint),
        extra_models=str(tiny_vits_checkpoint),
        voices_dir=str(tmp_path_factory.mktemp("unit-voices")),
    )
    models = TtsModels(settings)
    await models.load()
    yield models
    await models.close()
