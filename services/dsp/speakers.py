"""Whether two pieces of speech come from the same speaker, without a trained model.

The test is the Bayesian information criterion of speaker-change detection (Chen and
Gopalakrishnan, 1998): model each piece's MFCC frames as one Gaussian with full covariance, and
both together as one Gaussian; if one Gaussian explains the two pieces better than two do, once
the extra parameters are paid for, they are one speaker. `bic_distance` is that comparison per
frame (ΔBIC / N with λ = 1): below 0 one model wins outright, and it grows with how different the
voices sound. Recording channel and language move it too, so the threshold is conservative:
on the suite's test speech, different speakers all score above 0.18 while the same reader on one
recording scores below 0.07 (tests/unit/test_speakers.py). A false "different" only costs the
cascade a preset voice for one short segment; a false "same" would clone the wrong person.

Pieces shorter than MIN_FRAMES voiced frames cannot be judged and count as different.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
_FRAME = 400  # 25 ms
_HOP = 160  # 10 ms
_FFT = 512
_MELS = 40
_CEPSTRA = 12  # c1..c12; c0 (loudness) is left out
#: ΔBIC per frame at or below which two pieces count as one speaker.
SAME_SPEAKER_THRESHOLD = 0.12
#: Fewest voiced frames a piece needs to be judged (0.5 s).
MIN_FRAMES = 50


@functools.cache
def _mel_filters() -> np.ndarray:
    def to_mel(hz):
        return 2595 * np.log10(1 + hz / 700)

    def to_hz(mel):
        return 700 * (10 ** (mel / 2595) - 1)

    edges = to_hz(np.linspace(to_mel(60.0), to_mel(7600.0), _MELS + 2))
    bins = np.floor((_FFT + 1) * edges / SAMPLE_RATE).astype(int)
    filters = np.zeros((_MELS, _FFT // 2 + 1))
    for i in range(_MELS):
        low, mid, high = bins[i], bins[i + 1], bins[i + 2]
        filters[i, low:mid] = (np.arange(low, mid) - low) / max(mid - low, 1)
        filters[i, mid:high] = (high - np.arange(mid, high)) / max(high - mid, 1)
    return filters


@functools.cache
def _dct() -> np.ndarray:
    k = np.arange(_CEPSTRA + 1)[:, None]
    n = np.arange(_MELS)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * _MELS)) * np.sqrt(2 / _MELS)
    return basis[1:]  # drop c0


def mfcc(audio: np.ndarray) -> np.ndarray:
    """MFCC frames (c1..c12) of the louder 70 % of 25 ms frames of 16 kHz mono audio; shape
    (frames, 12), possibly 0 frames."""
    audio = np.asarray(audio, dtype=np.float64)
    if len(audio) < _FRAME:
        return np.zeros((0, _CEPSTRA))
    frames = np.lib.stride_tricks.sliding_window_view(audio, _FRAME)[::_HOP] * np.hamming(_FRAME)
    power = np.abs(np.fft.rfft(frames, _FFT)) ** 2
    energy = power.sum(axis=1)
    voiced = power[energy > np.percentile(energy, 30)]
    return np.log(voiced @ _mel_filters().T + 1e-10) @ _dct().T


def bic_distance(a: np.ndarray, b: np.ndarray) -> float:
    """ΔBIC per frame between two pieces' MFCC frames (see the module's comment); +inf when
    either has fewer than MIN_FRAMES frames."""
    if len(a) < MIN_FRAMES or len(b) < MIN_FRAMES:
        return float("inf")
    both = np.vstack([a, b])
    dims = both.shape[1]

    def log_det(frames: np.ndarray) -> float:
        return float(np.linalg.slogdet(np.cov(frames.T) + 1e-6 * np.eye(dims))[1])

    n, n_a, n_b = len(both), len(a), len(b)
    penalty = 0.5 * (dims + 0.5 * dims * (dims + 1)) * np.log(n)
    gain = 0.5 * (n * log_det(both) - n_a * log_det(a) - n_b * log_det(b))
    return (gain - penalty) / n


def same_speaker(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether MFCC frames `a` and `b` (from `mfcc`) are one speaker, conservatively."""
    return bic_distance(a, b) <= SAME_SPEAKER_THRESHOLD
