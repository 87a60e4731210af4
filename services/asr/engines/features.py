"""Whisper's log-mel features, computed in torch on the audio alone.

The reference (WhisperFeatureExtractor) pads every clip with zeros to 30 s and runs a numpy STFT
over the whole window: for a 5 s clip most of that work is on silence, and it costs a quarter of
a tiny model's time per request on a CPU. Frames that only see the padding all come out the same
(log10 of the 1e-10 floor), so this computes the STFT of the audio and a frame's worth of zeros
after it, fills the rest of the window with that constant, and applies the reference's
per-recording floor (max - 8) and scaling. The result equals the reference's to float rounding.
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

_FLOOR = -10.0  # log10 of the 1e-10 clamp: the value of every frame of padding


class LogMel:
    """Feature extractor of one Whisper checkpoint (its mel bins and window length)."""

    def __init__(self, path: pathlib.Path):
        reference = WhisperFeatureExtractor.from_pretrained(path)
        self.n_fft = reference.n_fft
        self.hop = reference.hop_length
        self.frames = reference.nb_max_frames  # 3000 for a 30 s window
        self.n_mels = reference.feature_size
        self.sample_rate = reference.sampling_rate
        self._filters = torch.from_numpy(np.asarray(reference.mel_filters, dtype=np.float32)).T
        self._window = torch.hann_window(self.n_fft)

    @torch.inference_mode()
    def __call__(self, clips: list[np.ndarray]) -> np.ndarray:
        """Features of each clip (float32 mono, at most one window) as [batch, mels, frames]."""
        out = np.empty((len(clips), self.n_mels, self.frames), dtype=np.float32)
        for row, clip in enumerate(clips):
            out[row] = self._one(clip)
        return out

    def _one(self, clip: np.ndarray) -> np.ndarray:
        samples = min(len(clip), self.frames * self.hop)
        # Enough zeros after the audio that the last computed frame sees only padding, as the
        # reference's frames there do (its window is zeros to the end).
        padded = np.zeros(samples + self.n_fft + self.hop, dtype=np.float32)
        padded[:samples] = clip[:samples]
        stft = torch.stft(
            torch.from_numpy(padded),
            self.n_fft,
            self.hop,
            window=self._window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        computed = min(samples // self.hop + 2, self.frames)
        power = stft[..., :computed].abs() ** 2
        mel = (self._filters @ power).clamp_(min=1e-10).log10_()
        log_spec = torch.full((self.n_mels, self.frames), _FLOOR)
        log_spec[:, :computed] = mel
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).numpy()
