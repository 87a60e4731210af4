"""Whisper windows decoded the way OpenAI's transcribe() decodes long audio, on both runtimes,
with the decoder's output scripted (the tiny random checkpoint's vocabulary, real engines).

- A decode that ends its text early, after a closed segment, leaves the rest of the window
  undecoded: the CTranslate2 engine decodes on from the start of the segment cut off (found by
  Whisper base on the German licence reading, which stopped after "... der Software zu
  verkaufen" with 18 s of speech left).
- A segment that starts at or past the end of the audio was made up in the window's padding
  and is not kept (found by Whisper base under transformers: "Ich bin jetzt bei der Zeit ..."
  from 29.9 s to 29.9 s at the end of a 29.9 s recording).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from speechmesh.asr.engines.base import DecodeJob, DecodeOptions, past_the_end
from speechmesh.asr.engines.vocabulary import TIME_PRECISION

RATE = 16000
SECONDS = 29.9


def audio(seconds: float = SECONDS) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def tokens(vocab, *parts: float | str) -> list[int]:
    """Timestamps (seconds) and text, as Whisper writes them."""
    out: list[int] = []
    for part in parts:
        if isinstance(part, str):
            out += vocab.tokenizer.encode(part, add_special_tokens=False)
        else:
            out.append(vocab.timestamp_begin + round(part / TIME_PRECISION))
    return out


# -- CTranslate2 ------------------------------------------------------------


@pytest.fixture(scope="module")
def ct2(tiny_whisper, tmp_path_factory):
    pytest.importorskip("ctranslate2")
    from speechmesh.asr.engines.conversion import converted
    from speechmesh.asr.engines.whisper_ct2 import CTranslate2WhisperEngine

    return CTranslate2WhisperEngine(
        "tiny",
        tiny_whisper,
        converted(tiny_whisper, tmp_path_factory.mktemp("ct2-cache")),
        device="cpu",
        device_index=0,
        compute_type="int8",
        workers=1,
        threads=1,
        packing=False,
    )


class ScriptedModel:
    """Stands in for ctranslate2.models.Whisper: each generate() call answers the next script
    (one token list per window) and records the windows' decoder prompts; detection finds
    German."""

    def __init__(self, vocab, *scripts: list[list[int]]):
        self.vocab = vocab
        self.scripts = list(scripts)
        self.prompts: list[list[list[int]]] = []
        self.detections = 0

    def encode(self, features, to_cpu=False):
        return features

    def detect_language(self, encoded):
        self.detections += 1
        return [[("<|de|>", 0.9)] for _ in range(encoded.shape[0])]

    def generate(self, encoded, prompts, **_kwargs):
        self.prompts.append(prompts)
        script = self.scripts.pop(0)
        assert len(script) == len(prompts)
        return [
            types.SimpleNamespace(sequences_ids=[[*ids, self.vocab.eot]], scores=[-0.1])
            for ids in script
        ]


def decode_ct2(engine, model, clips, monkeypatch, language=None):
    seen: list[list[float]] = []  # the seconds of each call's windows
    original = engine._decode

    def spy(model, windows, options):
        seen.append([w.seconds for w in windows])
        return original(model, windows, options)

    monkeypatch.setattr(engine, "_decode", spy)
    jobs = [DecodeJob(clip, DecodeOptions(language=language)) for clip in clips]
    return engine._decode_batch(model, jobs), seen


def test_ct2_decodes_on_after_an_early_end_of_text(ct2, monkeypatch):
    vocab = ct2.vocab
    first = tokens(vocab, 0.0, " Jeden der diese Software", 11.8, 11.8, " Dies zu verkaufen")
    rest = tokens(vocab, 0.0, " Dies zu verkaufen und anderen zu übertragen", 18.0)
    model = ScriptedModel(vocab, [first], [rest])
    (result,), seen = decode_ct2(ct2, model, [audio()], monkeypatch)

    # The rest of the clip (from the cut segment's start, 11.8 s) is decoded, in the language
    # detected first; the 11.8 s before it are not decoded again.
    assert seen == [[pytest.approx(SECONDS)], [pytest.approx(SECONDS - 11.8)]]
    assert model.detections == 1
    assert model.prompts[1][0] == vocab.sot_sequence("de", "transcribe")
    assert result.language == "de" and result.language_probability == pytest.approx(0.9)
    assert [s.text for s in result.segments] == [
        "Jeden der diese Software",
        "Dies zu verkaufen und anderen zu übertragen",
    ]
    assert [(s.start, s.end) for s in result.segments] == [
        pytest.approx((0.0, 11.8)),
        pytest.approx((11.8, 29.8)),
    ]


def test_ct2_decodes_on_until_the_clip_is_done(ct2, monkeypatch):
    vocab = ct2.vocab
    model = ScriptedModel(
        vocab,
        [tokens(vocab, 0.0, " one", 5.0, 5.0, " two")],
        [tokens(vocab, 0.0, " two", 6.0, 6.0, " three")],
        [tokens(vocab, 0.0, " three four", 10.0)],
    )
    (result,), seen = decode_ct2(ct2, model, [audio()], monkeypatch, language="de")
    assert seen == [[pytest.approx(SECONDS)], [pytest.approx(24.9)], [pytest.approx(18.9)]]
    assert [(s.text, round(s.start, 2), round(s.end, 2)) for s in result.segments] == [
        ("one", 0.0, 5.0),
        ("two", 5.0, 11.0),
        ("three four", 11.0, 21.0),
    ]


def test_ct2_takes_a_lone_unclosed_segment_as_it_is(ct2, monkeypatch):
    # As transcribe() does: with no closed segment before it, the window is done (decoding it
    # again from its start would decode the same audio).
    vocab = ct2.vocab
    model = ScriptedModel(vocab, [tokens(vocab, 0.0, " Jeden der diese Software")])
    (result,), seen = decode_ct2(ct2, model, [audio()], monkeypatch, language="de")
    assert len(seen) == 1
    assert [(s.text, s.start, s.end) for s in result.segments] == [
        ("Jeden der diese Software", 0.0, pytest.approx(SECONDS))
    ]


def test_ct2_keeps_a_segment_cut_off_just_before_the_end(ct2, monkeypatch):
    # Less than MIN_RESUME_SECONDS left: the cut segment is kept, nothing is decoded again.
    vocab = ct2.vocab
    model = ScriptedModel(vocab, [tokens(vocab, 0.0, " eins", 29.0, 29.0, " zwei")])
    (result,), seen = decode_ct2(ct2, model, [audio()], monkeypatch, language="de")
    assert len(seen) == 1
    assert [s.text for s in result.segments] == ["eins", "zwei"]


def test_ct2_drops_a_segment_made_up_past_the_end(ct2, monkeypatch):
    vocab = ct2.vocab
    made_up = tokens(vocab, 0.0, " Dies zu verkaufen", 29.5, 29.9, " Ich bin jetzt bei", 30.0)
    model = ScriptedModel(vocab, [made_up])
    (result,), seen = decode_ct2(ct2, model, [audio()], monkeypatch, language="de")
    assert len(seen) == 1
    assert [s.text for s in result.segments] == ["Dies zu verkaufen"]


def test_ct2_several_clips_continue_side_by_side(ct2, monkeypatch):
    # Two lone clips in one batch: only the one that stopped early is decoded on, alone.
    vocab = ct2.vocab
    model = ScriptedModel(
        vocab,
        [tokens(vocab, 0.0, " a", 4.0, 4.0, " b"), tokens(vocab, 0.0, " c", 8.0)],
        [tokens(vocab, 0.0, " b d", 6.0)],
    )
    results, seen = decode_ct2(ct2, model, [audio(20.0), audio(8.0)], monkeypatch, "de")
    assert seen == [[pytest.approx(20.0), pytest.approx(8.0)], [pytest.approx(16.0)]]
    assert [[s.text for s in r.segments] for r in results] == [["a", "b d"], ["c"]]
    assert results[0].segments[1].start == pytest.approx(4.0)


# -- transformers -----------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_engine(tiny_whisper):
    from speechmesh.asr.engines.whisper import WhisperEngine

    return WhisperEngine("tiny", tiny_whisper, torch.device("cpu"), torch.float32)


def generated(vocab, *segments: tuple[float, float, list[int]]) -> dict:
    """What generate(return_segments=True) gives for one window: its segments (times in the
    audio's seconds, tokens with timestamps)."""
    no_scores = {"sequences": torch.tensor([], dtype=torch.long), "scores": []}
    return {
        "segments": [
            [
                {
                    "start": torch.tensor(start, dtype=torch.float64),
                    "end": torch.tensor(end, dtype=torch.float64),
                    "tokens": torch.tensor(ids),
                    "result": no_scores,
                    "idxs": (0, len(ids)),
                }
                for start, end, ids in segments
            ]
        ]
    }


def test_transformers_drops_a_segment_made_up_past_the_end(transformers_engine, monkeypatch):
    engine = transformers_engine
    vocab = engine.vocab
    output = generated(
        vocab,
        (0.0, 11.8, tokens(vocab, 0.0, " Jeden der diese Software", 11.8)),
        (11.8, 29.900000000000002, tokens(vocab, 0.0, " anderen zu übertragen", 20.22)),
        # generate() seeks on into the padding and makes a segment up there
        (29.900000000000002, 36.9, tokens(vocab, 2.12, " Ich bin jetzt bei", 9.12)),
    )
    monkeypatch.setattr(engine.model, "generate", lambda **_kwargs: output)
    (result,) = engine.decode_batch([DecodeJob(audio(), DecodeOptions(language="de"))])
    assert [(s.text, s.start, s.end) for s in result.segments] == [
        ("Jeden der diese Software", 0.0, pytest.approx(11.8)),
        ("anderen zu übertragen", pytest.approx(11.8), pytest.approx(SECONDS)),
    ]


def test_past_the_end():
    assert past_the_end(29.9, 29.9) and past_the_end(29.900000000000002, 29.9)
    assert past_the_end(31.0, 29.9)
    assert not past_the_end(29.88, 29.9) and not past_the_end(0.0, 29.9)
