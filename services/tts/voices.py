"""Stored voices: the `voices/{voice}` resources, kept on disk so they survive restarts.

A voice is its metadata, its normalised reference recording and the VoicePrompt arrays an
engine prepared from it. Layout under the store's directory:

    <root>/
      .staging/                  work in progress, same filesystem; emptied at start-up
        create-<hex>/            a voice being written
        delete-<hex>/            a deleted voice being removed
      .corrupt/                  voice directories that failed to load, moved aside (kept)
      <owner-dir>/               "anonymous" for owner "", else "o-" + sha256(owner) in hex
        <voice_id>/
          voice.json             metadata (format, ids, owner, texts, times, file sizes)
          reference.flac         the normalised reference recording, 24-bit FLAC
          prompt.npz             the VoicePrompt arrays (an uncompressed .npz; no pickles)

Durability: a voice is written whole into a staging directory, every file and the directory
are fsynced, then the directory is renamed into place (atomic on POSIX; rename refuses to
replace a non-empty directory, so of two creates of one id exactly one wins) and the parent is
fsynced. A crash therefore never leaves a half-written voice visible. Deletes rename the voice
into staging, then remove it. At start-up, staging is emptied and a voice directory that fails
to load (missing, truncated or unreadable files) is logged and moved to `.corrupt/`.

Each owner has its own namespace of voice ids, so one owner can neither see, delete nor even
learn of the existence of another's voices (the same id may exist for both).

The store is synchronous and thread-safe (one lock guards the index; files are written and
read outside it); servicers call it with `asyncio.to_thread`. Several processes may share a
directory (TTS replicas on one ReadWriteMany volume): every lookup checks the voice's
voice.json on disk and every listing scans the owner's folder, so each sees the others' creates
and deletes at once; the atomic rename keeps ids unique across them, and start-up only removes
staging entries old enough to be leftovers of a crash.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import threading
import time
import zipfile
from bisect import bisect_right, insort
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import structlog

from speechmesh.tts.engines.base import VoicePrompt

log = structlog.get_logger("speechmesh.tts.voices")

FORMAT_VERSION = 1
VOICE_ID_PATTERN = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_DISPLAY_NAME_CHARS = 128

_META = "voice.json"
_REFERENCE = "reference.flac"
_PROMPT = "prompt.npz"
_STAGING = ".staging"
_CORRUPT = ".corrupt"
_ANONYMOUS = "anonymous"
_OWNER_DIR = re.compile(r"anonymous|o-[0-9a-f]{64}")
_TOKEN_VERSION = 1
#: Staging entries older than this (seconds) are leftovers of a crashed write.
STALE_STAGING_S = 600.0


# -- errors --------------------------------------------------------------------------------------


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class VoiceStoreError(Exception):
    """Base of the store's errors; str() is a message fit for API callers."""


class InvalidArgumentError(VoiceStoreError, ValueError):
    """A bad argument; `field` names it ("voice_id", "page_token", "page_size", ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidVoiceIdError(InvalidArgumentError):
    """A voice id that is not an RFC 1034 label; `voice_id` is the id given."""

    def __init__(self, voice_id: str):
        super().__init__(
            "voice_id",
            f"voice id {_clip(voice_id)!r} is not valid: use 1 to 63 lowercase letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen",
        )
        self.voice_id = voice_id


class InvalidPageTokenError(InvalidArgumentError):
    """A page token this store did not issue for this owner."""

    def __init__(self, message: str = "page_token is not valid: send a next_page_token as given"):
        super().__init__("page_token", message)


class VoiceExistsError(VoiceStoreError):
    """The owner already has a voice with this id (ALREADY_EXISTS); `voice_id`, `name`."""

    def __init__(self, voice_id: str):
        super().__init__(f"voice voices/{voice_id} already exists")
        self.voice_id = voice_id
        self.name = f"voices/{voice_id}"


class VoiceNotFoundError(VoiceStoreError, LookupError):
    """No such voice for this owner (NOT_FOUND); `voice_id`, `name`."""

    def __init__(self, voice_id: str):
        super().__init__(f"voice voices/{voice_id} not found")
        self.voice_id = voice_id
        self.name = f"voices/{voice_id}"


class VoiceDataError(VoiceStoreError):
    """A listed voice whose files could not be read (a disk fault; DATA_LOSS / INTERNAL)."""

    def __init__(self, voice_id: str, detail: str):
        super().__init__(f"the stored data of voice voices/{voice_id} cannot be read: {detail}")
        self.voice_id = voice_id
        self.name = f"voices/{voice_id}"


# -- values --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VoiceMeta:
    """What a caller says about a new voice (the engine family comes from the prompt)."""

    #: The exact words of the reference recording (checked by the caller, see check_transcript).
    transcript: str
    #: BCP-47 language of the recording.
    language: str = ""
    #: Human-readable label, at most 128 characters.
    display_name: str = ""
    #: Name of the model the voice is prepared for.
    model: str = ""
    #: Identity owning the voice; "" is anonymous.
    owner: str = ""


@dataclasses.dataclass(frozen=True)
class StoredVoice:
    """A stored voice's metadata, as the Voice resource shows it."""

    voice_id: str
    owner: str
    display_name: str
    language: str
    transcript: str
    model: str
    #: Engine family of the prompt, e.g. "csm".
    engine: str
    #: Length of the stored reference recording, seconds.
    reference_seconds: float
    #: Sample rate of the stored reference recording, Hz.
    reference_sample_rate: int
    #: When the voice was created, UTC (microsecond precision).
    create_time: dt.datetime

    @property
    def name(self) -> str:
        """Resource name, "voices/{voice_id}"."""
        return f"voices/{self.voice_id}"


@dataclasses.dataclass(frozen=True)
class _Record:
    voice: StoredVoice
    #: Unique per creation, so a cached prompt of a deleted voice never serves its successor.
    uid: str
    path: Path
    key: tuple[int, str]  # (create time in µs since the epoch, voice id): the listing order


# -- helpers -------------------------------------------------------------------------------------


def default_voices_dir() -> Path:
    """$XDG_DATA_HOME/speechmesh/voices, else ~/.local/share/speechmesh/voices."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "share"
    return root / "speechmesh" / "voices"


def check_voice_id(voice_id: str) -> str:
    """The id if it is an RFC 1034 label (1-63 of [a-z0-9-], letter first, no hyphen last)."""
    if not isinstance(voice_id, str) or not VOICE_ID_PATTERN.fullmatch(voice_id):
        raise InvalidVoiceIdError(str(voice_id))
    return voice_id


def _owner_dir_name(owner: str) -> str:
    if not owner:
        return _ANONYMOUS
    return "o-" + hashlib.sha256(owner.encode("utf-8")).hexdigest()


def _micros(when: dt.datetime) -> int:
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
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


def _flac_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


def _opener(dir_fd: int):
    """An `open` opener resolving names inside one directory (it may be renamed meanwhile)."""
    return lambda name, flags: os.open(name, flags, dir_fd=dir_fd)


@contextlib.contextmanager
def _open_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


def _read_meta(dir_fd: int) -> dict:
    with open(_META, "rb", opener=_opener(dir_fd)) as f:
        meta = json.loads(f.read().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{_META} is not a format {FORMAT_VERSION} voice")
    return meta


def _parse_record(meta: dict, path: Path, owner: str, voice_id: str) -> _Record:
    """The record of a voice.json; ValueError/KeyError/TypeError when it does not fit."""
    if meta["voice_id"] != voice_id or meta["owner"] != owner:
        raise ValueError(f"{_META} names another voice or owner")
    micros = int(meta["create_time_us"])
    reference = meta["reference"]
    fields = ("display_name", "language", "transcript", "model", "engine", "uid")
    prompt = meta["prompt"]
    if not all(isinstance(meta[name], str) for name in fields) or not all(
        isinstance(prompt[name], str) for name in ("engine", "transcript", "language")
    ):
        raise TypeError(f"{_META} has a field of the wrong type")
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
        create_time=_from_micros(micros),
    )
    return _Record(voice=voice, uid=meta["uid"], path=path, key=(micros, voice_id))


def _check_files(dir_fd: int, meta: dict) -> None:
    """Every data file is there with the size recorded when it was written (and opens)."""
    sizes = meta["files"]
    for name in (_REFERENCE, _PROMPT):
        size = os.stat(name, dir_fd=dir_fd).st_size
        if size != int(sizes[name]):
            raise ValueError(f"{name} is {size} bytes, {sizes[name]} were written")
    # The zip's directory is at its end, so this also catches truncation; member checksums are
    # verified when the prompt is first loaded (reading every voice at start-up would be slow).
    with open(_PROMPT, "rb", opener=_opener(dir_fd)) as f, zipfile.ZipFile(f) as zf:
        if not all(name.endswith(".npy") for name in zf.namelist()):
            raise ValueError(f"{_PROMPT} holds something other than arrays")
    with open(_REFERENCE, "rb", opener=_opener(dir_fd)) as f:
        info = sf.info(f)
    if info.frames != int(meta["reference"]["samples"]):
        raise ValueError(f"{_REFERENCE} has {info.frames} samples, expected more")


def _read_prompt(dir_fd: int, meta: dict) -> VoicePrompt:
    with open(_PROMPT, "rb", opener=_opener(dir_fd)) as f, np.load(f, allow_pickle=False) as npz:
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


# -- the store -----------------------------------------------------------------------------------


class VoiceStore:
    """Voices on disk under `root` (default `default_voices_dir()`), indexed in memory.

    Opening scans the directory: leftovers of interrupted writes are removed, voices that fail
    to load are moved aside with a warning, the rest are indexed. Prompts are read on first use
    and kept in an LRU cache of `prompt_cache_size` entries.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, prompt_cache_size: int = 32):
        if prompt_cache_size < 0:
            raise ValueError("prompt_cache_size must be >= 0")
        self.root = Path(root) if root is not None else default_voices_dir()
        self._cache_size = prompt_cache_size
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], _Record] = {}  # (owner, voice_id) -> record
        self._order: dict[str, list[tuple[int, str]]] = {}  # owner -> sorted listing keys
        self._prompts: OrderedDict[str, VoicePrompt] = OrderedDict()  # uid -> prompt, LRU
        self._open()

    # -- start-up --------------------------------------------------------------------------------

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / _STAGING
        if staging.is_dir():
            # Other replicas may be writing into staging right now (a shared volume): only
            # entries older than any write takes are leftovers of a crash.
            stale = time.time() - STALE_STAGING_S
            for leftover in staging.iterdir():
                with contextlib.suppress(OSError):
                    if leftover.lstat().st_mtime < stale:
                        log.info("voice_store_leftover_removed", path=str(leftover))
                        self._remove(leftover)
        staging.mkdir(exist_ok=True)
        skipped = 0
        for owner_dir in sorted(self.root.iterdir()):
            # Only our own names: a volume's root may hold others (lost+found).
            if not _OWNER_DIR.fullmatch(owner_dir.name) or not owner_dir.is_dir():
                continue
            try:
                voice_dirs = sorted(owner_dir.iterdir())
            except OSError as exc:
                log.warning("voice_store_skipped_owner", path=str(owner_dir), error=str(exc))
                continue
            for voice_dir in voice_dirs:
                if not self._load(owner_dir, voice_dir):
                    skipped += 1
        log.info(
            "voice_store_opened", root=str(self.root), voices=len(self._records), skipped=skipped
        )

    def _load(self, owner_dir: Path, voice_dir: Path) -> bool:
        """Index one voice directory; on failure move it aside, warn and return False."""
        try:
            if not voice_dir.is_dir():
                raise ValueError("not a directory")
            check_voice_id(voice_dir.name)
            with _open_dir(voice_dir) as fd:
                meta = _read_meta(fd)
                owner = meta["owner"]
                if not isinstance(owner, str) or _owner_dir_name(owner) != owner_dir.name:
                    raise ValueError(f"{_META} belongs in another owner's directory")
                record = _parse_record(meta, voice_dir, owner, voice_dir.name)
                _check_files(fd, meta)
        except Exception as exc:  # any fault of one voice must not stop the store
            error = f"{type(exc).__name__}: {exc}"
            log.warning("voice_store_skipped_voice", path=str(voice_dir), error=error)
            self._quarantine(voice_dir)
            return False
        self._records[(record.voice.owner, record.voice.voice_id)] = record
        insort(self._order.setdefault(record.voice.owner, []), record.key)
        return True

    # -- other processes sharing the directory -----------------------------------------------
    #
    # Several replicas may share one store (a ReadWriteMany volume). Each keeps its own index,
    # so every lookup checks the voice's voice.json on disk: a voice another process created is
    # indexed on first use, one it deleted is dropped, one it re-created replaces the old.

    def _index_put(self, record: _Record) -> None:
        """Index `record`, replacing an older record of the same voice. Under the lock."""
        owner, voice_id = record.voice.owner, record.voice.voice_id
        self._index_drop(owner, voice_id)
        self._records[(owner, voice_id)] = record
        insort(self._order.setdefault(owner, []), record.key)

    def _index_drop(self, owner: str, voice_id: str) -> None:
        """Forget a voice. Under the lock."""
        old = self._records.pop((owner, voice_id), None)
        if old is not None:
            order = self._order[owner]
            order.pop(bisect_right(order, old.key) - 1)
            self._prompts.pop(old.uid, None)

    def _refresh(self, voice_id: str, owner: str) -> _Record | None:
        """The voice's record as the disk has it now (None: no such voice), indexed."""
        path = self.root / _owner_dir_name(owner) / voice_id
        try:
            with _open_dir(path) as fd:
                meta = _read_meta(fd)
                with self._lock:
                    current = self._records.get((owner, voice_id))
                if current is not None and meta.get("uid") == current.uid:
                    return current
                record = _parse_record(meta, path, owner, voice_id)
                _check_files(fd, meta)
        except FileNotFoundError:
            record = None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Another process's voice that does not read: leave it, it is not ours to move.
            log.warning("voice_store_unreadable_voice", path=str(path), error=str(exc))
            record = None
        with self._lock:
            if record is None:
                self._index_drop(owner, voice_id)
            else:
                self._index_put(record)
        return record

    def _sync_owner(self, owner: str) -> None:
        """Bring the owner's index in line with the owner's directory."""
        owner_dir = self.root / _owner_dir_name(owner)
        try:
            on_disk = {p.name for p in owner_dir.iterdir() if VOICE_ID_PATTERN.fullmatch(p.name)}
        except FileNotFoundError:
            on_disk = set()
        with self._lock:
            indexed = {voice_id for (o, voice_id) in self._records if o == owner}
        for voice_id in indexed - on_disk:
            with self._lock:
                self._index_drop(owner, voice_id)
        for voice_id in on_disk - indexed:
            self._refresh(voice_id, owner)

    def _quarantine(self, path: Path) -> None:
        target = self.root / _CORRUPT / f"{path.parent.name}.{path.name}.{secrets.token_hex(4)}"
        try:
            target.parent.mkdir(exist_ok=True)
            os.rename(path, target)
            log.warning("voice_store_moved_aside", path=str(path), to=str(target))
        except OSError as exc:
            log.warning("voice_store_move_aside_failed", path=str(path), error=str(exc))

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()

    def _staging_dir(self, kind: str) -> Path:
        return self.root / _STAGING / f"{kind}-{secrets.token_hex(8)}"

    # -- API -------------------------------------------------------------------------------------

    def create(
        self,
        voice_id: str | None,
        meta: VoiceMeta,
        audio: np.ndarray,
        sample_rate: int,
        prompt: VoicePrompt,
    ) -> StoredVoice:
        """Store a new voice: `audio` is the normalised reference (float32 mono at sample_rate),
        `prompt` what the engine prepared from it. voice_id None or "": a random id.

        Raises InvalidVoiceIdError, VoiceExistsError (the owner has this id), InvalidArgumentError
        (display_name too long) and ValueError (empty or non-finite audio, object arrays).
        """
        if voice_id:
            check_voice_id(voice_id)
            with self._lock:  # fail fast; the commit below checks again
                if (meta.owner, voice_id) in self._records:
                    raise VoiceExistsError(voice_id)
        if len(meta.display_name) > MAX_DISPLAY_NAME_CHARS:
            raise InvalidArgumentError(
                "display_name",
                f"display name is {len(meta.display_name)} characters long; at most "
                f"{MAX_DISPLAY_NAME_CHARS} are allowed",
            )
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1 or not len(samples) or not np.isfinite(samples).all():
            raise ValueError("reference audio must be non-empty, finite, mono samples")
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        reference = _flac_bytes(samples, sample_rate)
        arrays = _npz_bytes(prompt.arrays)
        owner_dir = self.root / _owner_dir_name(meta.owner)

        random_id = not voice_id
        for _attempt in range(8):
            chosen = voice_id or "v" + secrets.token_hex(8)
            now = dt.datetime.now(dt.UTC)
            uid = secrets.token_hex(16)
            document = {
                "format": FORMAT_VERSION,
                "uid": uid,
                "voice_id": chosen,
                "owner": meta.owner,
                "display_name": meta.display_name,
                "language": meta.language,
                "transcript": meta.transcript,
                "model": meta.model,
                "engine": prompt.engine,
                "create_time_us": _micros(now),
                "create_time": now.isoformat(),
                "reference": {
                    "file": _REFERENCE,
                    "sample_rate": sample_rate,
                    "samples": len(samples),
                    "seconds": len(samples) / sample_rate,
                },
                "prompt": {
                    "file": _PROMPT,
                    "engine": prompt.engine,
                    "transcript": prompt.transcript,
                    "language": prompt.language,
                },
                "files": {_REFERENCE: len(reference), _PROMPT: len(arrays)},
            }
            staging = self._staging_dir("create")
            staging.mkdir()
            try:
                _write_file(staging / _REFERENCE, reference)
                _write_file(staging / _PROMPT, arrays)
                _write_file(staging / _META, json.dumps(document, indent=1).encode("utf-8"))
                _fsync_dir(staging)
                record = _parse_record(document, owner_dir / chosen, meta.owner, chosen)
                with self._lock:
                    if (meta.owner, chosen) in self._records:
                        if random_id:
                            continue
                        raise VoiceExistsError(chosen)
                    if not owner_dir.is_dir():
                        owner_dir.mkdir()
                        _fsync_dir(self.root)
                    try:
                        os.rename(staging, record.path)
                    except OSError as exc:
                        if not record.path.exists():
                            raise
                        # Not in the index but on disk: only another process writes here.
                        log.warning("voice_store_unindexed_voice", path=str(record.path))
                        if random_id:
                            continue
                        raise VoiceExistsError(chosen) from exc
                    _fsync_dir(owner_dir)
                    self._records[(meta.owner, chosen)] = record
                    insort(self._order.setdefault(meta.owner, []), record.key)
                log.info("voice_created", voice=record.voice.name, engine=prompt.engine)
                return record.voice
            finally:
                if staging.exists():
                    self._remove(staging)
        raise VoiceStoreError("could not pick a free random voice id; try again")

    def get(self, voice_id: str, owner: str = "") -> StoredVoice:
        """The voice's metadata; VoiceNotFoundError if the owner has no such voice."""
        return self._record(voice_id, owner).voice

    def _record(self, voice_id: str, owner: str) -> _Record:
        if not VOICE_ID_PATTERN.fullmatch(voice_id):
            raise VoiceNotFoundError(voice_id)
        record = self._refresh(voice_id, owner)
        if record is None:
            raise VoiceNotFoundError(voice_id)
        return record

    def load_prompt(self, voice_id: str, owner: str = "") -> VoicePrompt:
        """The voice's VoicePrompt (arrays read-only), from the LRU cache or the disk.

        Raises VoiceNotFoundError, or VoiceDataError if the files cannot be read.
        """
        record = self._record(voice_id, owner)
        with self._lock:
            cached = self._prompts.get(record.uid)
            if cached is not None:
                self._prompts.move_to_end(record.uid)
                return cached
        try:
            with _open_dir(record.path) as fd:
                meta = _read_meta(fd)
                if meta.get("uid") != record.uid:
                    raise FileNotFoundError("replaced")  # deleted (and re-created) meanwhile
                prompt = _read_prompt(fd, meta)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            with self._lock:
                current = self._records.get((owner, voice_id))
            if current is None or current.uid != record.uid:
                raise VoiceNotFoundError(voice_id) from exc
            raise VoiceDataError(voice_id, f"{type(exc).__name__}: {exc}") from exc
        with self._lock:
            current = self._records.get((owner, voice_id))
            if self._cache_size and current is not None and current.uid == record.uid:
                self._prompts[record.uid] = prompt
                self._prompts.move_to_end(record.uid)
                while len(self._prompts) > self._cache_size:
                    self._prompts.popitem(last=False)
        return prompt

    def load_reference(self, voice_id: str, owner: str = "") -> tuple[np.ndarray, int]:
        """The stored reference recording: (float32 mono samples, sample rate)."""
        record = self._record(voice_id, owner)
        try:
            with _open_dir(record.path) as fd, open(_REFERENCE, "rb", opener=_opener(fd)) as f:
                samples, rate = sf.read(f, dtype="float32")
        except (OSError, RuntimeError) as exc:
            with self._lock:
                current = self._records.get((owner, voice_id))
            if current is not record:
                raise VoiceNotFoundError(voice_id) from exc
            raise VoiceDataError(voice_id, f"{type(exc).__name__}: {exc}") from exc
        return samples, rate

    def list(
        self, page_size: int = 0, page_token: str = "", owner: str = ""
    ) -> tuple[list[StoredVoice], str]:
        """A page of the owner's voices, oldest first (ties by id), and the next page's token
        ("" after the last page). page_size 0: DEFAULT_PAGE_SIZE; above MAX_PAGE_SIZE: that.

        Tokens name the last voice returned, so deletes between pages skip nothing. Raises
        InvalidPageTokenError and InvalidArgumentError (negative page_size).
        """
        if page_size < 0:
            raise InvalidArgumentError("page_size", f"page_size must be >= 0, got {page_size}")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        after = self._decode_token(page_token, owner) if page_token else None
        self._sync_owner(owner)
        with self._lock:
            order = self._order.get(owner, [])
            start = bisect_right(order, after) if after is not None else 0
            keys = order[start : start + size]
            voices = [self._records[(owner, key[1])].voice for key in keys]
            more = start + size < len(order)
        token = self._encode_token(keys[-1], owner) if more and keys else ""
        return voices, token

    def delete(self, voice_id: str, owner: str = "") -> None:
        """Delete the voice and its files; VoiceNotFoundError if the owner has no such voice.

        Callers already holding its prompt keep it."""
        tombstone = self._staging_dir("delete")
        record = self._record(voice_id, owner)
        with self._lock:
            try:
                os.rename(record.path, tombstone)
            except FileNotFoundError:  # another process deleted it first
                self._index_drop(owner, voice_id)
                raise VoiceNotFoundError(voice_id) from None
            _fsync_dir(record.path.parent)
            self._index_drop(owner, voice_id)
        log.info("voice_deleted", voice=record.voice.name)
        self._remove(tombstone)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    # -- page tokens -----------------------------------------------------------------------------

    @staticmethod
    def _owner_tag(owner: str) -> str:
        return hashlib.sha256(b"page-token\0" + owner.encode("utf-8")).hexdigest()[:16]

    def _encode_token(self, key: tuple[int, str], owner: str) -> str:
        body = json.dumps([_TOKEN_VERSION, self._owner_tag(owner), key[0], key[1]])
        return base64.urlsafe_b64encode(body.encode("utf-8")).decode("ascii").rstrip("=")

    def _decode_token(self, token: str, owner: str) -> tuple[int, str]:
        try:
            padded = token + "=" * (-len(token) % 4)
            body = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            version, tag, micros, voice_id = body
        except (ValueError, TypeError, UnicodeError, binascii.Error) as exc:
            raise InvalidPageTokenError() from exc
        if (
            version != _TOKEN_VERSION
            or tag != self._owner_tag(owner)
            or not isinstance(micros, int)
            or not isinstance(voice_id, str)
        ):
            raise InvalidPageTokenError()
        return micros, voice_id
