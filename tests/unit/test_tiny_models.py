import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration, WhisperProcessor
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from speechmesh.tiny.models import TINY_ARCHS, build_tiny


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("whisper", tmp_path_factory.mktemp("tiny") / "whisper")


@pytest.fixture(scope="module")
def whisper(whisper_dir: Path) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir)
    return model.eval(), WhisperProcessor.from_pretrained(whisper_dir)


def features(processor: WhisperProcessor, seconds: list[float]):
    rng = np.random.default_rng(0)
    audio = [0.1 * rng.standard_normal(int(s * 16000)).astype(np.float32) for s in seconds]
    return processor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)


def generate(model, inputs, language: str, task: str, max_new_tokens: int, timestamps=False):
    """model.generate on features(): with segment and token timestamps when `timestamps`."""
    extra = {"return_timestamps": True, "return_token_timestamps": True} if timestamps else {}
    return model.generate(
        inputs.input_features,
        attention_mask=inputs.attention_mask,
        language=language,
        task=task,
        max_new_tokens=max_new_tokens,
        **extra,
    )


def test_checkpoint_is_small_and_marked_random(whisper_dir: Path, whisper) -> None:
    size = sum(f.stat().st_size for f in whisper_dir.iterdir())
    # Most of it is the embedding of Whisper's real 51,866-token vocabulary layout (the ids
    # runtimes such as CTranslate2 rely on), at 64 dimensions.
    assert size < 20_000_000
    assert json.loads((whisper_dir / "config.json").read_text())["speechmesh_random_weights"]
    model, _ = whisper
    assert model.config.speechmesh_random_weights is True


def test_tokenizer_has_multilingual_whisper_layout(whisper) -> None:
    model, processor = whisper
    tokenizer, gen = processor.tokenizer, model.generation_config
    assert len(tokenizer) == model.config.vocab_size
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    # One token per language, consecutive from <|startoftranscript|>, in Whisper's order.
    assert gen.lang_to_id == {f"<|{code}|>": sot + 1 + i for i, code in enumerate(LANGUAGES)}
    assert gen.is_multilingual and gen.decoder_start_token_id == sot
    # Timestamp tokens follow <|notimestamps|>, the last special token.
    assert tokenizer.all_special_ids[-1] == gen.no_timestamps_token_id
    timestamps = tokenizer.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"])
    assert timestamps == [gen.no_timestamps_token_id + 1, gen.no_timestamps_token_id + 1501]
    ids = tokenizer("Ça va, world?", add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == "Ça va, world?"
    assert tokenizer.decode([timestamps[0], *ids], decode_with_timestamps=True).startswith(
        "<|0.00|>Ça"
    )


def test_generate_with_language_task_and_timestamps(whisper) -> None:
    model, processor = whisper
    inputs = features(processor, [3.0])
    out = generate(model, inputs, "fr", "transcribe", max_new_tokens=20, timestamps=True)
    assert out["sequences"].shape == out["token_timestamps"].shape
    translated = generate(model, inputs, "de", "translate", max_new_tokens=20)
    assert translated.shape[0] == 1


def test_generate_batch_and_detect_language(whisper) -> None:
    model, processor = whisper
    inputs = features(processor, [2.0, 5.0])
    out = generate(model, inputs, "en", "transcribe", max_new_tokens=10, timestamps=True)
    assert out["sequences"].shape[0] == 2
    assert len(processor.batch_decode(out["sequences"], skip_special_tokens=True)) == 2
    languages = model.detect_language(inputs.input_features)
    assert set(languages.tolist()) <= set(model.generation_config.lang_to_id.values())


def test_seed_makes_the_weights(tmp_path: Path) -> None:
    def weights(seed: int, name: str) -> dict[str, torch.Tensor]:
        return load_file(build_tiny("whisper", tmp_path / name, seed=seed) / "model.safetensors")

    first, again, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(
        first["model.decoder.layers.0.fc1.weight"], other["model.decoder.layers.0.fc1.weight"]
    )


def test_unknown_architecture_lists_the_known_ones(tmp_path: Path) -> None:
    assert "whisper" in TINY_ARCHS
    with pytest.raises(ValueError, match="whisper"):
        build_tiny("no-such-model", tmp_path)
    assert not any(tmp_path.iterdir())
