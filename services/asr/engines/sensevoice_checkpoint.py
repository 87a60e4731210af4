"""SenseVoice checkpoint folders as published (FunAudioLLM/SenseVoiceSmall, iic/SenseVoiceSmall):
which files hold what, and building the model from them.

    config.yaml          FunASR's config: `model: SenseVoiceSmall`, `encoder_conf` (output_size 512,
                         attention_heads 4, linear_units 2048, num_blocks 50, tp_blocks 20,
                         kernel_size 11, sanm_shfit 0, ...), `frontend_conf` (WavFrontend: fs 16000,
                         hamming, n_mels 80, 25/10 ms, lfr_m 7, lfr_n 6), `tokenizer_conf`, ...
    model.pt             torch.save'd state dict (FunASR also accepts one under "state_dict",
                         "model_state_dict" or "model", and keys prefixed "module.")
    am.mvn               global CMVN, Kaldi nnet text
    chn_jpn_yue_eng_ko_spectok.bpe.model   the sentencepiece vocabulary (25,055 pieces)
    configuration.json   ModelScope's card; `file_path_metas` names the files above

Files are found as FunASR finds them: through configuration.json's `file_path_metas` when it
names them, else by their usual names.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

import torch
import yaml

from speechmesh.asr.engines.sensevoice_frontend import FrontendConfig
from speechmesh.asr.engines.sensevoice_model import EncoderConfig, SenseVoiceSmall

MODEL_CLASS = "SenseVoiceSmall"
CONFIG = "config.yaml"
WEIGHTS = "model.pt"
CMVN = "am.mvn"
BPE_MODEL = "chn_jpn_yue_eng_ko_spectok.bpe.model"
CARD = "configuration.json"


def has_funasr_layout(path: pathlib.Path) -> bool:
    """A FunASR checkpoint folder: config.yaml and model.pt (what FunASR itself looks for)."""
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def is_sensevoice_checkpoint(path: pathlib.Path) -> bool:
    """A FunASR folder whose config.yaml names the SenseVoiceSmall model."""
    if not has_funasr_layout(path):
        return False
    try:
        return _read_yaml(path / CONFIG).get("model") == MODEL_CLASS
    except (OSError, ValueError, yaml.YAMLError):
        return False


@dataclass(frozen=True)
class SenseVoiceCheckpoint:
    """The files of a checkpoint folder and what config.yaml says of them."""

    path: pathlib.Path
    config: dict[str, Any]
    weights: pathlib.Path
    cmvn: pathlib.Path | None
    bpe_model: pathlib.Path

    @classmethod
    def read(cls, path: pathlib.Path) -> SenseVoiceCheckpoint:
        metas = _file_path_metas(path)
        config_path = path / metas.get("config", CONFIG)
        config = _read_yaml(config_path)
        if config.get("model") != MODEL_CLASS:
            raise ValueError(
                f"{config_path} is for model {config.get('model')!r}; this engine serves"
                f" {MODEL_CLASS}"
            )
        weights = path / metas.get("init_param", WEIGHTS)
        tokenizer_conf = config.get("tokenizer_conf") or {}
        bpe_name = (metas.get("tokenizer_conf") or {}).get("bpemodel") or tokenizer_conf.get(
            "bpemodel"
        )
        bpe = path / bpe_name if bpe_name else path / BPE_MODEL
        if not bpe.is_file():
            found = sorted(path.glob("*.bpe.model"))
            if not found:
                raise FileNotFoundError(f"{path} has no sentencepiece model ({BPE_MODEL})")
            bpe = found[0]
        cmvn_name = (metas.get("frontend_conf") or {}).get("cmvn_file") or CMVN
        cmvn = path / cmvn_name
        if not weights.is_file():
            raise FileNotFoundError(f"{path} has no {weights.name}")
        return cls(path, config, weights, cmvn if cmvn.is_file() else None, bpe)

    @property
    def frontend(self) -> FrontendConfig:
        return FrontendConfig.from_conf(self.config.get("frontend_conf"))

    @property
    def encoder(self) -> EncoderConfig:
        return EncoderConfig.from_conf(self.config.get("encoder_conf"))

    @property
    def input_size(self) -> int:
        return int(self.config.get("input_size") or self.frontend.output_size)

    def build(self, vocab_size: int) -> SenseVoiceSmall:
        """The model with its weights from model.pt, loaded with strict=True."""
        model = SenseVoiceSmall(self.input_size, vocab_size, self.encoder)
        state = load_state_dict(self.weights)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(
                f"{self.weights} does not fit {MODEL_CLASS} as config.yaml describes it"
                f" (input_size {self.input_size}, vocabulary {vocab_size}): {error}"
            ) from error
        return model.eval()


def load_state_dict(path: pathlib.Path) -> dict[str, torch.Tensor]:
    """model.pt's tensors, unwrapped and unprefixed as FunASR's load_pretrained_model does."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _file_path_metas(path: pathlib.Path) -> dict[str, Any]:
    try:
        card = json.loads((path / CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    metas = card.get("file_path_metas") if isinstance(card, dict) else None
    return metas if isinstance(metas, dict) else {}


def _read_yaml(path: pathlib.Path) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return config
