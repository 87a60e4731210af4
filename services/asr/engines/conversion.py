"""Whisper checkpoints converted for CTranslate2, once, into the model cache.

The conversion (ctranslate2's own TransformersConverter) runs the first time a checkpoint is
served with the CTranslate2 engine and is reused after: the cache entry's name carries a hash of
the checkpoint's files (path, sizes and modification times) and of the converter's version, so a
changed checkpoint is converted again. Weights are stored in float16 and quantized at load
(int8 on a CPU), so one entry serves every compute type.

An entry is written in a staging folder and renamed into place when complete: a conversion
interrupted half-way (killed, disk full) leaves only a staging folder, which never loads and is
removed by the next conversion once its writer is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import shutil
import uuid

import structlog

log = structlog.get_logger("speechmesh.asr")

STAGING = ".staging-"
#: Files a complete entry has (CTranslate2's model and its vocabulary).
ENTRY_FILES = ("model.bin", "config.json", "vocabulary.json")


class ConversionError(RuntimeError):
    """The checkpoint cannot be converted; the message says what to set."""


def cache_root(setting: str) -> pathlib.Path:
    """The model cache: the setting, else $XDG_CACHE_HOME/speechmesh, else ~/.cache/speechmesh."""
    if setting:
        return pathlib.Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "speechmesh"


def converted(source: pathlib.Path, cache: pathlib.Path) -> pathlib.Path:
    """The CTranslate2 copy of the checkpoint folder `source`, converting it if needed."""
    import ctranslate2

    folder = cache / "ctranslate2"
    entry = folder / f"{_slug(source)}-{_fingerprint(source, ctranslate2.__version__)}"
    if all((entry / name).is_file() for name in ENTRY_FILES):
        return entry
    folder.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder)
    staging = folder / f"{STAGING}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    log.info("model.converting", source=str(source), to=str(entry), runtime="ctranslate2")
    try:
        from ctranslate2.converters import TransformersConverter

        TransformersConverter(str(source), load_as_float16=True).convert(
            str(staging), quantization="float16", force=True
        )
        (staging / "speechmesh.json").write_text(json.dumps({"source": str(source)}) + "\n")
        try:
            staging.rename(entry)
        except OSError:  # another process finished the same conversion first
            if not all((entry / name).is_file() for name in ENTRY_FILES):
                raise
    except Exception as error:
        raise ConversionError(
            f"CTranslate2 cannot convert {source}: {error.__class__.__name__}: {error}."
            " Set SPEECHMESH_ASR_ENGINE=transformers (or --engine transformers) to serve it"
            " with transformers, or point SPEECHMESH_ASR_MODEL at a Whisper checkpoint"
        ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def _slug(source: pathlib.Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-") or "model"


def _fingerprint(source: pathlib.Path, version: str) -> str:
    digest = hashlib.sha256(f"{source.resolve()}\0{version}".encode())
    for path in sorted(source.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"\0{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _remove_abandoned(folder: pathlib.Path) -> None:
    """Staging folders whose writer is no longer running (an interrupted conversion)."""
    for staging in folder.glob(f"{STAGING}*"):
        pid = staging.name.removeprefix(STAGING).split("-")[0]
        if not (pid.isdigit() and _alive(int(pid))):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
