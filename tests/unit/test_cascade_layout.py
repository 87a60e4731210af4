"""The cascade's timeline: translated speech laid on the source's segment times."""

from __future__ import annotations

import numpy as np

from speechmesh.translate.cascade.pipeline import lay_out


def test_speech_starts_where_its_segment_starts_or_after_the_previous_speech():
    rate = 10
    first = np.ones(20, np.float32)  # 2 s, segment at 1 s
    second = np.full(10, 2.0, np.float32)  # 1 s, segment at 2.5 s: the first still speaks
    third = np.full(5, 3.0, np.float32)  # 0.5 s, segment at 8 s
    audio, spans = lay_out([(1.0, first), (2.5, second), (8.0, third)], rate, 10.0)
    assert spans == [(1.0, 3.0), (3.0, 4.0), (8.0, 8.5)]
    assert len(audio) == 100  # as long as the source
    assert not audio[:10].any() and (audio[10:30] == 1).all() and (audio[30:40] == 2).all()
    assert not audio[40:80].any() and (audio[80:85] == 3).all()


def test_speech_longer_than_the_source_is_kept_whole():
    audio, spans = lay_out([(0.5, np.ones(30, np.float32))], 10, 2.0)
    assert spans == [(0.5, 3.5)] and len(audio) == 35
