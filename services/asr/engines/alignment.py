"""Token times from Whisper's cross-attention, as openai-whisper finds them.

After decoding, one teacher-forced decoder pass over the decoded tokens gives
the cross-attention of the alignment heads; normalised and smoothed, it is a
cost matrix whose dynamic-time-warping path says when each token starts. One
parallel pass per batch costs far less than keeping attentions at every
decoding step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FRAME_SECONDS = 0.02  # one encoder position


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over the last axis with a window of `width` (odd), reflect-padded."""
    if width <= 1:
        return x
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(shape)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through `cost` (rows: tokens, columns: frames).

    Same recurrence and tie-breaking as openai-whisper's dtw_cpu, vectorised over
    anti-diagonals (cells with equal i + j only depend on earlier diagonals), so a
    30 s window costs a few hundred numpy steps instead of a Python double loop.
    Returns the path's (token indices, frame indices).
    """
    rows, cols = cost.shape
    acc = np.full((rows + 1, cols + 1), np.inf)
    acc[0, 0] = 0.0
    trace = np.full((rows + 1, cols + 1), -1, dtype=np.int8)
    for k in range(2, rows + cols + 1):
        i = np.arange(max(1, k - cols), min(rows, k - 1) + 1)
        j = k - i
        c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
        choice = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        acc[i, j] = cost[i - 1, j - 1] + np.choose(choice, (c0, c1, c2))
        trace[i, j] = choice
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = rows, cols
    path = []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    text, time = np.array(path[::-1]).T
    return text, time


def token_start_times(
    cross_attentions: torch.Tensor, heads: list[list[int]], frames: int, filter_width: int = 7
) -> np.ndarray:
    """Start time (s) of each token of one sequence, plus the end of the last one.

    cross_attentions: (layers, heads, tokens, encoder positions) for the tokens to time,
    the end-of-text token last; `frames` is the number of encoder positions with audio.
    """
    weights = torch.stack([cross_attentions[layer, head] for layer, head in heads]).float()
    weights = weights[:, :, : max(frames, 1)]
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter((weights - mean) / std.clamp_min(1e-10), filter_width)
    matrix = weights.mean(dim=0)
    text, time = dtw(-matrix.double().cpu().numpy())
    jumps = np.pad(np.diff(text), (1, 0), constant_values=1).astype(bool)
    return time[jumps] * FRAME_SECONDS
