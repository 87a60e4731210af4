"""Words from decoded Whisper tokens and their times, shared by every Whisper engine."""

from __future__ import annotations

import numpy as np

from speechmesh.asr.engines.base import Word

_PUNCTUATION = set("\"'.。,，!！?？:：”)]}、-")  # attached to the word before


def group_words(tokenizer, *timing) -> list[Word]:
    """Groups text tokens into words (split at spaces, whole characters kept together).

    Takes what `word_spans` takes: the tokens, each token's start and end time, each token's
    probability, and the [start, limit] the words' times are clamped to; a word's probability
    is the product of its tokens'.
    """
    return [Word(text, start, end, p) for text, _i, start, end, p in word_spans(tokenizer, *timing)]


def word_spans(
    tokenizer,
    tokens: list[int],
    starts: np.ndarray,
    ends: np.ndarray,
    probs: list[float],
    start: float,
    limit: float,
) -> list[tuple[str, list[int], float, float, float]]:
    """Like group_words, with the token positions of each word: (text, positions, start,
    end, probability)."""
    pieces: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for k in range(len(tokens)):
        pending.append(k)
        text = tokenizer.decode([tokens[j] for j in pending])
        if "\ufffd" not in text:
            pieces.append((text, pending))
            pending = []
    grouped: list[tuple[str, list[int]]] = []
    for text, idx in pieces:
        attach = (
            grouped
            and (not text.startswith(" ") or text.strip() in _PUNCTUATION)
            and not _spaceless(text)
        )
        if attach:
            grouped[-1] = (grouped[-1][0] + text, grouped[-1][1] + idx)
        elif text.strip():
            grouped.append((text, list(idx)))
    spans = []
    for text, idx in grouped:
        w_start = _clamp(starts[idx[0]], start, limit)
        w_end = _clamp(ends[idx[-1]], w_start, limit)
        probability = float(np.prod([probs[k] for k in idx]))
        spans.append((text.strip(), idx, w_start, w_end, probability))
    return _spread_shared_starts(spans)


def _spread_shared_starts(spans: list) -> list:
    """Words the alignment starts at the same instant (its path advanced several tokens in
    one frame) share the time up to the last one's end evenly, instead of all but the last
    lasting no time at all."""
    out = list(spans)
    i = 0
    while i < len(out):
        j = i
        while j + 1 < len(out) and out[j + 1][2] <= out[i][2]:
            j += 1
        if j > i:
            begin, end = out[i][2], out[j][3]
            step = (end - begin) / (j - i + 1)
            for k in range(i, j + 1):
                text, idx, _s, _e, probability = out[k]
                out[k] = (
                    text,
                    idx,
                    begin + step * (k - i),
                    begin + step * (k - i + 1),
                    probability,
                )
        i = j + 1
    return out


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(float(value), low), high)


def _spaceless(text: str) -> bool:
    """Scripts written without spaces: every character is its own word."""
    return any(
        "\u3040" <= ch <= "\u30ff"
        or "\u4e00" <= ch <= "\u9fff"
        or "\u0e00" <= ch <= "\u0eff"
        or "\u1000" <= ch <= "\u109f"
        for ch in text
    )
