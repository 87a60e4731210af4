"""Which model each service gets from `speechmesh up --offline` (what `make run` starts).

With `--models-dir`, a service whose model is not chosen serves the real checkpoint it knows
from that folder (ASR: whisper-tiny.en; TTS: vits-en-joe, with a tiny CSM beside it for
cloning); else, and for every other service, a tiny random checkpoint. `--model` and
SPEECHMESH_<SERVICE>_MODEL still win. The plans are checked on folders of our own; with
../shared, a suite started the way `make run` starts it speaks real speech on a newcomer's first
calls (`speechmesh speak`, the OpenAI speech route), which whisper-tiny.en hears back.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from speechmesh.suite.supervisor import Suite
from tests.asr_client import wer
from tests.conftest import ROOT, SHARED, TINY_EN
from tests.gateway.conftest import run_up

JOE = SHARED / "models" / "vits-en-joe"
SERVICES = ["asr", "translate", "tts"]
CHOSEN = ["ASR_MODEL", "TRANSLATE_MODEL", "TTS_MODEL", "TTS_EXTRA_MODELS"]


@pytest.fixture
def clean_env(monkeypatch):
    """No model chosen in the environment (a developer's own settings must not leak in)."""
    for name in CHOSEN:
        monkeypatch.delenv(f"SPEECHMESH_{name}", raising=False)
    return monkeypatch


def models_dir(folder: pathlib.Path, *names: str) -> pathlib.Path:
    """A folder of stand-in checkpoints (a config.json each: what the plan looks for)."""
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "config.json").write_text("{}")
    return folder


async def plan(cache: pathlib.Path, **kwargs) -> dict[str, tuple[str, bool, dict[str, str]]]:
    """{service: (model, random weights, its environment's SPEECHMESH_* model settings)}."""
    lines: list[str] = []
    kwargs.setdefault("models", {})
    suite = Suite(SERVICES, offline=True, cache_dir=cache, out=lines.append, **kwargs)
    try:
        suite.plan()
    finally:
        await suite.stop()
    planned = {}
    for service, child in zip(suite.services, suite.children, strict=True):
        settings = {k: v for k, v in child.env.items() if k.endswith(("_MODEL", "_MODELS"))}
        planned[service.name] = (service.model, service.random_weights, settings)
    return planned


async def test_models_dir_serves_its_real_checkpoints(clean_env, tiny_cache, tmp_path):
    real = models_dir(tmp_path / "models", "whisper-tiny.en", "vits-en-joe")
    planned = await plan(tiny_cache, models_dir=real)
    assert planned["asr"][:2] == (str(real / "whisper-tiny.en"), False)
    assert planned["tts"][:2] == (str(real / "vits-en-joe"), False)
    assert planned["tts"][2]["SPEECHMESH_TTS_EXTRA_MODELS"] == str(tiny_cache / "tiny-csm")
    assert planned["translate"][:2] == (str(tiny_cache / "tiny-seamless_m4t_v2"), True)


async def test_without_models_dir_or_its_folders_every_model_is_tiny(
    clean_env, tiny_cache, tmp_path
):
    tiny = {
        "asr": str(tiny_cache / "tiny-whisper"),
        "translate": str(tiny_cache / "tiny-seamless_m4t_v2"),
        "tts": str(tiny_cache / "tiny-csm"),
    }
    for kwargs in ({}, {"models_dir": models_dir(tmp_path / "other", "whisper-small")}):
        planned = await plan(tiny_cache, **kwargs)
        assert {name: model for name, (model, _, _) in planned.items()} == tiny
        assert all(random for _, random, _ in planned.values())
        assert "SPEECHMESH_TTS_EXTRA_MODELS" not in planned["tts"][2]


async def test_chosen_models_win_over_the_models_dir(clean_env, tiny_cache, tmp_path):
    real = models_dir(tmp_path / "models", "whisper-tiny.en", "vits-en-joe")
    clean_env.setenv("SPEECHMESH_ASR_MODEL", "openai/whisper-small")
    planned = await plan(tiny_cache, models_dir=real, models={"tts": "facebook/mms-tts-eng"})
    assert planned["asr"][:2] == ("openai/whisper-small", False)
    assert planned["tts"][:2] == ("facebook/mms-tts-eng", False)
    assert "SPEECHMESH_TTS_EXTRA_MODELS" not in planned["tts"][2]


def test_make_run_passes_the_shared_models(tmp_path):
    """`make run` gives ../shared/models as --models-dir when it is there, and the ASR_MODEL
    and TTS_MODEL given to it as --model."""

    def run_command(*args: str) -> str:
        dry = subprocess.run(
            ["make", "-s", "-n", "-o", "install", "-o", "protos", "run", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={k: v for k, v in os.environ.items() if k not in ("ASR_MODEL", "TTS_MODEL")},
        )
        return dry.stdout.strip().splitlines()[-1]

    shared = models_dir(tmp_path / "shared" / "models", "vits-en-joe").parent
    command = run_command(f"SHARED={shared}")
    assert command.endswith(f"speechmesh up --offline --models-dir {shared}/models"), command
    command = run_command(f"SHARED={tmp_path / 'none'}", "TTS_MODEL=x", "ASR_MODEL=y")
    assert command.endswith("speechmesh up --offline --model asr=y --model tts=x"), command


@pytest.mark.real_weights
@pytest.mark.skipif(
    not (JOE.is_dir() and TINY_EN.is_dir()), reason=f"real models not found at {SHARED}"
)
def test_first_calls_of_make_run_speak_real_speech(tmp_path_factory, tiny_cache, tmp_path):
    from openai import OpenAI

    args = ("--models-dir", str(SHARED / "models"))
    with run_up(tmp_path_factory, tiny_cache, ["asr", "tts"], {}, args) as up:
        banner = "\n".join(up.lines)
        assert f"model {JOE}  (and tiny-csm: tiny random weights" in banner, banner
        assert f"model {TINY_EN}\n" in banner + "\n", banner
        target = f"127.0.0.1:{up.gateway.port}"
        client = OpenAI(base_url=f"http://{target}/v1", api_key="unused")
        said = "The weather is nice today, and I would like to go for a walk."
        speech = tmp_path / "openai.wav"
        client.audio.speech.create(
            model="tts-1", voice="alloy", input=said, response_format="wav"
        ).write_to_file(speech)
        spoken = "Please send the quarterly report to the finance team before Friday."
        cli = tmp_path / "speak.wav"
        subprocess.run(
            [sys.executable, "-m", "speechmesh.cli", "speak", spoken, "--out", str(cli)],
            env={**os.environ, "SPEECHMESH_TARGET": target},
            check=True,
            capture_output=True,
        )
        heard = []
        for path in (speech, cli):
            with path.open("rb") as audio:
                heard.append(client.audio.transcriptions.create(model="whisper-1", file=audio).text)
    assert wer([said, spoken], heard) <= 0.1, heard


def test_models_dir_goes_with_offline(capsys):
    from speechmesh.cli import main

    assert main(["up", "--models-dir", str(SHARED / "models")]) == 2
    assert "--models-dir goes with --offline" in capsys.readouterr().err
