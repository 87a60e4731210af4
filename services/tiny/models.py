"""Tiny checkpoints of real architectures with random weights, built offline.

Each builder writes a directory that loads through the ordinary `from_pretrained` path, with a
working processor, so services and their tests can exercise the real code paths on any machine
with only the pip packages: no hub access, no downloaded weights. Their outputs are noise.
`config.json` (configuration.json for FunASR layouts such as SenseVoice's) carries
`"speechmesh_random_weights": true` so services can say so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tokenizers import AddedToken, pre_tokenizers
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from speechmesh.tiny.parts import ENCODER_DECODER_DIMS, save, seeded
from speechmesh.tiny.seamless import build_seamless_m4t_v2
from speechmesh.tiny.sensevoice import build_sensevoice
from speechmesh.tiny.seq2seq import TINY_SEQ2SEQ
from speechmesh.tiny.tts import build_csm, build_vits

RANDOM_WEIGHTS_KEY = "speechmesh_random_weights"
WHISPER_TEXT_TOKENS = 50257


def _whisper_tokenizer() -> WhisperTokenizer:
    """A byte-level BPE with no merges and a multilingual Whisper's special tokens, in order."""
    # Sorted, the byte alphabet is in GPT-2's order: the 256 byte ids are Whisper's own.
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    # Filler words (never produced: there are no merges) up to Whisper's 50,257 text tokens, so
    # that every special token has its real id. Runtimes rely on that: CTranslate2 treats a
    # vocabulary smaller than a multilingual Whisper's as English-only.
    # Real multilingual vocabularies hold an empty token, and CTranslate2 tells them by it.
    vocab.update({f"Ġw{i}": i for i in range(len(vocab), WHISPER_TEXT_TOKENS - 1)})
    vocab[""] = WHISPER_TEXT_TOKENS - 1
    # <|endoftext|> (bos, eos, unk and pad) is added first by the tokenizer itself.
    specials = [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),  # consecutive ids, in Whisper's order
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",  # must stay the last special token: timestamps follow it
    ]
    tokenizer = WhisperTokenizer(
        vocab=vocab, merges=[], pad_token="<|endoftext|>", extra_special_tokens=specials
    )
    # Timestamps are plain added tokens, as in Whisper: the tokenizer finds them as the ids
    # after its last special token.
    tokenizer.add_tokens(
        [AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(1501)]
    )
    return tokenizer


def _build_whisper(dest: Path, seed: int) -> None:
    tokenizer = _whisper_tokenizer()
    ids = tokenizer.get_vocab()
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    # Which the model config and the generation config both carry, and must agree on.
    special_ids = dict(
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot
    )
    begin_suppress_tokens = [ids["Ġ"], eot]  # a leading space, or an empty transcript
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        **ENCODER_DECODER_DIMS,
        max_source_positions=1500,
        max_target_positions=448,
        **special_ids,
        begin_suppress_tokens=begin_suppress_tokens,
        suppress_tokens=[],
    )
    generation = GenerationConfig(
        **special_ids,
        max_length=config.max_target_positions,
        forced_decoder_ids=None,
        begin_suppress_tokens=begin_suppress_tokens,
        suppress_tokens=[],
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={task: ids[f"<|{task}|>"] for task in ("translate", "transcribe")},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
        alignment_heads=[[0, 0], [1, 1]],  # (decoder layer, head) pairs for word timestamps
    )
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)
    save(dest, seeded(WhisperForConditionalGeneration, config, seed), processor, generation)


TINY_ARCHS: dict[str, Callable[[Path, int], None]] = {
    "whisper": _build_whisper,
    "sensevoice": build_sensevoice,
    "seamless_m4t_v2": build_seamless_m4t_v2,
    **TINY_SEQ2SEQ,
    "csm": build_csm,
    "vits": build_vits,
}


def build_tiny(arch: str, dest: Path, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `arch` (a key of TINY_ARCHS) into `dest`."""
    if arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; known: {', '.join(TINY_ARCHS)}")
    dest.mkdir(parents=True, exist_ok=True)
    TINY_ARCHS[arch](dest, seed)
    # Marked here rather than by each builder, so that no architecture can forget it; FunASR
    # layouts (SenseVoice) have no config.json and carry it in configuration.json.
    config_path = dest / "config.json"
    if not config_path.is_file():
        config_path = dest / "configuration.json"
    config = json.loads(config_path.read_text())
    config[RANDOM_WEIGHTS_KEY] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return dest
