"""Fixtures shared by the whole suite: paths, tiny checkpoints, in-process servers."""

from __future__ import annotations

import contextlib
import importlib
import os
import pathlib
import tempfile
from collections.abc import AsyncIterator

import grpc
import pytest

from tests.postgres import postgres_url  # noqa: F401  (a real PostgreSQL, once per session)
from tests.whisper_base import whisper_base  # noqa: F401  (Whisper base, built once, cached)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TINY_EN = SHARED / "models" / "whisper-tiny.en"
AUDIO = SHARED / "audio"

# Models converted for CTranslate2 during a test run go to a cache of the run's own, never to
# the user's (services started as processes inherit it too).
os.environ.setdefault(
    "SPEECHMESH_ASR_CACHE_DIR", tempfile.mkdtemp(prefix="speechmesh-test-model-cache-")
)
# Likewise the job store: a run's own SQLite file, so that no job of an earlier run (or of the
# user's) is ever claimed by a test's server. Tests of the store itself use their own.
os.environ.setdefault(
    "SPEECHMESH_JOBS_DATABASE_URL",
    "sqlite:///" + tempfile.mkdtemp(prefix="speechmesh-test-jobs-") + "/jobs.sqlite3",
)

requires_shared = pytest.mark.skipif(
    not TINY_EN.is_dir(), reason=f"real weights and audio not found at {SHARED}"
)


def tiny_checkpoint(kind: str, folder: str, doc: str):
    """A session fixture: the tiny random checkpoint of `kind` (speechmesh.tiny.models), built
    offline once per run in a temporary folder named `folder`."""

    def checkpoint(tmp_path_factory) -> pathlib.Path:
        from speechmesh.tiny.models import build_tiny

        return build_tiny(kind, tmp_path_factory.mktemp(folder))

    checkpoint.__doc__ = doc
    return pytest.fixture(scope="session")(checkpoint)


tiny_whisper = tiny_checkpoint(
    "whisper", "tiny-whisper", "A tiny random multilingual Whisper checkpoint, built offline once."
)


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
async def running(service: str, settings_class: str, **fields) -> AsyncIterator:
    """Starts speechmesh.<service> in-process on free ports with <settings_class>(**fields) of
    speechmesh.<service>.config; yields (host, channel)."""
    app = importlib.import_module(f"speechmesh.{service}.app")
    config = importlib.import_module(f"speechmesh.{service}.config")
    settings_type = getattr(config, settings_class)
    if "websocket_port" in settings_type.model_fields:
        fields.setdefault("websocket_port", 0)  # realtime sockets on a free port too
    settings = settings_type(host="127.0.0.1", port=0, metrics_port=0, **fields)
    async with serving(app.build_app(settings), settings) as served:
        yield served


def running_asr(model: pathlib.Path | str, **overrides) -> contextlib.AbstractAsyncContextManager:
    """Starts the ASR service in-process on a free port; yields (host, channel)."""
    return running("asr", "AsrSettings", model=str(model), **overrides)


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


tiny_seamless_checkpoint = tiny_checkpoint(
    "seamless_m4t_v2",
    "tiny-seamless",
    "A tiny random SeamlessM4T v2 checkpoint (all four tasks), built offline once per run.",
)
tiny_nllb_checkpoint = tiny_checkpoint(
    "nllb", "tiny-nllb", "A tiny random NLLB-200 checkpoint (text to text), built offline once."
)


def running_translate(
    model: pathlib.Path | str, text_model: pathlib.Path | str = "", **overrides
) -> contextlib.AbstractAsyncContextManager:
    """Starts the translate service in-process on a free port; yields (host, channel)."""
    return running(
        "translate", "TranslateSettings", model=str(model), text_model=str(text_model), **overrides
    )


@pytest.fixture(scope="session")
async def tiny_translate(tiny_seamless_checkpoint, tiny_nllb_checkpoint):
    """Translate on tiny random Seamless (default) and NLLB (text model): (host, channel)."""
    async with running_translate(tiny_seamless_checkpoint, tiny_nllb_checkpoint) as served:
        yield served


tiny_csm_checkpoint = tiny_checkpoint(
    "csm",
    "tiny-csm",
    "A tiny random CSM checkpoint (with its Mimi codec): voice cloning, built offline once.",
)
tiny_vits_checkpoint = tiny_checkpoint(
    "vits",
    "tiny-vits",
    "A tiny random VITS (MMS-TTS layout) checkpoint: a preset voice, built offline once.",
)


def running_tts(
    model: pathlib.Path | str, voices_dir: pathlib.Path, extra_models: str = "", **overrides
) -> contextlib.AbstractAsyncContextManager:
    """Starts the TTS service in-process on a free port; yields (host, channel)."""
    return running(
        "tts",
        "TtsSettings",
        model=str(model),
        extra_models=extra_models,
        voices_dir=str(voices_dir),
        **overrides,
    )


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
