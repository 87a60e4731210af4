"""Word error rates with the real whisper-tiny.en weights on real speech (../shared)."""

from __future__ import annotations

import asyncio
import csv
import itertools

import pytest

from speechmesh.asr.v1 import asr_pb2
from tests.asr_client import chunked, normalize, pcm16, stream_config, stub, wer
from tests.conftest import AUDIO, requires_shared

pytestmark = [requires_shared, pytest.mark.real_weights]


def manifest() -> dict[str, str]:
    with open(AUDIO / "MANIFEST.tsv", newline="") as f:
        return {row["path"]: row["transcript"] for row in csv.DictReader(f, delimiter="\t")}


def clips() -> list[str]:
    return [*sorted(p for p in manifest() if p.startswith("librivox/")), "goforward.wav"]


async def recognize(channel, path: str) -> asr_pb2.RecognizeResponse:
    request = asr_pb2.RecognizeRequest(
        request_id=path,
        audio=(AUDIO / path).read_bytes(),
        config=asr_pb2.RecognitionConfig(enable_word_time_offsets=True),
    )
    return await stub(channel).Recognize(request, timeout=120)


async def stream(channel, path: str, speed: float = 2.0):
    data, rate = pcm16(AUDIO / path)
    first = stream_config(
        rate,
        request_id=path,
        interim_results=True,
        config=asr_pb2.RecognitionConfig(enable_word_time_offsets=True),
    )
    return [
        r
        async for r in stub(channel).StreamingRecognize(
            chunked(first, data, rate, chunk_s=0.1, speed=speed), timeout=120
        )
    ]


async def test_unary_word_error_rate(real_asr):
    _, channel = real_asr
    paths = clips()
    responses = await asyncio.gather(*(recognize(channel, p) for p in paths))
    truth = manifest()
    error = wer([truth[p] for p in paths], [r.transcript for r in responses])
    assert error <= 0.10, [r.transcript for r in responses]
    for path, response in zip(paths, responses, strict=True):
        assert response.request_id == path
        assert response.language_code == "en"
        words = [w for s in response.segments for w in s.words]
        assert words, path
        starts = [w.start_offset.ToNanoseconds() for w in words]
        assert starts == sorted(starts)
        assert all(0 < w.confidence <= 1 for w in words)
        assert words[-1].end_offset.ToNanoseconds() <= response.audio_duration.ToNanoseconds()


async def test_streaming_matches_unary_with_interim_results(real_asr):
    _, channel = real_asr
    paths = clips()
    # Real time, all streams at once: interim decodes run at low priority, so they are
    # only starved when the model is saturated (as it would be with unary calls alongside).
    streams = await asyncio.gather(*(stream(channel, p, speed=1.0) for p in paths))
    # One at a time, as each stream hears only its own clip (calls made together share
    # windows, where each clip is decoded after others: often better, never the same).
    unary = [await recognize(channel, p) for p in paths]
    truth = manifest()
    finals = []
    for path, responses in zip(paths, streams, strict=True):
        results = [r.result for r in responses if r.HasField("result")]
        assert all(r.request_id == path for r in responses)
        final_at = [i for i, r in enumerate(results) if r.is_final]
        assert final_at, f"{path}: no final result"
        finals.append(" ".join(results[i].transcript for i in final_at))
        for i in final_at:
            assert results[i].stability == 1.0 and results[i].words
        indices = [r.utterance_index for r in results]
        assert indices == sorted(indices), "results of utterances come in order"
    interims = sum(
        1
        for responses in streams
        for r in responses
        if r.HasField("result") and not r.result.is_final
    )
    assert interims > 0, "interim results before the finals"
    references = [truth[p] for p in paths]
    unary_wer = wer(references, [r.transcript for r in unary])
    stream_wer = wer(references, finals)
    assert stream_wer <= unary_wer + 0.05, (finals, [r.transcript for r in unary])


async def test_interim_stable_prefix_only_grows(real_asr):
    _, channel = real_asr
    responses = await stream(
        channel, "librivox/sense_and_sensibility_01_austen_64kb-0870.wav", speed=1.0
    )
    by_utterance: dict[int, list[str]] = {}
    for r in responses:
        if r.HasField("result") and not r.result.is_final:
            by_utterance.setdefault(r.result.utterance_index, []).append(r.result.stable_transcript)
            assert r.result.transcript.startswith(r.result.stable_transcript)
    assert by_utterance, "interim results were sent"
    for stables in by_utterance.values():
        for before, after in itertools.pairwise(stables):
            assert after.startswith(before)


async def test_long_audio_is_transcribed_whole(real_asr):
    _, channel = real_asr
    response = await recognize(channel, "fw/multilingual.mp3")
    assert abs(response.audio_duration.ToNanoseconds() / 1e9 - 59.9) < 0.2
    ends = [s.end_offset.ToNanoseconds() / 1e9 for s in response.segments]
    starts = [s.start_offset.ToNanoseconds() / 1e9 for s in response.segments]
    assert starts == sorted(starts)
    assert max(ends) > 45, "segments cover the audio past the first 30 s window"
    assert "license" in normalize(response.transcript).replace("licence", "license")
