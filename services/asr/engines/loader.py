"""Choosing and loading a service's ASR engine: SenseVoice by its folder, Whisper on
CTranslate2 or transformers by setting.

A folder in FunASR's SenseVoice layout (config.yaml naming SenseVoiceSmall, beside model.pt) is
served by the SenseVoice engine whatever SPEECHMESH_ASR_ENGINE says: that setting picks the
runtime of Whisper checkpoints. For those, `auto` serves a checkpoint with CTranslate2 (the faster
runtime, on CPU and GPU) when the `ctranslate2` package is installed and can convert it, and with
transformers otherwise; naming an engine serves it with that one or fails start-up saying why.
"""

from __future__ import annotations

import os
import pathlib

import structlog

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.engines.base import AsrEngine
from speechmesh.asr.engines.sensevoice_checkpoint import has_funasr_layout, is_sensevoice_checkpoint
from speechmesh.inference.devices import resolve_device, resolve_dtype

log = structlog.get_logger("speechmesh.asr")


def load_engine(name: str, path: pathlib.Path, settings: AsrSettings) -> AsrEngine:
    """The engine the settings ask for, loaded from the checkpoint folder `path`."""
    if has_funasr_layout(path):
        if not is_sensevoice_checkpoint(path):
            raise ValueError(
                f"{path} is a FunASR checkpoint of another model than SenseVoiceSmall (its"
                " config.yaml says which); only SenseVoice is served from FunASR folders"
            )
        from speechmesh.asr.engines.sensevoice import SenseVoiceEngine

        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device, SenseVoiceEngine.family)
        return SenseVoiceEngine(name, path, device, dtype)
    if settings.engine in ("auto", "ctranslate2"):
        try:
            return _ctranslate2(name, path, settings)
        except Exception as error:
            if settings.engine == "ctranslate2":
                raise
            log.warning(
                "engine.fallback",
                model=name,
                engine="transformers",
                reason=f"CTranslate2 could not serve it: {error}",
            )
    from speechmesh.asr.engines.whisper import WhisperEngine

    device = resolve_device(settings.device)
    return WhisperEngine(name, path, device, resolve_dtype(settings.dtype, device))


def _ctranslate2(name: str, path: pathlib.Path, settings: AsrSettings) -> AsrEngine:
    try:
        import ctranslate2  # noqa: F401
    except ImportError as error:
        raise RuntimeError(
            "the ctranslate2 package is not installed (pip install ctranslate2), or set"
            " SPEECHMESH_ASR_ENGINE=transformers"
        ) from error
    from speechmesh.asr.engines.conversion import cache_root, converted
    from speechmesh.asr.engines.whisper_ct2 import CTranslate2WhisperEngine

    device = resolve_device(settings.device)
    gpu = device.type == "cuda"
    compute_type = settings.compute_type
    if compute_type == "auto":
        compute_type = "float16" if gpu else "int8"
    cores = os.cpu_count() or 1
    workers = settings.workers or (1 if gpu else min(2, cores))
    threads = settings.threads or cores
    return CTranslate2WhisperEngine(
        name,
        path,
        converted(path, cache_root(settings.cache_dir)),
        device="cuda" if gpu else "cpu",
        device_index=device.index or 0,
        compute_type=compute_type,
        workers=workers,
        threads=threads,
        packing=settings.packing,
    )
