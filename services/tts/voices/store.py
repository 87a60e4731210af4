"""VoiceStore: the stored voices of every owner, on disk under one directory and indexed in
memory (see the package's docstring for the layout, durability and sharing rules)."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
import zipfile
from bisect import bisect_right, insort
from collections import OrderedDict
from pathlib import Path

import numpy as np
import structlog

from speechmesh.tts.engines.base import VoicePrompt
from speechmesh.tts.voices import files
from speechmesh.tts.voices.records import (
    MAX_DISPLAY_NAME_CHARS,
    VOICE_ID_PATTERN,
    InvalidArgumentError,
    InvalidPageTokenError,
    StoredVoice,
    VoiceDataError,
    VoiceExistsError,
    VoiceMeta,
    VoiceNotFoundError,
    VoiceStoreError,
    check_voice_id,
)

log = structlog.get_logger("speechmesh.tts.voices")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: Staging entries older than this (seconds) are leftovers of a crashed write.
STALE_STAGING_S = 600.0
_TOKEN_VERSION = 1


class VoiceStore:
    """Voices on disk under `root` (default `default_voices_dir()`), indexed in memory.

    Opening scans the directory: leftovers of interrupted writes are removed, voices that fail
    to load are moved aside with a warning, the rest are indexed. Prompts are read on first use
    and kept in an LRU cache of `prompt_cache_size` entries.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *, prompt_cache_size: int = 32):
        if prompt_cache_size < 0:
            raise ValueError("prompt_cache_size must be >= 0")
        self.root = Path(root) if root is not None else files.default_voices_dir()
        self._cache_size = prompt_cache_size
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], files.Record] = {}  # (owner, voice_id) -> record
        self._order: dict[str, list[tuple[int, str]]] = {}  # owner -> sorted listing keys
        self._prompts: OrderedDict[str, VoicePrompt] = OrderedDict()  # uid -> prompt, LRU
        self._open()

    # -- start-up --------------------------------------------------------------------------------

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / files.STAGING
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
            if not files.OWNER_DIR.fullmatch(owner_dir.name) or not owner_dir.is_dir():
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
            with files.open_dir(voice_dir) as fd:
                meta = files.read_meta(fd)
                owner = meta["owner"]
                if not isinstance(owner, str) or files.owner_dir_name(owner) != owner_dir.name:
                    raise ValueError(f"{files.META} belongs in another owner's directory")
                record = files.parse_record(meta, voice_dir, owner, voice_dir.name)
                files.check_files(fd, meta)
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

    def _index_put(self, record: files.Record) -> None:
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

    def _refresh(self, voice_id: str, owner: str) -> files.Record | None:
        """The voice's record as the disk has it now (None: no such voice), indexed."""
        path = self.root / files.owner_dir_name(owner) / voice_id
        try:
            with files.open_dir(path) as fd:
                meta = files.read_meta(fd)
                with self._lock:
                    current = self._records.get((owner, voice_id))
                if current is not None and meta.get("uid") == current.uid:
                    return current
                record = files.parse_record(meta, path, owner, voice_id)
                files.check_files(fd, meta)
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
        owner_dir = self.root / files.owner_dir_name(owner)
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
        name = f"{path.parent.name}.{path.name}.{secrets.token_hex(4)}"
        target = self.root / files.CORRUPT / name
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
        return self.root / files.STAGING / f"{kind}-{secrets.token_hex(8)}"

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
        reference = files.flac_bytes(samples, sample_rate)
        arrays = files.npz_bytes(prompt.arrays)
        owner_dir = self.root / files.owner_dir_name(meta.owner)

        random_id = not voice_id
        for _attempt in range(8):
            chosen = voice_id or "v" + secrets.token_hex(8)
            now = dt.datetime.now(dt.UTC)
            uid = secrets.token_hex(16)
            sizes = {files.REFERENCE: len(reference), files.PROMPT: len(arrays)}
            document = files.voice_document(
                chosen, uid, meta, prompt, len(samples), sample_rate, sizes, now
            )
            staging = self._staging_dir("create")
            staging.mkdir()
            try:
                files.write_voice(staging, reference, arrays, document)
                record = files.parse_record(document, owner_dir / chosen, meta.owner, chosen)
                with self._lock:
                    if (meta.owner, chosen) in self._records:
                        if random_id:
                            continue
                        raise VoiceExistsError(chosen)
                    if not owner_dir.is_dir():
                        owner_dir.mkdir()
                        files.fsync_dir(self.root)
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
                    files.fsync_dir(owner_dir)
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

    def _record(self, voice_id: str, owner: str) -> files.Record:
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
            with files.open_dir(record.path) as fd:
                meta = files.read_meta(fd)
                if meta.get("uid") != record.uid:
                    raise FileNotFoundError("replaced")  # deleted (and re-created) meanwhile
                prompt = files.read_prompt(fd, meta)
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
            with files.open_dir(record.path) as fd:
                samples, rate = files.read_reference(fd)
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
            files.fsync_dir(record.path.parent)
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
