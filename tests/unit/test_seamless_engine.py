"""SeamlessEngine on a tiny random SeamlessM4T v2 checkpoint: the four tasks, languages, voices."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, SeamlessM4Tv2Model

from speechmesh.tiny.models import TINY_ARCHS, build_tiny
from speechmesh.tiny.seamless import (
    NUM_SPEAKERS,
    SPEECH_LANGUAGES,
    TEXT_LANGUAGES,
    build_seamless_m4t_v2,
)
from speechmesh.translate.engines.base import InvalidOptionError, TranslationJob, TranslationOutput
from speechmesh.translate.engines.seamless import SeamlessEngine
from speechmesh.translate.languages import LANGUAGES, to_bcp47, to_seamless


def _build(dest: Path) -> Path:
    # Through build_tiny (which marks random weights), registered here until tiny_models does.
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(TINY_ARCHS, "seamless_m4t_v2", build_seamless_m4t_v2)
        return build_tiny("seamless_m4t_v2", dest)


@pytest.fixture(scope="session")
def tiny_seamless(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("tiny-seamless"))


@pytest.fixture(scope="session")
def engine(tiny_seamless: Path) -> SeamlessEngine:
    return SeamlessEngine("tiny-seamless", tiny_seamless, torch.device("cpu"), torch.float32)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def assert_speech(output: TranslationOutput, engine: SeamlessEngine) -> None:
    assert isinstance(output, TranslationOutput), output
    assert isinstance(output.text, str)
    audio = output.audio
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1
    assert 0 < len(audio) < 60 * engine.output_sample_rate
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_checkpoint_builds_fast_small_and_loads(tmp_path: Path) -> None:
    start = time.perf_counter()
    path = _build(tmp_path / "seamless")
    assert time.perf_counter() - start < 10
    assert sum(f.stat().st_size for f in path.iterdir()) < 5_000_000
    assert json.loads((path / "config.json").read_text())["speechmesh_random_weights"]

    model = SeamlessM4Tv2Model.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    gen = model.generation_config
    assert set(gen.text_decoder_lang_to_code_id) == set(TEXT_LANGUAGES)
    assert set(gen.t2u_lang_code_to_id) == set(gen.vocoder_lang_code_to_id) == set(SPEECH_LANGUAGES)
    assert model.config.vocoder_offset == 0
    tokenizer = processor.tokenizer
    assert gen.text_decoder_lang_to_code_id["fra"] == tokenizer.convert_tokens_to_ids("__fra__")
    ids = tokenizer("Ça va?", src_lang="deu").input_ids
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "__deu__"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Ça va?"

    text = processor(
        text=["Hello", "a longer one"], src_lang="eng", padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(**text, tgt_lang="fra", generate_speech=False, max_new_tokens=5)
        assert out.sequences.shape[0] == 2
        waveform, lengths = model.generate(
            **text, tgt_lang="spa", speaker_id=1, text_max_new_tokens=5
        )
        assert waveform.shape[0] == 2 and lengths.shape == (2,)


def test_engine_metadata(engine: SeamlessEngine) -> None:
    assert engine.family == "seamless_m4t_v2"
    assert engine.tasks == {"t2tt", "s2tt", "t2st", "s2st"}
    assert engine.voices == [f"speaker-{i}" for i in range(NUM_SPEAKERS)]
    assert engine.input_sample_rate == 16000 and engine.output_sample_rate == 16000
    assert 0 < engine.max_input_tokens <= 1024 and engine.max_speech_seconds == 30.0
    assert engine.random_weights is True
    assert engine.memory_bytes > 0
    assert (engine.device, engine.dtype) == ("cpu", "float32")
    languages = engine.languages
    assert languages.text_in == languages.text_out == sorted(map(to_bcp47, TEXT_LANGUAGES))
    assert languages.speech_out == sorted(map(to_bcp47, SPEECH_LANGUAGES))
    assert {"en", "zh", "yue"} <= set(languages.text_in)
    # The speech encoder takes every language of the model card, whatever the checkpoint writes.
    assert len(languages.speech_in) == len({lang.tag for lang in LANGUAGES if lang.speech_in})
    assert 0 < engine.count_tokens("Hello world") <= engine.max_input_tokens


def test_text_to_text_mixed_sources(engine: SeamlessEngine) -> None:
    jobs = [
        TranslationJob("t2tt", "fra", text="Hello world", source="eng"),
        TranslationJob("t2tt", "fra", text="Hola, ¿qué tal?", source="spa"),
    ]
    outputs = engine.run_batch(jobs)
    assert len(outputs) == 2
    for output in outputs:
        assert isinstance(output, TranslationOutput), output
        assert isinstance(output.text, str) and output.audio is None


def test_speech_to_text(engine: SeamlessEngine) -> None:
    jobs = [
        TranslationJob("s2tt", "deu", audio=noise(1.0)),
        TranslationJob("s2tt", "deu", audio=noise(0.4, 1)),
    ]
    outputs = engine.run_batch(jobs)
    assert [type(o) for o in outputs] == [TranslationOutput, TranslationOutput]
    assert all(isinstance(o.text, str) and o.audio is None for o in outputs)


def test_text_to_speech(engine: SeamlessEngine) -> None:
    jobs = [
        TranslationJob("t2st", "spa", text="Hello world", source="eng", voice=3),
        TranslationJob("t2st", "spa", text="你好", source="cmn", voice=3),
    ]
    for output in engine.run_batch(jobs):
        assert_speech(output, engine)


def test_speech_to_speech(engine: SeamlessEngine) -> None:
    jobs = [
        TranslationJob("s2st", "eng", audio=noise(1.0)),
        TranslationJob("s2st", "eng", audio=noise(0.5, 1)),
    ]
    for output in engine.run_batch(jobs):
        assert_speech(output, engine)
    (alone,) = engine.run_batch([TranslationJob("s2st", "eng", audio=noise(0.01))])
    assert_speech(alone, engine)


def test_a_bad_job_fails_alone(engine: SeamlessEngine) -> None:
    jobs = [
        TranslationJob("t2tt", "fra", text="no language", source=None),
        TranslationJob("t2tt", "fra", text="a" * 2000, source="eng"),  # too many tokens
        TranslationJob("t2tt", "fra", text="fine", source="eng"),
    ]
    missing, too_long, fine = engine.run_batch(jobs)
    assert isinstance(missing, InvalidOptionError) and missing.option == "source_language"
    assert isinstance(too_long, InvalidOptionError) and too_long.option == "text"
    assert isinstance(fine, TranslationOutput)


def test_warmup(engine: SeamlessEngine) -> None:
    engine.warmup()


@pytest.mark.parametrize(
    ("tag", "code", "back"),
    [
        ("en", "eng", "en"),
        ("en-US", "eng", "en"),
        ("pt-BR", "por", "pt"),
        ("fr", "fra", "fr"),
        ("zh", "cmn", "zh"),
        ("cmn", "cmn", "zh"),
        ("zh-Hans", "cmn", "zh"),
        ("zh-CN", "cmn", "zh"),
        ("zh-Hant", "cmn_Hant", "zh-Hant"),
        ("zh-TW", "cmn_Hant", "zh-Hant"),
        ("yue", "yue", "yue"),
        ("ar", "arb", "ar"),
        ("arz", "arz", "arz"),
        ("fa", "pes", "fa"),
        ("sw", "swh", "sw"),
        ("nb", "nob", "nb"),
        ("no", "nob", "nb"),
        ("iw", "heb", "he"),
        ("jv", "jav", "jv"),
        ("ms", "zsm", "ms"),
        ("fil", "tgl", "tl"),
        ("eng", "eng", "en"),
    ],
)
def test_language_mapping(tag: str, code: str, back: str) -> None:
    assert to_seamless(tag) == code
    assert to_bcp47(code) == back
    assert to_seamless(back) == code


def test_language_table_round_trips() -> None:
    assert len(LANGUAGES) > 100
    assert sum(lang.speech_out for lang in LANGUAGES) >= 36
    for lang in LANGUAGES:
        assert to_bcp47(lang.code) == lang.tag
        assert to_seamless(lang.code) == lang.code
        assert to_seamless(lang.tag) == (lang.code if lang.code != "zlm" else "zsm")
    assert to_bcp47("__eng__") == "en"


@pytest.mark.parametrize("tag", ["xx", "klingon", "", "e"])
def test_unknown_languages(tag: str) -> None:
    with pytest.raises(ValueError):
        to_seamless(tag)
    with pytest.raises(ValueError, match="not a SeamlessM4T v2 language code"):
        to_bcp47("xyz")


def test_language_code(engine: SeamlessEngine) -> None:
    assert engine.language_code("pt-BR", "text", "in") == "por"
    assert engine.language_code("en-GB", "speech", "out") == "eng"
    assert engine.language_code("hi", "text", "out") == "hin"
    assert engine.language_code("ast", "speech", "in") == "ast"
    # Hindi and Cantonese are text languages of the tiny model, but it cannot speak them.
    for tag in ("hi", "yue"):
        with pytest.raises(InvalidOptionError, match="ListLanguages") as caught:
            engine.language_code(tag, "speech", "out")
        assert caught.value.option == "target_language"
    with pytest.raises(InvalidOptionError) as caught:
        engine.language_code("xx", "text", "in")
    assert caught.value.option == "source_language"
    with pytest.raises(InvalidOptionError) as caught:
        engine.language_code("it", "text", "out")  # real Seamless has it, the tiny one not
    assert caught.value.option == "target_language"
