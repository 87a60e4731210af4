"""SenseVoice's front end (speechmesh.asr.engines.sensevoice_frontend) against references written
independently from the formulas: Kaldi's fbank (feature-window.cc, mel-computations.cc) in
float64 with loops and a plain DFT, FunASR's LFR as its ONNX runtime writes it (frame by frame),
and CMVN from a hand-written am.mvn."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest
import torch

from speechmesh.asr.engines.sensevoice_frontend import (
    Frontend,
    FrontendConfig,
    apply_lfr,
    kaldi_fbank,
    load_cmvn,
    write_cmvn,
)

RATE = 16000


def reference_fbank(wave: np.ndarray, num_bins: int = 80) -> np.ndarray:
    """Kaldi compute-fbank-feats with FunASR's options, written from Kaldi's C++: 25 ms Hamming
    frames every 10 ms (snip edges), DC removed, pre-emphasis 0.97, zero-padded to 512, power
    spectrum, triangular mel bins from 20 Hz to Nyquist, log floored at float32 epsilon."""
    wave = np.asarray(wave, dtype=np.float64)
    length, shift, padded = 400, 160, 512
    count = 1 + (len(wave) - length) // shift
    a = 2 * math.pi / (length - 1)
    window = np.array([0.54 - 0.46 * math.cos(a * i) for i in range(length)])
    # The DFT as a sum, no FFT: X_k = sum_n x_n exp(-2 pi i k n / N), k = 0 .. N/2.
    k = np.arange(padded // 2 + 1)[:, None]
    n = np.arange(padded)[None, :]
    dft = np.exp(-2j * math.pi * k * n / padded)

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(RATE / 2)
    delta = (high - low) / (num_bins + 1)
    banks = np.zeros((num_bins, padded // 2 + 1))
    for b in range(num_bins):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        for i in range(padded // 2):  # Kaldi's bins stop short of the Nyquist bin
            m = mel(i * RATE / padded)
            if left < m < right:
                banks[b, i] = (
                    (m - left) / (center - left) if m <= center else (right - m) / (right - center)
                )
    out = np.zeros((count, num_bins))
    for f in range(count):
        frame = wave[f * shift : f * shift + length].copy()
        frame -= frame.mean()
        for i in range(length - 1, 0, -1):
            frame[i] -= 0.97 * frame[i - 1]
        frame[0] -= 0.97 * frame[0]
        frame *= window
        frame = np.concatenate([frame, np.zeros(padded - length)])
        power = np.abs(dft @ frame) ** 2
        energies = banks @ power
        out[f] = np.log(np.maximum(energies, np.finfo(np.float32).eps))
    return out


def mixed_signal() -> np.ndarray:
    """0.3 s of a chirp, a tone, noise and a DC offset, at 16-bit scale."""
    t = np.arange(int(0.3 * RATE)) / RATE
    rng = np.random.default_rng(1)
    chirp = np.sin(2 * np.pi * (200 * t + 6000 * t**2))
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    wave = 0.3 * (chirp + tone) + 0.01 * rng.standard_normal(len(t)) + 0.05
    return (wave * 32768).astype(np.float32)


def test_fbank_matches_kaldi_formulas() -> None:
    wave = mixed_signal()
    ours = kaldi_fbank(torch.from_numpy(wave)).numpy()
    reference = reference_fbank(wave)
    assert ours.shape == reference.shape == (1 + (len(wave) - 400) // 160, 80)
    # Log energies around 10 to 25: float32 against float64 agree to a few thousandths.
    assert np.abs(ours - reference).max() < 2e-3
    # A wrong window, no pre-emphasis or a missing DC removal each move them by far more.
    assert np.abs(ours - reference).max() < 0.01 * np.abs(reference - reference.mean()).mean()


def test_fbank_matches_kaldi_native_fbank() -> None:
    """A second, independent implementation (C++, FunASR's ONNX runtime uses it) when installed."""
    knf = pytest.importorskip("kaldi_native_fbank")
    wave = mixed_signal()
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = RATE
    opts.frame_opts.dither = 0
    opts.frame_opts.window_type = "hamming"
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    opts.energy_floor = 0
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(RATE, wave.tolist())
    fbank.input_finished()
    theirs = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    ours = kaldi_fbank(torch.from_numpy(wave)).numpy()
    assert np.abs(ours - theirs).max() < 2e-3


def test_a_tone_peaks_in_the_bin_around_its_frequency() -> None:
    t = np.arange(RATE) / RATE
    wave = (0.5 * 32768 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    energies = kaldi_fbank(torch.from_numpy(wave)).numpy().mean(axis=0)
    mel = lambda f: 1127.0 * np.log(1 + f / 700.0)  # noqa: E731
    centers = mel(20.0) + (np.arange(80) + 1) * (mel(8000.0) - mel(20.0)) / 81
    assert int(energies.argmax()) == int(np.abs(centers - mel(1000.0)).argmin())


@pytest.mark.parametrize(("samples", "frames"), [(0, 0), (1, 0), (300, 1), (399, 1), (400, 1)])
def test_clips_shorter_than_a_frame(samples: int, frames: int) -> None:
    """FunASR shortens frame_length to a clip shorter than it: one frame of the whole clip."""
    frontend = Frontend(FrontendConfig(lfr_m=7, lfr_n=6), None)
    audio = (0.1 * np.sin(np.arange(samples) / 3)).astype(np.float32)
    assert frontend(audio).shape == (frames, 560)


def reference_lfr(inputs: np.ndarray, lfr_m: int, lfr_n: int) -> np.ndarray:
    """FunASR's LFR as its ONNX runtime writes it, frame by frame."""
    count = inputs.shape[0]
    rows = int(np.ceil(count / lfr_n))
    inputs = np.vstack([np.tile(inputs[0], ((lfr_m - 1) // 2, 1)), inputs])
    count += (lfr_m - 1) // 2
    out = []
    for i in range(rows):
        if lfr_m <= count - i * lfr_n:
            out.append(inputs[i * lfr_n : i * lfr_n + lfr_m].reshape(-1))
        else:
            frame = inputs[i * lfr_n :].reshape(-1)
            for _ in range(lfr_m - (count - i * lfr_n)):
                frame = np.hstack([frame, inputs[-1]])
            out.append(frame)
    return np.vstack(out)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 6, 7, 12, 13, 40, 97])
def test_lfr_matches_funasr(count: int) -> None:
    features = np.random.default_rng(count).standard_normal((count, 80)).astype(np.float32)
    ours = apply_lfr(torch.from_numpy(features), 7, 6).numpy()
    assert ours.shape == (math.ceil(count / 6), 560)
    np.testing.assert_array_equal(ours, reference_lfr(features, 7, 6))


AM_MVN = """<Nnet>
<Splice> 4 4
[ 0 ]
<AddShift> 4 4
<LearnRateCoef> 0 [ -8.5 -9.25 -10 -11.125 ]
<Rescale> 4 4
<LearnRateCoef> 0 [ 0.25 0.5 0.125 2 ]
</Nnet>
"""


def test_cmvn_reads_kaldi_nnet_text(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "am.mvn"
    path.write_text(AM_MVN)
    shift, scale = load_cmvn(path)
    np.testing.assert_array_equal(shift, [-8.5, -9.25, -10, -11.125])
    np.testing.assert_array_equal(scale, [0.25, 0.5, 0.125, 2])
    write_cmvn(tmp_path / "again.mvn", shift, scale)
    again = load_cmvn(tmp_path / "again.mvn")
    np.testing.assert_array_equal(again[0], shift)
    np.testing.assert_array_equal(again[1], scale)
    assert (tmp_path / "again.mvn").read_text().splitlines()[3] == "<AddShift> 4 4"


def test_cmvn_without_vectors_is_an_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "am.mvn"
    path.write_text("<Nnet>\n</Nnet>\n")
    with pytest.raises(ValueError, match="AddShift"):
        load_cmvn(path)


def test_frontend_stacks_and_normalises(tmp_path: pathlib.Path) -> None:
    """One second: 98 fbank frames, 17 LFR rows of 560, each (x + shift) * scale."""
    rng = np.random.default_rng(0)
    shift = rng.uniform(-12, -8, 560).astype(np.float32)
    scale = rng.uniform(0.1, 0.3, 560).astype(np.float32)
    audio = (0.1 * rng.standard_normal(RATE)).astype(np.float32)
    config = FrontendConfig(lfr_m=7, lfr_n=6)
    features = Frontend(config, (shift, scale))(audio)
    assert features.shape == (17, 560) and features.dtype == torch.float32
    raw = apply_lfr(kaldi_fbank(torch.from_numpy(audio) * 32768), 7, 6)
    np.testing.assert_allclose(features.numpy(), (raw.numpy() + shift) * scale, rtol=1e-6)
    assert Frontend(config, None).frame_seconds == pytest.approx(0.06)
    unscaled = Frontend(
        FrontendConfig.from_conf({"lfr_m": 7, "lfr_n": 6, "upsacle_samples": False}), None
    )
    np.testing.assert_allclose(unscaled(audio * 32768).numpy(), raw.numpy(), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="snip_edges"):
        FrontendConfig.from_conf({"snip_edges": False})
    with pytest.raises(ValueError, match="560"):
        Frontend(config, (shift[:80], scale[:80]))
    with pytest.raises(ValueError, match="1-D"):
        Frontend(config, None)(np.zeros((2, 400), dtype=np.float32))
