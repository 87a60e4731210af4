"""What the tiny-checkpoint builders share: dimensions, seeded construction, saving.

Each builder (speechmesh.tiny.models, .seamless, .seq2seq, .tts) describes its own architecture;
the steps every one of them takes the same way live here, written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedConfig, PreTrainedModel

#: The tiny encoder-decoder transformer of Whisper and the text-to-text translators
#: (NLLB-200, M2M100, Marian): two layers of two heads, 64 wide, 128-wide feed-forward.
ENCODER_DECODER_DIMS: dict[str, int] = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
}


def no_dropout(*names: str) -> dict[str, float]:
    """Config keywords that turn off train-time randomness: the models are only ever evaluated."""
    return dict.fromkeys(names, 0.0)


def seeded(model_class: type[PreTrainedModel], config: PreTrainedConfig, seed: int):
    """`model_class(config)` in eval mode, its random weights drawn from `seed`."""
    torch.manual_seed(seed)
    return model_class(config).eval()


def kept_generation(**settings: Any) -> GenerationConfig:
    """A generation config that save and load keep as written.

    Without `_from_model_config = False`, transformers regenerates the generation config from
    the model config on save and load, and what only the generation config holds is lost.
    """
    generation = GenerationConfig(**settings)
    generation._from_model_config = False
    return generation


def save(
    dest: Path, model: PreTrainedModel, processor, generation: GenerationConfig | None = None
) -> None:
    """Writes `model` (with `generation`, when given) and its processor or tokenizer to `dest`."""
    if generation is not None:
        model.generation_config = generation
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
