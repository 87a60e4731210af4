"""A stored voice on disk: the directory layout, writing a voice's files durably, and reading
and checking them back (see the package's docstring for the layout and the durability rules).

Files are read through a directory descriptor (`open_dir`, `opener`), so a voice renamed away
meanwhile (a delete) is read whole or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf

from speechmesh.tts.engines.base import VoicePrompt
from speechmesh.tts.voices.records import StoredVoice, VoiceMeta

FORMAT_VERSION = 1

META = "voice.json"
REFERENCE = "reference.flac"
PROMPT = "prompt.npz"
STAGING = ".staging"
CORRUPT = ".corrupt"
ANONYMOUS = "anonymous"
OWNER_DIR = re.compile(r"anonymous|o-[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Record:
    """A voice as the store indexes it."""

    voice: StoredVoice
    #: Unique per creation, so a cached prompt of a deleted voice never serves its successor.
    uid: str
    path: Path
    key: tuple[int, str]  # (create time in µs since the epoch, voice id): the listing order


def default_voices_dir() -> Path:
    """$XDG_DATA_HOME/speechmesh/voices, else ~/.local/share/speechmesh/voices."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "speechmesh" / "voices"


def owner_dir_name(owner: str) -> str:
    """The directory of an owner's voices: owner names never reach the file system."""
    if not owner:
        return ANONYMOUS
    return "o-" + hashlib.sha256(owner.encode("utf-8")).hexdigest()


def to_micros(when: dt.datetime) -> int:
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


# -- writing -------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed .npz of arrays, refusing object arrays (np.savez would pickle them)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
                raise ValueError(f"prompt array name {key!r} is not a plain name")
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise ValueError(f"prompt array {key!r} holds Python objects; store plain arrays")
            with zf.open(f"{key}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buf.getvalue()


def flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


def voice_document(
    voice_id: str,
    uid: str,
    meta: VoiceMeta,
    prompt: VoicePrompt,
    samples: int,
    sample_rate: int,
    sizes: Mapping[str, int],
    now: dt.datetime,
) -> dict:
    """The voice.json of a new voice: `samples` of reference at `sample_rate`, and the byte
    sizes of its data files (REFERENCE, PROMPT) as written."""
    return {
        "format": FORMAT_VERSION,
        "uid": uid,
        "voice_id": voice_id,
        "owner": meta.owner,
        "display_name": meta.display_name,
        "language": meta.language,
        "transcript": meta.transcript,
        "model": meta.model,
        "engine": prompt.engine,
        "create_time_us": to_micros(now),
        "create_time": now.isoformat(),
        "reference": {
            "file": REFERENCE,
            "sample_rate": sample_rate,
            "samples": samples,
            "seconds": samples / sample_rate,
        },
        "prompt": {
            "file": PROMPT,
            "engine": prompt.engine,
            "transcript": prompt.transcript,
            "language": prompt.language,
        },
        "files": dict(sizes),
    }


def write_voice(directory: Path, reference: bytes, arrays: bytes, document: dict) -> None:
    """A voice's three files into an empty `directory`, each and the directory fsynced."""
    write_file(directory / REFERENCE, reference)
    write_file(directory / PROMPT, arrays)
    write_file(directory / META, json.dumps(document, indent=1).encode("utf-8"))
    fsync_dir(directory)


# -- reading -------------------------------------------------------------------------------------


def opener(dir_fd: int):
    """An `open` opener resolving names inside one directory (it may be renamed meanwhile)."""
    return lambda name, flags: os.open(name, flags, dir_fd=dir_fd)


@contextlib.contextmanager
def open_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def read_meta(dir_fd: int) -> dict:
    with open(META, "rb", opener=opener(dir_fd)) as f:
        meta = json.loads(f.read().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{META} is not a format {FORMAT_VERSION} voice")
    return meta


def parse_record(meta: dict, path: Path, owner: str, voice_id: str) -> Record:
    """The record of a voice.json; ValueError/KeyError/TypeError when it does not fit."""
    if meta["voice_id"] != voice_id or meta["owner"] != owner:
        raise ValueError(f"{META} names another voice or owner")
    micros = int(meta["create_time_us"])
    reference = meta["reference"]
    fields = ("display_name", "language", "transcript", "model", "engine", "uid")
    prompt = meta["prompt"]
    if not all(isinstance(meta[name], str) for name in fields) or not all(
        isinstance(prompt[name], str) for name in ("engine", "transcript", "language")
    ):
        raise TypeError(f"{META} has a field of the wrong type")
    voice = StoredVoice(
        voice_id=voice_id,
        owner=owner,
        display_name=meta["display_name"],
        language=meta["language"],
        transcript=meta["transcript"],
        model=meta["model"],
        engine=meta["engine"],
        reference_seconds=float(reference["seconds"]),
        reference_sample_rate=int(reference["sample_rate"]),
        create_time=from_micros(micros),
    )
    return Record(voice=voice, uid=meta["uid"], path=path, key=(micros, voice_id))


def check_files(dir_fd: int, meta: dict) -> None:
    """Every data file is there with the size recorded when it was written (and opens)."""
    sizes = meta["files"]
    for name in (REFERENCE, PROMPT):
        size = os.stat(name, dir_fd=dir_fd).st_size
        if size != int(sizes[name]):
            raise ValueError(f"{name} is {size} bytes, {sizes[name]} were written")
    # The zip's directory is at its end, so this also catches truncation; member checksums are
    # verified when the prompt is first loaded (reading every voice at start-up would be slow).
    with open(PROMPT, "rb", opener=opener(dir_fd)) as f, zipfile.ZipFile(f) as zf:
        if not all(name.endswith(".npy") for name in zf.namelist()):
            raise ValueError(f"{PROMPT} holds something other than arrays")
    with open(REFERENCE, "rb", opener=opener(dir_fd)) as f:
        info = sf.info(f)
    if info.frames != int(meta["reference"]["samples"]):
        raise ValueError(f"{REFERENCE} has {info.frames} samples, expected more")


def read_prompt(dir_fd: int, meta: dict) -> VoicePrompt:
    with open(PROMPT, "rb", opener=opener(dir_fd)) as f, np.load(f, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for array in arrays.values():
        array.setflags(write=False)  # shared by every caller through the cache
    prompt = meta["prompt"]
    return VoicePrompt(
        engine=prompt["engine"],
        transcript=prompt["transcript"],
        language=prompt["language"],
        arrays=arrays,
    )


def read_reference(dir_fd: int) -> tuple[np.ndarray, int]:
    """The stored reference recording: (float32 mono samples, sample rate)."""
    with open(REFERENCE, "rb", opener=opener(dir_fd)) as f:
        return sf.read(f, dtype="float32")
