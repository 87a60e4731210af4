from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechmesh.dsp.vad import (
    CONTEXT_SAMPLES,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SileroVad,
    SpeechRegion,
    chunk_regions,
    speech_regions,
    speech_windows,
)

LIBRIVOX = Path(__file__).resolve().parents[2].parent / "shared" / "audio" / "librivox"
needs_audio = pytest.mark.skipif(
    not LIBRIVOX.is_dir(), reason=f"real speech clips not found at {LIBRIVOX}"
)


def clip(name: str) -> np.ndarray:
    path = LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{name}.wav"
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SAMPLE_RATE
    return audio


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad.load()


@pytest.fixture(scope="module")
def silero():
    """The silero-vad package's official JIT model (importing it sets torch's thread count to 1)."""
    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    return silero_vad


def stream(vad: SileroVad, audio: np.ndarray) -> np.ndarray:
    """Step the stateless model frame by frame, as a streaming service does."""
    whole = len(audio) // FRAME_SAMPLES * FRAME_SAMPLES
    frames = torch.from_numpy(audio[:whole]).view(-1, 1, FRAME_SAMPLES)
    context, state = vad.initial_state()
    probs = []
    with torch.inference_mode():
        for frame in frames:
            prob, context, state = vad(frame, context, state)
            probs.append(prob.item())
    return np.array(probs)


@pytest.mark.real_weights
@needs_audio
def test_matches_official_jit_model(vad: SileroVad, silero) -> None:
    audio = clip("0870")
    jit = silero.load_silero_vad()
    reference = []
    for start in range(0, len(audio), FRAME_SAMPLES):
        chunk = torch.from_numpy(audio[start : start + FRAME_SAMPLES])
        chunk = torch.nn.functional.pad(chunk, (0, FRAME_SAMPLES - len(chunk)))
        reference.append(jit(chunk, SAMPLE_RATE).item())
    reference = np.array(reference)

    probs = vad.speech_probs(audio)
    assert probs.shape == reference.shape
    assert np.abs(probs - reference).max() < 1e-4
    streamed = stream(vad, audio)
    assert np.abs(streamed - reference[: len(streamed)]).max() < 1e-4
    assert reference.max() > 0.9  # real speech, so the comparison means something

    # Without padding, the regions are silero's own get_speech_timestamps.
    duration = len(audio) / SAMPLE_RATE
    expected = silero.get_speech_timestamps_from_probs(
        list(reference), speech_pad_ms=0, audio_length_samples=len(audio)
    )
    regions = speech_regions(probs, pad=0.0, duration=duration)
    np.testing.assert_allclose(
        [(r.start, r.end) for r in regions],
        [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in expected],
    )


def test_batch_equals_single_streams(vad: SileroVad) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(20 * FRAME_SAMPLES) / SAMPLE_RATE
    signals = [
        0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)),
        0.1 * rng.standard_normal(len(t)),
        0.2 * np.sign(np.sin(2 * np.pi * 150 * t)) * (t % 0.25 < 0.15),
    ]
    audio = torch.tensor(np.stack(signals), dtype=torch.float32)
    context, state = vad.initial_state(batch=3)
    assert context.shape == (3, CONTEXT_SAMPLES) and state.shape == (2, 3, 128)
    batched = []
    with torch.inference_mode():
        for frames in audio.split(FRAME_SAMPLES, dim=1):
            probs, context, state = vad(frames, context, state)
            batched.append(probs)
    batched_probs = torch.stack(batched, dim=1).numpy()
    for signal, probs in zip(audio.numpy(), batched_probs, strict=True):
        np.testing.assert_allclose(probs, stream(vad, signal), atol=1e-5)


def test_silence_has_low_probabilities(vad: SileroVad) -> None:
    probs = vad.speech_probs(np.zeros(2 * SAMPLE_RATE + 100, dtype=np.float32))
    assert len(probs) == 63  # the last, partial frame is zero-padded
    assert probs.max() < 0.1
    assert speech_regions(probs, duration=2.0) == []
    assert len(vad.speech_probs(np.zeros(0, dtype=np.float32))) == 0


@pytest.mark.real_weights
@needs_audio
def test_speech_silence_speech_gives_two_regions(vad: SileroVad) -> None:
    first, second = clip("0880"), clip("0890")
    audio = np.concatenate([first, np.zeros(2 * SAMPLE_RATE, dtype=np.float32), second])
    duration = len(audio) / SAMPLE_RATE
    regions = speech_regions(vad.speech_probs(audio), duration=duration)
    assert len(regions) == 2
    gap_start, gap_end = len(first) / SAMPLE_RATE, len(first) / SAMPLE_RATE + 2.0
    assert regions[0].start < 0.5 and regions[0].end <= gap_start + 0.3
    assert gap_end <= regions[1].start < gap_end + 0.5 and regions[1].end == pytest.approx(
        duration, abs=0.3
    )


def test_speech_regions_hysteresis() -> None:
    frame = FRAME_SAMPLES / SAMPLE_RATE
    probs = np.array(
        [0.0] * 10
        + [0.9] * 20  # speech
        + [0.3] * 2  # a dip shorter than min_silence: still the same region
        + [0.45] * 10  # below threshold but above neg_threshold: still speech
        + [0.9] * 10
        + [0.0] * 20  # silence long enough to close the region
        + [0.9] * 3  # a blip shorter than min_speech: dropped
        + [0.0] * 20
    )
    duration = len(probs) * frame
    [region] = speech_regions(probs, pad=0.0, duration=duration)
    assert region.start == pytest.approx(10 * frame)
    assert region.end == pytest.approx(52 * frame)

    # Padding is clamped to the signal and overlapping padded regions merge.
    probs = np.array([0.9] * 10 + [0.0] * 5 + [0.9] * 10)
    duration = len(probs) * frame
    assert speech_regions(probs, pad=0.0, duration=duration) == [
        SpeechRegion(0.0, pytest.approx(10 * frame)),
        SpeechRegion(pytest.approx(15 * frame), duration),
    ]
    assert speech_regions(probs, pad=0.1, duration=duration) == [SpeechRegion(0.0, duration)]


def test_chunk_regions_merges_and_limits() -> None:
    regions = [
        SpeechRegion(0.0, 10.0),
        SpeechRegion(12.0, 25.0),
        SpeechRegion(26.0, 40.0),  # would make the first chunk 40 s long
        SpeechRegion(41.0, 50.0),
        SpeechRegion(60.0, 130.0),  # 70 s: three equal pieces
        SpeechRegion(131.0, 140.0),  # merges into the last piece
    ]
    chunks = chunk_regions(regions, duration=135.0)
    thirds = (60 + 70 / 3, 60 + 140 / 3)
    np.testing.assert_allclose(
        chunks, [(0, 25), (26, 50), (60, thirds[0]), thirds, (thirds[1], 135)]
    )
    assert all(end - start <= 30.0 + 1e-9 for start, end in chunks)
    np.testing.assert_allclose(
        chunk_regions(regions[:2], max_chunk=10.0, duration=135.0),
        [(0, 10), (12, 18.5), (18.5, 25)],
    )
    assert chunk_regions([], duration=10.0) == []


class _Probs:
    """A VAD that answers given frame probabilities."""

    def __init__(self, probs: np.ndarray):
        self.probs = probs

    def speech_probs(self, audio: np.ndarray) -> np.ndarray:
        return self.probs


async def test_speech_windows_of_short_and_long_recordings(vad: SileroVad) -> None:
    short = np.zeros(5 * SAMPLE_RATE, dtype=np.float32)
    assert await speech_windows(vad, short, 5.0, 30.0) == [(0.0, 5.0)]  # fits: no VAD
    assert await speech_windows(vad, np.zeros(40 * SAMPLE_RATE, np.float32), 40.0, 30.0) == []
    # Speech 0-20 s and 22-50 s: two windows, each within 30 s, the pause left out.
    frame = FRAME_SAMPLES / SAMPLE_RATE
    times = np.arange(round(50 / frame)) * frame
    probs = np.where((times < 20) | (times >= 22), 0.9, 0.0).astype(np.float32)
    windows = await speech_windows(_Probs(probs), np.zeros(0, np.float32), 50.0, 30.0)
    assert len(windows) == 2
    (a, b), (c, d) = windows
    assert a == 0.0 and 19.9 < b < 21 and 21 < c < 22.1 and d == 50.0
    assert all(end - start <= 30.0 for start, end in windows)
