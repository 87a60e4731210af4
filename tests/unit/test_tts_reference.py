"""Reference recordings for voice cloning: refusals, trimming, resampling, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from speechmesh.dsp.audio import decode_audio
from speechmesh.tts.reference import (
    MAX_TRANSCRIPT_CHARS,
    REASONS,
    ReferenceAudioError,
    TranscriptError,
    check_transcript,
    prepare_reference,
)
from tests.conftest import AUDIO, requires_shared

RATE = 16000
OUT = 24000


def speech_like(seconds: float, rate: int = RATE, peak: float = 0.5, seed: int = 0) -> np.ndarray:
    """Voiced 'syllables' (a 140 Hz harmonic series with noise) under a 4 Hz envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    x = voiced + 0.05 * rng.standard_normal(len(t))
    envelope = 0.15 + 0.85 * np.abs(np.sin(2 * np.pi * 2 * t))
    x = x * envelope
    return (x * peak / np.abs(x).max()).astype(np.float32)


def silence(seconds: float, rate: int = RATE, dbfs: float = -80.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = 10 ** (dbfs / 20)
    return (level * rng.standard_normal(round(seconds * rate))).astype(np.float32)


def dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


def refusal(audio: np.ndarray, rate: int = RATE, **kwargs) -> ReferenceAudioError:
    with pytest.raises(ReferenceAudioError) as info:
        prepare_reference(audio, rate, OUT, **kwargs)
    assert info.value.reason in REASONS
    assert isinstance(info.value, ValueError)
    assert str(info.value) == info.value.message
    return info.value


def test_resamples_trims_and_normalises():
    quiet = 0.05 * speech_like(5.0, peak=1.0)
    audio = np.concatenate([silence(1.0), quiet, silence(1.5)])
    out = prepare_reference(audio, RATE, OUT)
    assert out.dtype == np.float32 and out.ndim == 1
    # 5 s of sound plus a 0.2 s margin each side (give or take a 10 ms frame).
    assert abs(len(out) / OUT - 5.4) < 0.03
    margin = round(0.2 * OUT)
    assert abs(dbfs(out[margin:-margin]) - -20.0) < 0.2  # the speech, raised ~16 dB
    assert dbfs(out[:margin]) < -55 and dbfs(out[-margin:]) < -55  # the kept silence
    assert np.abs(out).max() <= 10 ** (-1 / 20) + 1e-6
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * OUT / len(out) - 140) < 2  # resampled, not re-pitched


def test_peak_ceiling_wins_over_loudness_for_spiky_audio():
    audio = speech_like(4.0, peak=0.05)
    audio[RATE * 2] = 0.9  # one click far above the speech
    out = prepare_reference(audio, RATE, RATE)
    assert len(out) == len(audio)
    assert abs(np.abs(out).max() - 10 ** (-1 / 20)) < 1e-4
    assert dbfs(out) < -20.5


def test_removes_dc_offset_and_fades_the_edges():
    audio = speech_like(3.0, peak=0.4) + np.float32(0.2)
    out = prepare_reference(audio, RATE, OUT)
    assert abs(float(out.mean())) < 1e-3
    assert out[0] == 0.0 and out[-1] == 0.0


def test_keeps_pauses_inside_the_speech():
    audio = np.concatenate([speech_like(2.0), silence(1.0), speech_like(2.0, seed=3)])
    out = prepare_reference(audio, RATE, RATE)
    assert len(out) == len(audio)


def test_too_short_counts_sound_not_silence():
    audio = np.concatenate([silence(2.0), speech_like(0.5), silence(2.0)])
    error = refusal(audio)
    assert error.reason == "TOO_SHORT"
    assert "send 1 to 30 s of one speaker" in error.message
    assert error.message.startswith("reference audio has 0.5 s of sound (4.5 s with the silence")


def test_too_short_with_a_stricter_minimum():
    error = refusal(speech_like(2.0), min_seconds=3.0)
    assert error.reason == "TOO_SHORT"
    assert error.message.startswith("reference audio has 2 s of sound; send 3 to 30 s")


def test_too_long():
    error = refusal(speech_like(31.0))
    assert error.reason == "TOO_LONG"
    assert "has 31 s of sound; send 1 to 30 s" in error.message


def test_length_limit_ignores_leading_and_trailing_silence():
    audio = np.concatenate([silence(3.0), speech_like(28.0), silence(3.0)])
    out = prepare_reference(audio, RATE, RATE)
    assert 28.0 <= len(out) / RATE <= 28.5


def test_kept_silence_never_exceeds_the_maximum():
    audio = np.concatenate([silence(1.0), speech_like(29.9), silence(1.0)])
    out = prepare_reference(audio, RATE, OUT)
    assert 29.9 <= len(out) / OUT <= 30.0


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(RATE * 5, dtype=np.float32),
        silence(5.0, dbfs=-60.0),
        np.concatenate([silence(2.0, dbfs=-65), speech_like(3.0, peak=0.002)]),
    ],
    ids=["digital-zero", "noise-floor", "whisper"],
)
def test_silent(audio):
    error = refusal(audio)
    assert error.reason == "SILENT"
    assert "silent" in error.message


def test_clipped_at_full_scale():
    audio = np.clip(speech_like(5.0) * 8, -1, 1)
    error = refusal(audio)
    assert error.reason == "CLIPPED"
    assert "lower input gain" in error.message


def test_clipped_then_attenuated_is_still_clipped():
    # Flat tops at 0.4 of full scale: clipped upstream, then turned down.
    audio = 0.4 * np.clip(speech_like(5.0) * 3, -1, 1)
    assert np.abs(audio).max() < 0.5
    assert refusal(audio).reason == "CLIPPED"


def test_a_few_flat_tops_are_tolerated():
    audio = speech_like(5.0, peak=0.6)
    for start in range(RATE, RATE + 5 * 800, 800):  # five short flat tops
        audio[start : start + 4] = 1.0
    out = prepare_reference(audio, RATE, OUT)
    assert len(out)


def test_peak_normalised_recording_is_not_clipped():
    audio = speech_like(5.0, peak=1.0)  # touches full scale once
    assert prepare_reference(audio, RATE, OUT).dtype == np.float32


@pytest.mark.parametrize(
    "audio",
    [np.zeros((RATE, 2), dtype=np.float32), np.array([0.1, np.nan] * RATE, dtype=np.float32)],
    ids=["stereo", "nan"],
)
def test_malformed_input_is_a_plain_value_error(audio):
    with pytest.raises(ValueError) as info:
        prepare_reference(audio, RATE, OUT)
    assert not isinstance(info.value, ReferenceAudioError)


def test_transcript():
    assert check_transcript("  Hello there.\n") == "Hello there."
    assert check_transcript("é" * MAX_TRANSCRIPT_CHARS) == "é" * MAX_TRANSCRIPT_CHARS
    assert len(check_transcript("🙂" * MAX_TRANSCRIPT_CHARS)) == MAX_TRANSCRIPT_CHARS  # code points
    for bad in ["", " \t\n", "x" * (MAX_TRANSCRIPT_CHARS + 1)]:
        with pytest.raises(TranscriptError) as info:
            check_transcript(bad)
        assert isinstance(info.value, ValueError) and "transcript" in str(info.value)


@requires_shared
def test_real_speech():
    ok = decode_audio(
        (AUDIO / "librivox/sense_and_sensibility_01_austen_64kb-0870.wav").read_bytes(),
        target_rate=None,
    )
    out = prepare_reference(ok.samples, ok.sample_rate, OUT)
    assert abs(len(out) / OUT - ok.duration) < 0.5
    assert abs(dbfs(out) - -20.0) < 0.5
    jfk = decode_audio((AUDIO / "fw/jfk.flac").read_bytes(), target_rate=None)
    assert abs(len(prepare_reference(jfk.samples, jfk.sample_rate, OUT)) / OUT - 11.0) < 0.5
    short = decode_audio((AUDIO / "sr/chinese.flac").read_bytes(), target_rate=None)
    with pytest.raises(ReferenceAudioError) as info:
        prepare_reference(short.samples, short.sample_rate, OUT)
    assert info.value.reason == "TOO_SHORT"
    assert "0.95 s of sound" in info.value.message


@requires_shared
@pytest.mark.parametrize("attenuation", [1.0, 0.4])
def test_real_speech_overdriven_by_6_db_is_clipped(attenuation):
    jfk = decode_audio((AUDIO / "fw/jfk.flac").read_bytes(), target_rate=None)
    peak_normalised = jfk.samples / np.abs(jfk.samples).max()
    prepare_reference(peak_normalised, jfk.sample_rate, OUT)  # clean at full scale: fine
    overdriven = attenuation * np.clip(2 * peak_normalised, -1, 1)
    with pytest.raises(ReferenceAudioError) as info:
        prepare_reference(overdriven, jfk.sample_rate, OUT)
    assert info.value.reason == "CLIPPED"
