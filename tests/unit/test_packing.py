"""Packed windows split back into clips: words go to the clip they start in, and a clip that
got nothing while its neighbours did is decoded again alone (Whisper merges or skips clips that
say the same thing)."""

from __future__ import annotations

from speechmesh.asr.engines.base import Segment, Word
from speechmesh.asr.engines.packing import Placement, TimedSegment, split

PLACES = [Placement(0, 0.0, 3.0), Placement(1, 4.0, 7.0), Placement(2, 8.0, 11.0)]


def timed(text: str, *words: tuple[str, float, float]) -> TimedSegment:
    found = [Word(w, start, end, 0.9) for w, start, end in words]
    return TimedSegment(Segment(text, found[0].start, found[-1].end, 0.9, found), found)


def test_words_go_to_the_clip_they_start_in():
    out, again = split(
        [
            timed("go forward", ("go", 0.2, 0.5), ("forward", 0.6, 1.0)),
            timed("go back", ("go", 4.2, 4.5), ("back", 4.6, 5.0)),
            timed("stop", ("stop", 8.3, 8.8)),
        ],
        PLACES,
        None,
    )
    assert again == []
    assert [s.text for s in out[1]] == ["go back"]
    assert abs(out[1][0].start - 0.2) < 1e-9  # in the clip's own times


def test_a_clip_left_without_words_is_decoded_again_alone():
    # One segment for the first two clips' identical phrase: the second clip got nothing.
    out, again = split(
        [
            timed("go forward", ("go", 0.2, 0.5), ("forward", 0.6, 1.0)),
            timed("stop", ("stop", 8.3, 8.8)),
        ],
        PLACES,
        None,
    )
    assert again == [1]
    assert set(out) == {0, 2}


def test_a_window_where_nothing_was_heard_keeps_every_clip_empty():
    out, again = split([], PLACES, None)
    assert again == [] and out == {0: [], 1: [], 2: []}
