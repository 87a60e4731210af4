import json
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, NllbTokenizer

from speechmesh.tiny.models import RANDOM_WEIGHTS_KEY
from speechmesh.tiny.seq2seq import MARIAN_PAIR, TINY_SEQ2SEQ
from speechmesh.translate.engines.base import InvalidOptionError, TranslationJob, TranslationOutput
from speechmesh.translate.engines.seq2seq import Seq2SeqEngine

CPU = torch.device("cpu")


def build(arch: str, dest: Path) -> tuple[Path, float]:
    """Builds a tiny checkpoint and marks it random, as build_tiny does; returns its build time."""
    dest.mkdir(parents=True)
    started = time.perf_counter()
    TINY_SEQ2SEQ[arch](dest, 0)
    elapsed = time.perf_counter() - started
    config = json.loads((dest / "config.json").read_text())
    config[RANDOM_WEIGHTS_KEY] = True
    (dest / "config.json").write_text(json.dumps(config))
    return dest, elapsed


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    root = tmp_path_factory.mktemp("tiny-seq2seq")
    return {arch: build(arch, root / arch) for arch in TINY_SEQ2SEQ}


@pytest.fixture(scope="module")
def engines(checkpoints) -> dict[str, Seq2SeqEngine]:
    return {
        arch: Seq2SeqEngine(arch, path, CPU, torch.float32)
        for arch, (path, _) in checkpoints.items()
    }


@pytest.mark.parametrize("arch", ["nllb", "m2m100", "marian"])
def test_checkpoint_is_small_quick_and_loads(checkpoints, arch: str) -> None:
    path, elapsed = checkpoints[arch]
    assert elapsed < 5
    assert sum(f.stat().st_size for f in path.iterdir()) < 5_000_000
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    assert model.config.vocab_size == len(tokenizer)
    expected = {"nllb": "M2M100", "m2m100": "M2M100", "marian": "MarianMT"}[arch]
    assert type(model).__name__.startswith(expected)
    if arch == "nllb":
        assert isinstance(tokenizer, NllbTokenizer)


@pytest.mark.parametrize(("arch", "token"), [("nllb", "fra_Latn"), ("m2m100", "__fr__")])
def test_generate_forces_the_target_language(checkpoints, arch: str, token: str) -> None:
    path, _ = checkpoints[arch]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    inputs = tokenizer(["Hello world.", "Ça va?"], return_tensors="pt", padding=True)
    lang = tokenizer.convert_tokens_to_ids(token)
    out = model.generate(**inputs, forced_bos_token_id=lang, max_new_tokens=5, num_beams=1)
    assert out[:, 0].tolist() == [model.generation_config.decoder_start_token_id] * 2
    assert out[:, 1].tolist() == [lang, lang]
    assert all(token not in text for text in tokenizer.batch_decode(out, skip_special_tokens=True))


def test_engines_describe_themselves(engines) -> None:
    nllb, m2m, marian = engines["nllb"], engines["m2m100"], engines["marian"]
    assert (nllb.family, m2m.family, marian.family) == ("nllb", "m2m100", "marian")
    for engine in engines.values():
        assert engine.tasks == frozenset({"t2tt"})
        assert engine.random_weights is True
        assert engine.voices == [] and engine.languages.speech_in == []
        assert engine.languages.speech_out == []
        assert engine.device == "cpu" and engine.dtype == "float32"
        assert engine.memory_bytes > 0
        assert engine.model.generation_config.num_beams == 1  # the checkpoints say 4 or 5
    assert len(nllb.languages.text_in) == 202
    assert {"en", "fr", "zh", "zh-Hant", "ar", "arz", "prs", "nb", "ace-Arab"} <= set(
        nllb.languages.text_out
    )
    assert len(m2m.languages.text_out) == 100 and "nso" in m2m.languages.text_out
    assert marian.languages.text_in == [MARIAN_PAIR[0]]
    assert marian.languages.text_out == [MARIAN_PAIR[1]]
    assert nllb.requires_source_language and m2m.requires_source_language
    assert not marian.requires_source_language
    assert (nllb.max_input_tokens, marian.max_input_tokens) == (512, 256)


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("en", "eng_Latn"),
        ("pt-BR", "por_Latn"),
        ("zh", "zho_Hans"),
        ("zh-Hans-CN", "zho_Hans"),
        ("zh-Hant", "zho_Hant"),
        ("zh-TW", "zho_Hant"),
        ("fa", "pes_Arab"),
        ("fa-AF", "prs_Arab"),
        ("no", "nob_Latn"),
        ("nn", "nno_Latn"),
        ("ar", "arb_Arab"),
        ("ace-Arab", "ace_Arab"),
    ],
)
def test_nllb_maps_bcp47(engines, tag: str, code: str) -> None:
    assert engines["nllb"].language_code(tag, "text", "out") == code
    assert engines["nllb"].language_code(tag, "text", "in") == code


def test_m2m100_and_marian_map_bcp47(engines) -> None:
    m2m, marian = engines["m2m100"], engines["marian"]
    assert m2m.language_code("de-AT", "text", "in") == "de"
    assert m2m.language_code("nso", "text", "out") == "ns"
    assert m2m.language_code("zh-Hant", "text", "out") == "zh"
    assert marian.language_code("en-GB", "text", "in") == "en"
    assert marian.language_code("de", "text", "out") == "de"


@pytest.mark.parametrize(
    ("arch", "tag", "modality", "direction", "option"),
    [
        ("nllb", "xx", "text", "out", "target_language"),
        ("nllb", "sr-Latn", "text", "in", "source_language"),  # NLLB has Cyrillic Serbian only
        ("nllb", "e", "text", "in", "source_language"),  # malformed
        ("m2m100", "haw", "text", "out", "target_language"),
        ("marian", "fr", "text", "out", "target_language"),
        ("marian", "de", "text", "in", "source_language"),
        ("nllb", "en", "speech", "in", "modality"),
        ("marian", "de", "speech", "out", "modality"),
    ],
)
def test_unsupported_options_name_the_option(engines, arch, tag, modality, direction, option):
    with pytest.raises(InvalidOptionError) as caught:
        engines[arch].language_code(tag, modality, direction)
    assert caught.value.option == option
    if modality == "speech":
        assert "SeamlessM4T" in str(caught.value)


@pytest.mark.parametrize("arch", ["nllb", "m2m100"])
def test_batch_with_different_sources(engines, arch: str) -> None:
    engine = engines[arch]
    target = engine.language_code("fr", "text", "out")
    sources = [engine.language_code(tag, "text", "in") for tag in ("en", "de", "es")]
    texts = ["Hello, world.", "Guten Morgen, wie geht es dir heute?", "Hola."]
    jobs = [
        TranslationJob("t2tt", target, text=t, source=s)
        for t, s in zip(texts, sources, strict=True)
    ]
    outputs = engine.run_batch(jobs)
    assert len(outputs) == 3
    assert all(isinstance(out, TranslationOutput) and isinstance(out.text, str) for out in outputs)
    assert all(out.audio is None for out in outputs)


def test_nllb_framing_matches_the_tokenizer(engines) -> None:
    engine = engines["nllb"]
    tokenizer: NllbTokenizer = engine.tokenizer
    for tag, text in [("de", "Guten Tag."), ("fr", "Ça va?")]:
        code = engine.language_code(tag, "text", "in")
        job = TranslationJob("t2tt", "eng_Latn", text=text, source=code)
        tokenizer.src_lang = code
        assert engine._encode(job, job.target) == tokenizer(text).input_ids
        assert engine.count_tokens(text) == len(tokenizer(text).input_ids)
    tokenizer.src_lang = "eng_Latn"


def test_marian_translates_the_fixed_pair(engines) -> None:
    engine = engines["marian"]
    target = engine.language_code(MARIAN_PAIR[1], "text", "out")
    jobs = [TranslationJob("t2tt", target, text=t) for t in ("Hello.", "How are you today?")]
    outputs = engine.run_batch(jobs)
    assert all(isinstance(out, TranslationOutput) for out in outputs)
    assert engine.count_tokens("Hello.") == len(engine.tokenizer("Hello.").input_ids)


def test_per_job_errors_and_empty_text(engines) -> None:
    engine = engines["nllb"]
    long_text = "word " * engine.max_input_tokens
    jobs = [
        TranslationJob("t2tt", "fra_Latn", text="Hello.", source=None),
        TranslationJob("t2tt", "fra_Latn", text="   ", source="eng_Latn"),
        TranslationJob("t2tt", "fra_Latn", text=long_text, source="eng_Latn"),
        TranslationJob("t2tt", "fra_Latn", text="Hello.", source="eng_Latn"),
    ]
    missing, empty, too_long, fine = engine.run_batch(jobs)
    assert isinstance(missing, InvalidOptionError) and missing.option == "source_language"
    assert "cannot detect" in str(missing)
    assert empty == TranslationOutput("")
    assert isinstance(too_long, InvalidOptionError) and too_long.option == "text"
    assert isinstance(fine, TranslationOutput)
    unknown = engine.run_batch([TranslationJob("t2tt", "xx_Latn", text="Hi.", source="eng_Latn")])
    assert isinstance(unknown[0], InvalidOptionError) and unknown[0].option == "target_language"


def test_warmup(engines) -> None:
    for engine in engines.values():
        engine.warmup()
