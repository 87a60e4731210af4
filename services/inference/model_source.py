"""Where a model's files come from: a local folder, the Hugging Face cache, or the hub."""

from __future__ import annotations

import json
import os
import pathlib

from speechmesh.tiny.models import RANDOM_WEIGHTS_KEY

#: Files a hub download fetches: transformers checkpoints (config.json, safetensors, tokenizer
#: files), and FunASR's layout (SenseVoice: config.yaml, model.pt, am.mvn, *.bpe.model). Only
#: the FunASR weight file's own name is fetched, not every *.pt: repositories such as
#: facebook/seamless-m4t-v2-large ship multi-gigabyte fairseq2 .pt files beside their safetensors.
WEIGHT_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.model",
    "*.txt",
    "*.tiktoken",
    "*.yaml",
    "model.pt",
    "*.mvn",
]
#: The files that mark a checkpoint folder: transformers' config.json, or FunASR's config.yaml
#: beside model.pt.
LAYOUTS = (("config.json",), ("config.yaml", "model.pt"))
#: Where a checkpoint built by `speechmesh models tiny` says it has random weights.
CARDS = ("config.json", "configuration.json")


class ModelNotFoundError(RuntimeError):
    """The model cannot be had; the message says what to set."""


def resolve_model(name: str, env_var: str, flag: str = "--model") -> pathlib.Path:
    """Returns a local folder with the model's files.

    `name` is a folder path or a Hugging Face id. With HF_HUB_OFFLINE=1 only the
    local cache is consulted. The error names `env_var` and `flag`.
    """
    path = pathlib.Path(name).expanduser()
    if path.is_dir():
        if not is_checkpoint_folder(path):
            raise ModelNotFoundError(
                f"{path} has no config.json (nor FunASR's config.yaml and model.pt): point"
                f" {env_var} (or {flag}) at a folder saved with save_pretrained, a FunASR"
                " checkpoint folder (SenseVoice), or a Hugging Face id"
            )
        return path.resolve()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(
            f"model folder {name!r} does not exist: set {env_var} (or {flag}) to a checkpoint"
            " folder or a Hugging Face id"
        )
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        return pathlib.Path(
            snapshot_download(name, allow_patterns=WEIGHT_PATTERNS, local_files_only=offline)
        )
    except Exception as error:
        where = "the local cache (HF_HUB_OFFLINE is set)" if offline else "the hub or the cache"
        raise ModelNotFoundError(
            f"model {name!r} could not be loaded from {where}: {error.__class__.__name__}."
            f" Download it where the hub is reachable (`hf download {name}`) and set HF_HOME,"
            f" or set {env_var} (or {flag}) to a local checkpoint folder. For an offline"
            " smoke test, `speechmesh models tiny whisper ./tiny-whisper` builds a random one."
        ) from error


def is_checkpoint_folder(path: pathlib.Path) -> bool:
    """Whether `path` holds a checkpoint in a layout some engine loads (LAYOUTS)."""
    return any(all((path / name).is_file() for name in layout) for layout in LAYOUTS)


def is_random_checkpoint(path: pathlib.Path) -> bool:
    """True for checkpoints built by `speechmesh models tiny` (random weights): the marker is in
    config.json, or in configuration.json for FunASR layouts."""
    for name in CARDS:
        try:
            config = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get(RANDOM_WEIGHTS_KEY):
            return True
    return False
