"""The voice store (speechmesh.tts.voices: records, files, store): the stored voices, on disk,
across restarts, crashes, owners and threads."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from speechmesh.tts.engines.base import VoicePrompt
from speechmesh.tts.voices import store as store_module
from speechmesh.tts.voices.files import default_voices_dir
from speechmesh.tts.voices.records import (
    InvalidArgumentError,
    InvalidPageTokenError,
    InvalidVoiceIdError,
    StoredVoice,
    VoiceDataError,
    VoiceExistsError,
    VoiceMeta,
    VoiceNotFoundError,
)
from speechmesh.tts.voices.store import VoiceStore

RATE = 24000


def reference(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 150 * t) + 0.05 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def prompt(seed: int = 0, engine: str = "csm") -> VoicePrompt:
    rng = np.random.default_rng(seed)
    return VoicePrompt(
        engine=engine,
        transcript=f"hello number {seed}",
        language="en",
        arrays={
            "codes": rng.integers(0, 2048, size=(32, 40), dtype=np.int64),
            "audio": rng.standard_normal(RATE).astype(np.float32),
            "mask": rng.random(40) > 0.5,
            "scale": np.array(0.5, dtype=np.float16),
            "file": np.arange(3, dtype=np.uint8),  # names np.savez would choke on
            "allow_pickle": np.zeros(0, dtype=np.int32),
        },
    )


def meta(owner: str = "", seed: int = 0, **overrides) -> VoiceMeta:
    fields = dict(
        transcript=f"hello number {seed}",
        language="en",
        display_name=f"Voice {seed}",
        model="sesame/csm-1b",
        owner=owner,
    )
    return VoiceMeta(**{**fields, **overrides})


def add(store: VoiceStore, voice_id: str | None, owner: str = "", seed: int = 0) -> StoredVoice:
    return store.create(voice_id, meta(owner, seed), reference(seed=seed), RATE, prompt(seed))


def assert_same_prompt(got: VoicePrompt, want: VoicePrompt) -> None:
    assert (got.engine, got.transcript, got.language) == (
        want.engine,
        want.transcript,
        want.language,
    )
    assert sorted(got.arrays) == sorted(want.arrays)
    for name, array in want.arrays.items():
        assert got.arrays[name].dtype == array.dtype, name
        assert got.arrays[name].shape == array.shape, name
        np.testing.assert_array_equal(got.arrays[name], array)


def assert_not_found(voice_id: str, *calls) -> None:
    """Each of `calls` (store methods) raises VoiceNotFoundError for `voice_id`."""
    for call in calls:
        with pytest.raises(VoiceNotFoundError):
            call(voice_id)


def ids(voices: list[StoredVoice]) -> list[str]:
    return [voice.voice_id for voice in voices]


def everything(store: VoiceStore, owner: str = "", page_size: int = 2) -> list[str]:
    out, token = [], ""
    while True:
        page, token = store.list(page_size, token, owner=owner)
        out += ids(page)
        if not token:
            return out


@pytest.fixture
def store(tmp_path) -> VoiceStore:
    return VoiceStore(tmp_path / "voices")


# -- create, get, prompts ------------------------------------------------------------------------


def test_create_and_get(store):
    created = add(store, "alice", seed=1)
    assert created.name == "voices/alice"
    assert created.engine == "csm" and created.model == "sesame/csm-1b"
    assert created.display_name == "Voice 1" and created.transcript == "hello number 1"
    assert created.reference_seconds == pytest.approx(2.0)
    assert created.reference_sample_rate == RATE
    assert created.create_time.utcoffset().total_seconds() == 0
    assert store.get("alice") == created
    assert len(store) == 1


def test_prompt_arrays_round_trip_without_pickle(store):
    add(store, "alice", seed=1)
    got = store.load_prompt("alice")
    assert_same_prompt(got, prompt(1))
    assert not got.arrays["codes"].flags.writeable  # shared through the cache
    assert store.load_prompt("alice") is got
    # On disk: a plain .npz that loads with pickles refused.
    with np.load(store.root / "anonymous" / "alice" / "prompt.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["codes"], prompt(1).arrays["codes"])


def test_reference_audio_round_trip(store):
    add(store, "alice", seed=2)
    samples, rate = store.load_reference("alice")
    assert rate == RATE and samples.dtype == np.float32
    np.testing.assert_allclose(samples, reference(seed=2), atol=1e-6)  # 24-bit FLAC


def test_object_arrays_are_refused(store):
    bad = VoicePrompt("csm", "hi", "en", {"words": np.array(["a", None], dtype=object)})
    with pytest.raises(ValueError, match="Python objects"):
        store.create("alice", meta(), reference(), RATE, bad)
    with pytest.raises(VoiceNotFoundError):
        store.get("alice")


def test_random_ids(store):
    first, second = add(store, None), add(store, "")
    assert first.voice_id != second.voice_id
    for voice in (first, second):
        assert store.get(voice.voice_id) == voice
        assert voice.voice_id[0].isalpha() and voice.voice_id.islower()


@pytest.mark.parametrize("voice_id", ["a", "a-1", "x" * 63, "abc-def-9"])
def test_valid_ids(store, voice_id):
    assert add(store, voice_id).voice_id == voice_id


@pytest.mark.parametrize(
    "voice_id", ["A", "1abc", "-abc", "abc-", "x" * 64, "a_b", "a.b", "a b", "ünï", "../x", "a/b"]
)
def test_invalid_ids(store, voice_id):
    with pytest.raises(InvalidVoiceIdError) as info:
        add(store, voice_id)
    assert info.value.field == "voice_id" and "lowercase letters" in str(info.value)
    assert isinstance(info.value, ValueError) and info.value.voice_id == voice_id
    assert len(store) == 0
    assert not any((store.root / ".staging").iterdir())


def test_display_name_limit(store):
    with pytest.raises(InvalidArgumentError) as info:
        store.create("alice", meta(display_name="x" * 129), reference(), RATE, prompt())
    assert info.value.field == "display_name"


def test_existing_id(store):
    first = add(store, "alice", seed=1)
    with pytest.raises(VoiceExistsError) as info:
        add(store, "alice", seed=2)
    assert info.value.voice_id == "alice" and info.value.name == "voices/alice"
    assert store.get("alice") == first
    assert_same_prompt(store.load_prompt("alice"), prompt(1))


def test_missing_voice(store):
    for call in (store.get, store.load_prompt, store.load_reference, store.delete):
        with pytest.raises(VoiceNotFoundError) as info:
            call("nobody")
        assert info.value.name == "voices/nobody"
        assert isinstance(info.value, LookupError)


# -- delete --------------------------------------------------------------------------------------


def test_delete_and_recreate(store):
    add(store, "alice", seed=1)
    assert_same_prompt(store.load_prompt("alice"), prompt(1))  # now cached
    store.delete("alice")
    assert_not_found("alice", store.get, store.load_prompt)
    assert store.list()[0] == []
    assert not (store.root / "anonymous" / "alice").exists()
    assert not any((store.root / ".staging").iterdir())
    add(store, "alice", seed=2)  # the id is free again, and the old cached prompt is gone
    assert_same_prompt(store.load_prompt("alice"), prompt(2))


def test_a_prompt_in_use_outlives_its_voice(store):
    add(store, "alice", seed=1)
    held = store.load_prompt("alice")
    store.delete("alice")
    assert_same_prompt(held, prompt(1))


# -- restarts and crashes ------------------------------------------------------------------------


def test_voices_survive_a_restart(tmp_path):
    root = tmp_path / "voices"
    first = VoiceStore(root)
    created = [add(first, f"v{i}", seed=i) for i in range(3)]
    add(first, "other", owner="bob", seed=9)
    first.delete("v1")
    again = VoiceStore(root)
    assert everything(again) == ["v0", "v2"]
    assert again.get("v2") == created[2]
    assert_same_prompt(again.load_prompt("v0"), prompt(0))
    assert_same_prompt(again.load_prompt("other", owner="bob"), prompt(9))


def test_store_left_by_a_crash_still_opens(tmp_path):
    root = tmp_path / "voices"
    before = VoiceStore(root)
    for name in ("good", "no-prompt", "short-audio", "bad-json", "wrong-size", "gone"):
        add(before, name)
    voice_dir = root / "anonymous"
    # A create interrupted before its rename: a staging directory with part of a voice.
    partial = root / ".staging" / "create-0123456789abcdef"
    partial.mkdir()
    (partial / "reference.flac").write_bytes(b"fLaC\0\0")
    # A delete interrupted after its rename: the tombstone is still in staging.
    os.rename(voice_dir / "gone", root / ".staging" / "delete-0123456789abcdef")
    # Voice directories damaged behind the store's back.
    (voice_dir / "no-prompt" / "prompt.npz").unlink()
    flac = voice_dir / "short-audio" / "reference.flac"
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    (voice_dir / "bad-json" / "voice.json").write_text('{"format": 1, "voice_id": "bad-')
    with open(voice_dir / "wrong-size" / "prompt.npz", "ab") as f:
        f.write(b"\0" * 10)
    (voice_dir / "Not_An_Id").mkdir()
    (voice_dir / "stray.txt").write_text("not a voice")
    (root / "lost+found").mkdir()  # a volume's own folder: left alone
    # The crash was a while ago; a write another replica is making right now is not touched.
    old = time.time() - 3600
    for leftover in (root / ".staging").iterdir():
        os.utime(leftover, (old, old))
    in_progress = root / ".staging" / "create-fedcba9876543210"
    in_progress.mkdir()

    with capture_logs() as logs:
        after = VoiceStore(root)

    assert everything(after) == ["good"]
    assert_same_prompt(after.load_prompt("good"), prompt(0))
    assert list((root / ".staging").iterdir()) == [in_progress]
    skipped = {Path(e["path"]).name for e in logs if e["event"] == "voice_store_skipped_voice"}
    assert skipped == {
        "no-prompt",
        "short-audio",
        "bad-json",
        "wrong-size",
        "Not_An_Id",
        "stray.txt",
    }
    assert all(e["log_level"] == "warning" for e in logs if e["event"].endswith("skipped_voice"))
    moved = sorted(p.name.split(".")[1] for p in (root / ".corrupt").iterdir())
    assert moved == ["Not_An_Id", "bad-json", "no-prompt", "short-audio", "stray", "wrong-size"]
    assert (root / "lost+found").is_dir()
    add(after, "no-prompt", seed=3)  # a skipped voice's id can be used again
    assert everything(VoiceStore(root)) == ["good", "no-prompt"]


def test_a_failed_create_leaves_nothing(store, monkeypatch):
    def power_cut(src, dst):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "rename", power_cut)
    with pytest.raises(OSError):
        add(store, "alice")
    monkeypatch.undo()
    with pytest.raises(VoiceNotFoundError):
        store.get("alice")
    assert not any((store.root / ".staging").iterdir())
    assert not (store.root / "anonymous" / "alice").exists()
    add(store, "alice")


def test_prompt_damaged_after_start_up_is_a_data_error(store):
    add(store, "alice")
    path = store.root / "anonymous" / "alice" / "prompt.npz"
    data = bytearray(path.read_bytes())
    data[200:260] = b"\xff" * 60  # inside the first array: its checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(VoiceDataError) as info:
        store.load_prompt("alice")
    assert info.value.name == "voices/alice"


# -- listing -------------------------------------------------------------------------------------


def test_list_pages_in_creation_order(store):
    created = [add(store, f"v{i}", seed=i) for i in range(7)]
    keys = [(v.create_time, v.voice_id) for v in created]
    assert keys == sorted(keys)
    page, token = store.list(3)
    assert ids(page) == ["v0", "v1", "v2"] and token
    page, token = store.list(3, token)
    assert ids(page) == ["v3", "v4", "v5"] and token
    page, token = store.list(3, token)
    assert ids(page) == ["v6"] and token == ""
    page, token = store.list(7)
    assert len(page) == 7 and token == ""  # an exact fit: no empty last page
    assert everything(store, page_size=1) == [f"v{i}" for i in range(7)]


def test_list_page_size_defaults_and_limits(store, monkeypatch):
    assert store_module.DEFAULT_PAGE_SIZE == 50 and store_module.MAX_PAGE_SIZE == 1000
    monkeypatch.setattr(store_module, "DEFAULT_PAGE_SIZE", 3)
    monkeypatch.setattr(store_module, "MAX_PAGE_SIZE", 4)
    for i in range(6):
        store.create(f"v{i}", meta(), reference(0.1), RATE, VoicePrompt("csm", "hi", "en"))
    page, token = store.list()
    assert ids(page) == ["v0", "v1", "v2"] and token
    assert ids(store.list(0, token)[0]) == ["v3", "v4", "v5"]
    assert len(store.list(100)[0]) == 4


def test_deletes_between_pages_skip_nothing(store):
    for i in range(6):
        add(store, f"v{i}", seed=i)
    page, token = store.list(2)
    assert ids(page) == ["v0", "v1"]
    store.delete("v1")  # the voice the token points after
    store.delete("v2")  # the next one
    add(store, "v9")  # newer than all: comes at the end
    page, token = store.list(2, token)
    assert ids(page) == ["v3", "v4"]
    page, token = store.list(2, token)
    assert ids(page) == ["v5", "v9"] and token == ""


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "bm90IGpzb24",  # "not json"
        base64.urlsafe_b64encode(json.dumps([1, "x", 0, "v0"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"a": 1}).encode()).decode(),
        "\u00e9t\u00e9",
    ],
)
def test_bad_page_token(store, token):
    add(store, "v0")
    with pytest.raises(InvalidPageTokenError) as info:
        store.list(1, token)
    assert info.value.field == "page_token" and isinstance(info.value, ValueError)


def test_bad_page_size(store):
    with pytest.raises(InvalidArgumentError) as info:
        store.list(-1)
    assert info.value.field == "page_size"


# -- owners --------------------------------------------------------------------------------------


def test_owners_are_isolated(store):
    add(store, "alice", owner="ann", seed=1)
    add(store, "bob", owner="", seed=2)
    for call in (store.get, store.load_prompt, store.load_reference, store.delete):
        with pytest.raises(VoiceNotFoundError):
            call("alice", owner="ben")
        with pytest.raises(VoiceNotFoundError):
            call("alice")  # anonymous
    assert everything(store, owner="ann") == ["alice"]
    assert everything(store, owner="ben") == []
    assert everything(store) == ["bob"]
    # Another owner may take the same id without learning that it exists for someone else.
    theirs = add(store, "alice", owner="ben", seed=3)
    assert theirs.owner == "ben"
    assert_same_prompt(store.load_prompt("alice", owner="ann"), prompt(1))
    assert_same_prompt(store.load_prompt("alice", owner="ben"), prompt(3))
    store.delete("alice", owner="ben")
    assert store.get("alice", owner="ann").owner == "ann"


def test_page_tokens_belong_to_their_owner(store):
    for i in range(3):
        add(store, f"v{i}", owner="ann")
        add(store, f"v{i}", owner="ben")
    _, token = store.list(1, owner="ann")
    with pytest.raises(InvalidPageTokenError):
        store.list(1, token, owner="ben")
    assert ids(store.list(5, token, owner="ann")[0]) == ["v1", "v2"]


def test_owner_names_do_not_reach_the_file_system(store):
    add(store, "alice", owner="../../etc")
    add(store, "alice", owner="user@example.com")
    names = sorted(p.name for p in store.root.iterdir() if not p.name.startswith("."))
    assert len(names) == 2 and all(n.startswith("o-") and len(n) == 66 for n in names)


# -- threads -------------------------------------------------------------------------------------


def test_one_winner_when_many_create_the_same_id(store):
    threads = 8
    barrier = threading.Barrier(threads)

    def create(seed: int):
        barrier.wait()
        try:
            return add(store, "same", seed=seed)
        except VoiceExistsError:
            return None

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(create, range(threads)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    seed = int(winners[0].display_name.split()[-1])
    assert_same_prompt(store.load_prompt("same"), prompt(seed))
    assert [p.name for p in (store.root / "anonymous").iterdir()] == ["same"]
    assert not any((store.root / ".staging").iterdir())


def test_concurrent_creates_and_deletes(store):
    small = VoicePrompt("csm", "hi", "en", {"codes": np.arange(8)})

    def work(i: int) -> None:
        store.create(f"v{i}", meta(owner=f"o{i % 3}"), reference(0.2), RATE, small)
        if i % 2:
            store.delete(f"v{i}", owner=f"o{i % 3}")
        store.list(3, owner=f"o{i % 3}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(48)))
    kept = {(f"o{i % 3}", f"v{i}") for i in range(0, 48, 2)}
    listed = {(o, v) for o in ("o0", "o1", "o2") for v in everything(store, owner=o)}
    assert listed == kept
    assert len(store) == len(kept)
    reopened = VoiceStore(store.root)
    assert {(o, v) for o in ("o0", "o1", "o2") for v in everything(reopened, owner=o)} == kept
    assert not any((store.root / ".staging").iterdir())


# -- settings ------------------------------------------------------------------------------------


def test_prompt_cache_is_bounded(tmp_path):
    store = VoiceStore(tmp_path, prompt_cache_size=2)
    for i in range(3):
        add(store, f"v{i}", seed=i)
    first = store.load_prompt("v0")
    assert store.load_prompt("v0") is first
    store.load_prompt("v1")
    store.load_prompt("v2")  # evicts v0, the least recently used
    again = store.load_prompt("v0")
    assert again is not first
    assert_same_prompt(again, prompt(0))


def test_default_voices_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_voices_dir() == tmp_path / "data" / "speechmesh" / "voices"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_voices_dir() == tmp_path / "home" / ".local/share/speechmesh/voices"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_voices_dir() == tmp_path / "home" / ".local/share/speechmesh/voices"


def test_npz_file_is_plain(store):
    add(store, "alice")
    with zipfile.ZipFile(store.root / "anonymous" / "alice" / "prompt.npz") as zf:
        assert sorted(zf.namelist()) == sorted(f"{k}.npy" for k in prompt().arrays)


def test_replicas_sharing_a_directory_see_each_others_voices(tmp_path):
    root = tmp_path / "voices"
    a, b = VoiceStore(root), VoiceStore(root)  # two processes on one ReadWriteMany volume
    created = add(a, "shared", seed=4)
    assert b.get("shared") == created  # indexed on first use
    assert_same_prompt(b.load_prompt("shared"), prompt(4))
    assert [v.voice_id for v in b.list()[0]] == ["shared"]
    with pytest.raises(VoiceExistsError):
        add(b, "shared")
    a.delete("shared")
    assert_not_found("shared", b.get, b.delete)
    assert b.list()[0] == []
    # Re-created elsewhere with the same id: the new voice, never the old prompt.
    add(b, "shared", seed=5)
    assert_same_prompt(a.load_prompt("shared"), prompt(5))
