"""Word-timing primitives against transformers' reference implementations."""

import numpy as np
import pytest
import torch
from transformers.models.whisper.generation_whisper import (
    _dynamic_time_warping,
    _median_filter,
)

from speechmesh.asr.engines.alignment import dtw, median_filter, token_start_times


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (9, 40), (45, 350)])
def test_dtw_finds_the_reference_path(shape):
    cost = np.random.default_rng(sum(shape)).standard_normal(shape)
    expected_text, expected_time = _dynamic_time_warping(cost)
    text, time = dtw(cost)
    np.testing.assert_array_equal(text, expected_text)
    np.testing.assert_array_equal(time, expected_time)


def test_dtw_path_is_monotonic_and_covers_the_matrix():
    text, time = dtw(np.random.default_rng(1).random((20, 200)))
    assert text[0] == 0 and time[0] == 0 and text[-1] == 19 and time[-1] == 199
    assert np.all(np.diff(text) >= 0) and np.all(np.diff(time) >= 0)


def test_median_filter_matches_reference():
    x = torch.randn(2, 3, 5, 60)
    torch.testing.assert_close(median_filter(x, 7), _median_filter(x, 7))


def test_token_times_follow_a_diagonal_attention():
    """Token k attends to frames [10k, 10k + 10): it starts at 10k frames (0.2 s each)."""
    tokens, frames = 6, 60
    attention = torch.zeros(1, 1, tokens, frames)
    for k in range(tokens):
        attention[0, 0, k, 10 * k : 10 * k + 10] = 1.0
    starts = token_start_times(attention, [[0, 0]], frames, filter_width=1)
    np.testing.assert_allclose(starts, [0.2 * k for k in range(tokens)], atol=0.02)
