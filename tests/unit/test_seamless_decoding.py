"""SeamlessEngine decoding on a tiny random SeamlessM4T v2: beams, the output budget and its
`truncated` mark, and batched speech output equal to each job alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from speechmesh.tiny.models import build_tiny
from speechmesh.translate.engines.base import TranslationJob, TranslationOutput
from speechmesh.translate.engines.seamless import DEFAULT_BEAMS, EXTRA_TOKENS, SeamlessEngine


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run faster without intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("seamless_m4t_v2", tmp_path_factory.mktemp("tiny-seamless"))


@pytest.fixture(scope="module")
def engine(checkpoint: Path) -> SeamlessEngine:
    return SeamlessEngine("tiny-seamless", checkpoint, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def greedy(checkpoint: Path) -> SeamlessEngine:
    return SeamlessEngine(
        "tiny-seamless", checkpoint, torch.device("cpu"), torch.float32, num_beams=1
    )


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)


def run(engine: SeamlessEngine, *jobs: TranslationJob) -> list[TranslationOutput]:
    outputs = engine.run_batch(list(jobs))
    for output in outputs:
        assert isinstance(output, TranslationOutput), output
    return outputs


def test_reference_defaults(engine: SeamlessEngine) -> None:
    assert DEFAULT_BEAMS == 5 and engine.num_beams == 5
    assert EXTRA_TOKENS == 200
    positions = engine.model.config.max_position_embeddings  # 1024 in the tiny model
    assert engine.output_budget(10) == 210
    assert engine.output_budget(5000) == positions - 3  # start, language and </s> fit too
    with pytest.raises(ValueError, match="num_beams"):
        SeamlessEngine("x", Path("/nonexistent"), torch.device("cpu"), torch.float32, num_beams=0)


def test_text_runs_to_its_budget_and_is_marked_truncated(greedy: SeamlessEngine) -> None:
    """Random weights never write </s>: the output is exactly the budget and marked."""
    text = "Hello there, my friend."
    (output,) = run(greedy, TranslationJob("t2tt", "fra", text=text, source="eng"))
    assert output.truncated
    source = greedy.count_tokens(text)
    ids = greedy.tokenizer(output.text, add_special_tokens=False).input_ids
    # Decoding and encoding again may merge or split a few pieces; the length is the budget's.
    assert abs(len(ids) - greedy.output_budget(source)) <= 0.1 * greedy.output_budget(source)


def test_a_row_ends_at_its_own_budget_in_a_batch(greedy: SeamlessEngine) -> None:
    short = TranslationJob("t2tt", "fra", text="Hi.", source="eng")
    long = TranslationJob("t2tt", "fra", text="A much longer sentence " * 8, source="eng")
    alone_short, alone_long = run(greedy, short)[0], run(greedy, long)[0]
    batch_short, batch_long = run(greedy, short, long)
    assert batch_short.text == alone_short.text and batch_short.truncated
    assert batch_long.text == alone_long.text and batch_long.truncated
    assert len(alone_long.text) > len(alone_short.text)


def test_beams_change_the_search(engine: SeamlessEngine, greedy: SeamlessEngine) -> None:
    job = TranslationJob("t2tt", "fra", text="Hello there.", source="eng")
    (beam,) = run(engine, job)
    (best,) = run(greedy, job)
    assert beam.truncated and best.truncated
    assert beam.text != best.text  # the tiny model's beam and greedy paths part


def test_budget_for_speech_follows_encoder_frames(greedy: SeamlessEngine) -> None:
    config = greedy.model.config
    # 2 s of audio: 100 feature frames (20 ms each), subsampled by the adaptor.
    frames = greedy._encoder_frames(100)
    assert (
        frames
        == (100 + 2 * (config.adaptor_kernel_size // 2) - config.adaptor_kernel_size)
        // (config.adaptor_stride)
        + 1
    )
    (output,) = run(greedy, TranslationJob("s2tt", "fra", audio=noise(2.0, 0)))
    assert output.truncated


@pytest.mark.parametrize("beams", [1, DEFAULT_BEAMS])
def test_batched_speech_to_speech_equals_each_job_alone(
    engine: SeamlessEngine, greedy: SeamlessEngine, beams: int
) -> None:
    chosen = engine if beams == DEFAULT_BEAMS else greedy
    short = TranslationJob("s2st", "spa", audio=noise(0.6, 1), voice=1)
    long = TranslationJob("s2st", "spa", audio=noise(2.4, 2), voice=1)
    alone = [run(chosen, job)[0] for job in (short, long)]
    batched = run(chosen, short, long)
    assert len(alone[0].audio) < len(alone[1].audio)
    for one, both in zip(alone, batched, strict=True):
        assert both.text == one.text
        assert both.truncated == one.truncated
        assert both.audio.shape == one.audio.shape
        np.testing.assert_allclose(both.audio, one.audio, atol=1e-5)


def test_text_to_speech_batch_equals_alone(greedy: SeamlessEngine) -> None:
    jobs = [
        TranslationJob("t2st", "spa", text="Hi.", source="eng"),
        TranslationJob("t2st", "spa", text="A longer sentence to speak here.", source="eng"),
    ]
    alone = [run(greedy, job)[0] for job in jobs]
    for one, both in zip(alone, run(greedy, *jobs), strict=True):
        assert both.audio.shape == one.audio.shape
        np.testing.assert_allclose(both.audio, one.audio, atol=1e-5)


def test_speech_of_one_job_is_what_transformers_generates(greedy: SeamlessEngine) -> None:
    """`_speak` redoes the second half of generate() per row: alone it gives generate()'s own
    units and audio (the vocoder, in both, stops at a row's first pad unit)."""
    from transformers import LogitsProcessorList

    from speechmesh.translate.engines.seamless import _RowCaps

    job = TranslationJob("t2st", "spa", text="Hello there.", source="eng", voice=1)
    (output,) = run(greedy, job)
    inputs, lengths = greedy._encode_texts([job])
    budget = greedy.output_budget(lengths[0])
    with torch.inference_mode():
        waveform, size = greedy.model.generate(
            **inputs,
            tgt_lang="spa",
            speaker_id=1,
            text_max_new_tokens=budget + 1,
            text_num_beams=1,
            text_do_sample=False,
            text_logits_processor=LogitsProcessorList(
                [_RowCaps([budget], 1, greedy.tokenizer.eos_token_id, prefix=2)]
            ),
        )
    expected = waveform[0, : int(size.reshape(-1)[0])].numpy()
    assert output.audio.shape == expected.shape
    np.testing.assert_allclose(output.audio, expected, atol=1e-6)
