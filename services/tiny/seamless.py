"""A tiny random SeamlessM4T v2 checkpoint (all four tasks), built offline.

Real transformers classes at toy sizes: a one-layer conformer speech encoder, one-layer text
encoder and decoder, a one-layer non-autoregressive text-to-unit model and a HiFi-GAN vocoder
with a handful of channels (its upsampling rates are the real ones, so 50 units a second become
16 kHz audio). The tokenizer is a `SeamlessM4TTokenizer` over single characters (a BPE without
merges), with Seamless's special tokens at their real ids and `__xxx__` language tokens, so the
processor loads back with `AutoProcessor.from_pretrained` and no sentencepiece model.

The generation config carries what SeamlessM4Tv2Model.generate reads: the three language maps
(text decoder, text-to-unit, vocoder), `id_to_text` and `char_to_id`. It must be saved with
`_from_model_config = False`, or transformers regenerates it from the model config on save and
load and the maps are lost. `vocoder_offset=0`: the real offset (4) skips the unit model's control
symbols, and random unit ids below it would index the vocoder's unit embedding at -4.

Not registered here: speechmesh.tiny.models registers builders and marks the result as
random weights.
"""

from __future__ import annotations

import math
import pathlib
import string

import torch
from transformers import (
    SeamlessM4TFeatureExtractor,
    SeamlessM4TProcessor,
    SeamlessM4TTokenizer,
    SeamlessM4Tv2Config,
    SeamlessM4Tv2Model,
)

from speechmesh.tiny.parts import kept_generation, no_dropout, save, seeded

#: Languages of the tiny model's text (tokenizer `__xxx__` tokens, text decoder), in id order.
TEXT_LANGUAGES = [
    "afr",
    "arb",
    "cmn",
    "deu",
    "eng",
    "fra",
    "hin",
    "jpn",
    "por",
    "rus",
    "spa",
    "yue",
]
#: The subset it speaks (text-to-unit model and vocoder), as the real model speaks 36 of its 96.
SPEECH_LANGUAGES = ["cmn", "deu", "eng", "fra", "jpn", "por", "rus", "spa"]
#: Vocoder speakers (200 in the real model).
NUM_SPEAKERS = 4
#: Unit vocabulary of the text-to-unit model and the vocoder (10082 / 10000 in the real model).
NUM_UNITS = 64

_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]  # ids 0-3, as in Seamless
_SPACE = "▁"
# Characters of the vocabulary: ASCII, Latin-1 letters and a few CJK characters, enough for
# tests in the tiny model's languages; anything else is <unk>.
_CHARACTERS = (
    _SPACE
    + string.ascii_letters
    + string.digits
    + string.punctuation
    + "".join(chr(c) for c in range(0xC0, 0x100) if chr(c).isalpha())
    + "你好世界我是中文日本語こんにちは"
)


def _tokenizer() -> SeamlessM4TTokenizer:
    characters = list(dict.fromkeys(_CHARACTERS))
    vocab = {token: i for i, token in enumerate([*_SPECIALS, *characters])}
    return SeamlessM4TTokenizer(
        vocab=vocab,
        merges=[],
        src_lang="eng",
        tgt_lang="fra",
        additional_special_tokens=[f"__{code}__" for code in TEXT_LANGUAGES],
        model_max_length=1024,
    )


def build_seamless_m4t_v2(dest: pathlib.Path, seed: int) -> None:
    """Writes a tiny random SeamlessM4T v2 model and its processor into `dest`."""
    tokenizer = _tokenizer()
    vocab = tokenizer.get_vocab()
    vocab_size = len(tokenizer)
    characters = sorted({ch for token in vocab if token not in _SPECIALS for ch in token})
    char_to_id = {token: i for i, token in enumerate(_SPECIALS)}
    for ch in characters:
        char_to_id.setdefault(ch, len(char_to_id))

    hidden = 32
    # The text encoder and decoder and the text-to-unit encoder and decoder alike: one layer of
    # two heads with a 64-wide feed-forward.
    transformer_stacks = {
        f"{stack}_{setting}": value
        for stack in ("encoder", "decoder", "t2u_encoder", "t2u_decoder")
        for setting, value in (("layers", 1), ("ffn_dim", 64), ("attention_heads", 2))
    }
    config = SeamlessM4Tv2Config(
        # Weights wider than the default 0.02, so that outputs depend on the inputs.
        initializer_range=0.3,
        vocab_size=vocab_size,
        t2u_vocab_size=NUM_UNITS,
        char_vocab_size=len(char_to_id),
        hidden_size=hidden,
        max_position_embeddings=1024,
        **transformer_stacks,
        speech_encoder_layers=1,
        speech_encoder_attention_heads=2,
        speech_encoder_intermediate_size=64,
        conv_depthwise_kernel_size=7,
        t2u_max_position_embeddings=1024,
        t2u_variance_predictor_embed_dim=hidden,
        t2u_variance_predictor_hidden_dim=16,
        upsample_initial_channel=32,  # halves at each of the 5 upsampling layers
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        unit_hifi_gan_vocab_size=NUM_UNITS,
        unit_embed_dim=16,
        lang_embed_dim=4,
        spkr_embed_dim=4,
        vocoder_num_langs=len(SPEECH_LANGUAGES),
        vocoder_num_spkrs=NUM_SPEAKERS,
        vocoder_offset=0,
        **no_dropout(
            "dropout",
            "attention_dropout",
            "encoder_layerdrop",
            "decoder_layerdrop",
            "speech_encoder_layerdrop",
            "adaptor_dropout",
        ),
    )
    model = seeded(SeamlessM4Tv2Model, config, seed)
    with torch.no_grad():
        # Fixed durations (the predictors' outputs are log(1 + frames)): 2 units per character,
        # 1 vocoder frame per unit, so audio lengths follow the text, never a random blow-up.
        for predictor, frames in (
            (model.t2u_model.model.decoder.duration_predictor, 2),
            (model.vocoder.dur_predictor, 1),
        ):
            predictor.proj.weight.zero_()
            predictor.proj.bias.fill_(math.log1p(frames))

    generation = kept_generation(
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        decoder_start_token_id=vocab["</s>"],
        max_new_tokens=32,  # callers that set no length stay quick on random weights
        # Random weights would otherwise write special and language tokens (which decode to
        # nothing but are spoken) or stop at once; the real model has learnt not to.
        suppress_tokens=[vocab[token] for token in _SPECIALS if token != "</s>"]
        + [vocab[f"__{code}__"] for code in TEXT_LANGUAGES],
        begin_suppress_tokens=[vocab["</s>"]],
        text_decoder_lang_to_code_id={code: vocab[f"__{code}__"] for code in TEXT_LANGUAGES},
        # As in the real checkpoints: after the units and their control symbols.
        t2u_lang_code_to_id={
            code: NUM_UNITS + len(SPEECH_LANGUAGES) + i for i, code in enumerate(SPEECH_LANGUAGES)
        },
        vocoder_lang_code_to_id={code: i for i, code in enumerate(SPEECH_LANGUAGES)},
        id_to_text={str(index): token for token, index in vocab.items()},
        char_to_id=char_to_id,
    )
    processor = SeamlessM4TProcessor(SeamlessM4TFeatureExtractor(), tokenizer)
    save(dest, model, processor, generation)
