"""The Whisper base cache of tests/whisper_base.py: built once, atomically, reused when complete,
and a failed build is an error that carries the build's output (scripts stand in for the real
build, which downloads 140 MB)."""

from __future__ import annotations

import pathlib

import pytest

from tests.whisper_base import FILES, build_whisper_base


def script(folder: pathlib.Path, body: str) -> pathlib.Path:
    path = folder / "build.sh"
    path.write_text('set -eu\ndest=$1\necho "run" >>"$(dirname "$0")/runs"\n' + body)
    return path


def writes_every_file(folder: pathlib.Path) -> pathlib.Path:
    return script(folder, "".join(f'echo x >"$dest/{name}"\n' for name in FILES))


def test_built_once_then_reused(tmp_path):
    build = writes_every_file(tmp_path)
    dest = tmp_path / "cache" / "whisper-base"
    assert build_whisper_base(dest, build) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
    assert build_whisper_base(dest, build) == dest
    assert (tmp_path / "runs").read_text().count("run") == 1
    assert [p.name for p in dest.parent.iterdir()] == ["whisper-base"]  # no build folder left


def test_failed_build_raises_with_its_output_and_leaves_nothing(tmp_path):
    build = script(tmp_path, 'echo "pip: no matching distribution" >&2\nexit 3\n')
    dest = tmp_path / "cache" / "whisper-base"
    with pytest.raises(RuntimeError, match=r"(?s)exit 3.*pip: no matching distribution"):
        build_whisper_base(dest, build)
    assert list(dest.parent.iterdir()) == []


def test_incomplete_build_is_a_failure_never_renamed(tmp_path):
    build = script(tmp_path, 'echo x >"$dest/config.json"\n')
    dest = tmp_path / "cache" / "whisper-base"
    with pytest.raises(RuntimeError, match=r"model\.safetensors"):
        build_whisper_base(dest, build)
    assert not dest.exists()


def test_incomplete_folder_is_rebuilt(tmp_path):
    dest = tmp_path / "cache" / "whisper-base"
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{}")  # left by hand, or by an older layout
    assert build_whisper_base(dest, writes_every_file(tmp_path)) == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(FILES)
