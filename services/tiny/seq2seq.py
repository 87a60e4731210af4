"""Tiny random text-to-text translation checkpoints (NLLB-200, M2M100, Marian), built offline.

Each builder writes the real architecture (`M2M100ForConditionalGeneration` for NLLB-200 and
M2M100, `MarianMTModel` for Marian) at tiny dimensions, its generation config, and a tokenizer
that `AutoTokenizer.from_pretrained(dest)` loads back. Outputs are noise.

Tokenizers. The real ones are SentencePiece models. In transformers 5 `NllbTokenizer` is backed
by the `tokenizers` library (a BPE over a vocab dict), so the tiny NLLB gets the real class with a
character vocabulary. `M2M100Tokenizer` and `MarianTokenizer` are slow-only classes that need the
`sentencepiece` package (not installed here, and AutoTokenizer maps `m2m_100`/`marian` to nothing
without it), so the tiny M2M100 and Marian tokenizers are plain `tokenizers` models saved as
`TokenizersBackend` (tokenizer.json); AutoTokenizer loads those with or without sentencepiece.
They keep the real special-token layout: M2M100's `__en__`-style language tokens (the encoder
input is `__src__ text </s>`), Marian's `</s>`=0, `<unk>`=1, `<pad>` last, no language tokens, and
its pair as `source_lang`/`target_lang` in tokenizer_config.json, as Helsinki-NLP's opus-mt have.

`build_tiny` (speechmesh.tiny.models) adds the random-weights marker to config.json.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    GenerationConfig,
    M2M100Config,
    M2M100ForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    NllbTokenizer,
    PreTrainedTokenizerFast,
)

from speechmesh.tiny.parts import ENCODER_DECODER_DIMS, save, seeded

#: M2M100's 100 languages, in its token order (`transformers.models.m2m_100.tokenization_m2m_100`
#: has the list too, but that module imports sentencepiece).
M2M100_LANGUAGES = """
af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha
he hi hr ht hu hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne
nl no ns oc or pa pl ps pt ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo
xh yi yo zh zu
""".split()  # noqa: SIM905 (a table of codes reads best as text)
#: SentencePiece's word-boundary mark.
SPACE = "\u2581"
#: The fixed pair of the tiny Marian checkpoint.
MARIAN_PAIR = ("en", "de")


def _characters() -> list[str]:
    """The pieces of the tiny vocabularies: one per character (Latin, Greek, Cyrillic)."""
    ranges = [(0x21, 0x7E), (0xA1, 0x17F), (0x391, 0x3C9), (0x410, 0x44F)]
    return [SPACE] + [
        chr(c) for lo, hi in ranges for c in range(lo, hi + 1) if chr(c).isprintable()
    ]


def _vocab(specials: list[str]) -> dict[str, int]:
    vocab = {token: i for i, token in enumerate(specials)}
    for char in _characters():
        vocab.setdefault(char, len(vocab))
    return vocab


def _char_tokenizer(vocab: dict[str, int], unk: str) -> Tokenizer:
    """SentencePiece-like pieces: spaces become "▁" (one is prepended), one piece per character."""
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk, fuse_unk=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always")
    return tokenizer


def _special_ids(pad: int, bos: int, eos: int) -> dict[str, int]:
    """Token ids the model config and the generation config both carry, and must agree on.

    Decoding starts from `</s>`, as in fairseq's NLLB-200 and M2M100.
    """
    return dict(pad_token_id=pad, bos_token_id=bos, eos_token_id=eos, decoder_start_token_id=eos)


def build_nllb(dest: Path, seed: int) -> None:
    """NLLB-200: the M2M100 architecture with `NllbTokenizer` (`eng_Latn`, `fra_Latn`, ...)."""
    tokenizer = NllbTokenizer(
        vocab=_vocab(["<s>", "<pad>", "</s>", "<unk>"]),
        merges=[],
        src_lang="eng_Latn",
        model_max_length=1024,
    )
    ids = tokenizer.get_vocab()
    special_ids = _special_ids(pad=ids["<pad>"], bos=ids["<s>"], eos=ids["</s>"])
    config = M2M100Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        scale_embedding=True,
        **special_ids,
        tokenizer_class="NllbTokenizer",
        **ENCODER_DECODER_DIMS,
    )
    generation = GenerationConfig(**special_ids, max_length=200)
    save(dest, seeded(M2M100ForConditionalGeneration, config, seed), tokenizer, generation)


def build_m2m100(dest: Path, seed: int) -> None:
    """M2M100 (418M/1.2B layout): `__en__`-style language tokens after the pieces."""
    vocab = _vocab(["<s>", "<pad>", "</s>", "<unk>"])
    languages = [f"__{code}__" for code in M2M100_LANGUAGES]
    madeup = [f"madeupword{i:04d}" for i in range(8)]
    backend = _char_tokenizer(vocab, "<unk>")
    # The real tokenizer's default source language is English: `__en__ text </s>`.
    backend.post_processor = processors.TemplateProcessing(
        single="__en__ $A </s>",
        pair="__en__ $A $B </s>",
        special_tokens=[("__en__", len(vocab) + languages.index("__en__")), ("</s>", 2)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=languages + madeup,
        model_max_length=1024,
    )
    ids = tokenizer.get_vocab()
    assert ids["__en__"] == len(vocab) + languages.index("__en__"), "language ids out of place"
    special_ids = _special_ids(pad=ids["<pad>"], bos=ids["<s>"], eos=ids["</s>"])
    config = M2M100Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        scale_embedding=True,
        **special_ids,
        **ENCODER_DECODER_DIMS,
    )
    # As facebook/m2m100_418M ships it (beam search of 5): the engine overrides num_beams.
    generation = GenerationConfig(**special_ids, max_length=200, num_beams=5, early_stopping=True)
    save(dest, seeded(M2M100ForConditionalGeneration, config, seed), tokenizer, generation)


def build_marian(dest: Path, seed: int) -> None:
    """Marian (opus-mt) for the fixed pair MARIAN_PAIR.

    No language tokens; `<pad>` (the last id) starts decoding, as in opus-mt.
    """
    vocab = _vocab(["</s>", "<unk>"])
    vocab["<pad>"] = pad = len(vocab)
    backend = _char_tokenizer(vocab, "<unk>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A $B </s>", special_tokens=[("</s>", 0)]
    )
    source, target = MARIAN_PAIR
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=512,
        source_lang=source,
        target_lang=target,
    )
    # </s> ends every sequence; no beginning-of-sentence id in the model config, as in opus-mt.
    special_ids = dict(
        pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad, forced_eos_token_id=0
    )
    config = MarianConfig(
        vocab_size=len(vocab),
        decoder_vocab_size=len(vocab),
        max_position_embeddings=512,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        **special_ids,
        **ENCODER_DECODER_DIMS,
    )
    # As Helsinki-NLP/opus-mt-* ship it (beam search of 4): the engine overrides num_beams.
    generation = GenerationConfig(
        **special_ids, bad_words_ids=[[pad]], bos_token_id=0, max_length=512, num_beams=4
    )
    save(dest, seeded(MarianMTModel, config, seed), tokenizer, generation)


#: What the lead registers in speechmesh.tiny.models.TINY_ARCHS.
TINY_SEQ2SEQ = {"nllb": build_nllb, "m2m100": build_m2m100, "marian": build_marian}
