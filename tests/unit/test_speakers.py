"""The same-speaker test the cascade's voice cloning relies on, on real speech from ../shared:
one reader's sentences are one speaker, and every pair of different speakers is not."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechmesh.dsp.speakers import bic_distance, mfcc, same_speaker
from tests.conftest import AUDIO

pytestmark = pytest.mark.skipif(not AUDIO.is_dir(), reason=f"real speech not found at {AUDIO}")

LIBRIVOX = "librivox/sense_and_sensibility_01_austen_64kb-0{}.wav"


def load(path: str, channel: int | None = None) -> np.ndarray:
    data, rate = sf.read(AUDIO / path, dtype="float32", always_2d=True)
    samples = data[:, channel] if channel is not None else data.mean(axis=1)
    return soxr.resample(samples, rate, 16000) if rate != 16000 else samples


@pytest.fixture(scope="module")
def speakers() -> dict[str, list[np.ndarray]]:
    """Pieces of speech by speaker: each list is one person on one recording."""
    jfk = load("fw/jfk.flac")
    stereo = "fw/stereo_diarization.wav"
    return {
        "austen reader": [mfcc(load(LIBRIVOX.format(n))) for n in (870, 880, 890)],
        "kennedy": [mfcc(jfk[: 5 * 16000]), mfcc(jfk[5 * 16000 :])],
        "left speaker": [mfcc(load(stereo, 0)[:40000]), mfcc(load(stereo, 0)[40000:])],
        "right speaker": [mfcc(load(stereo, 1)[:40000])],
        "go forward": [mfcc(load("goforward.wav"))],
    }


def test_one_reader_is_one_speaker(speakers):
    for a, b in itertools.combinations(speakers["austen reader"], 2):
        assert same_speaker(a, b), bic_distance(a, b)
    left = speakers["left speaker"]
    assert same_speaker(left[0], left[1]), bic_distance(*left)


def test_different_speakers_are_never_one(speakers):
    for (name_a, pieces_a), (name_b, pieces_b) in itertools.combinations(speakers.items(), 2):
        for a, b in itertools.product(pieces_a, pieces_b):
            assert not same_speaker(a, b), (name_a, name_b, bic_distance(a, b))


def test_too_short_to_judge():
    rng = np.random.default_rng(0)
    short = mfcc(rng.normal(size=3000).astype(np.float32))
    long = mfcc(rng.normal(size=32000).astype(np.float32))
    assert bic_distance(short, long) == float("inf")
    assert not same_speaker(short, long)
