"""SenseVoiceSmall's network in plain torch: a port of FunAudioLLM/SenseVoice's model.py.

Module names, nesting and parameter shapes are the reference's, so that the published
`model.pt` loads with strict=True: `embed` (the query embeddings), `encoder`
(SenseVoiceEncoderSmall: `encoders0`, `encoders`, `after_norm`, `tp_encoders`, `tp_norm`) and
`ctc.ctc_lo`. Only inference is kept: no dropout, no stochastic depth, no losses, no streaming
chunks.

The forward pass is the reference's `inference()`: four query embeddings go in front of the
features, [language, 1, 2, text normalization] (embedding rows: language from `LANGUAGE_QUERY`,
1 and 2 the event and emotion queries, 14 "withitn" or 15 "woitn"), so the encoder's first four
outputs are the language, emotion, event and normalization tags; the rest is CTC over the vocabulary
(blank 0). Padding rows of a batch are masked exactly as the reference masks them (FSMN inputs
and outputs zeroed, attention keys excluded), so a clip gives the same outputs in any batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Rows of `SenseVoiceSmall.embed` for the language query (the reference's lid_dict).
LANGUAGE_QUERY = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
#: Rows for the text-normalization query (textnorm_dict).
TEXTNORM_QUERY = {"withitn": 14, "woitn": 15}
#: Rows of the event and emotion queries, always the same (the reference's [[1, 2]]).
EVENT_EMOTION_QUERY = (1, 2)
#: Query frames in front of the features.
QUERY_FRAMES = 4
#: The CTC blank (the reference's blank_id; <unk> of the sentencepiece vocabulary).
BLANK_ID = 0


@dataclass(frozen=True)
class EncoderConfig:
    """`encoder_conf` of config.yaml (SenseVoiceEncoderSmall's arguments that shape weights)."""

    output_size: int = 256
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 6
    tp_blocks: int = 0
    kernel_size: int = 11
    sanm_shfit: int = 0
    normalize_before: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_conf(cls, conf: dict[str, Any] | None) -> EncoderConfig:
        conf = dict(conf or {})
        names = [n for n in cls.__dataclass_fields__ if n != "extra"]
        known = {n: conf.pop(n) for n in names if n in conf}
        if not known.get("normalize_before", True):
            raise ValueError("SenseVoice with normalize_before: false is not supported")
        if conf.get("concat_after"):
            raise ValueError("SenseVoice with concat_after: true is not supported")
        return cls(**known, extra=conf)


class SinusoidalPositionEncoder(nn.Module):
    """Adds sin/cos position codes over the input's own width (positions from 1); no weights.

    The codes are computed in float32 and cast to the input's dtype (the reference computes
    them in the input's dtype, which in float16 rounds the angles of late frames)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _batch, steps, depth = x.shape
        positions = torch.arange(1, steps + 1, device=x.device, dtype=torch.float32)
        increment = math.log(10000.0) / (depth / 2 - 1)
        inv_timescales = torch.exp(
            torch.arange(depth // 2, device=x.device, dtype=torch.float32) * -increment
        )
        scaled = positions[:, None] * inv_timescales[None, :]
        encoding = torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)
        return x + encoding.to(x.dtype)[None]


class PositionwiseFeedForward(nn.Module):
    def __init__(self, idim: int, hidden_units: int):
        super().__init__()
        self.w_1 = nn.Linear(idim, hidden_units)
        self.w_2 = nn.Linear(hidden_units, idim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(torch.relu(self.w_1(x)))


class MultiHeadedAttentionSANM(nn.Module):
    """Self-attention plus an FSMN memory block (a depthwise convolution over time of the
    values), summed. `in_feat` may differ from `n_feat` (the first layer takes the features)."""

    def __init__(self, n_head: int, in_feat: int, n_feat: int, kernel_size: int, sanm_shfit: int):
        super().__init__()
        assert n_feat % n_head == 0
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_q_k_v = nn.Linear(in_feat, n_feat * 3)
        self.fsmn_block = nn.Conv1d(
            n_feat, n_feat, kernel_size, stride=1, padding=0, groups=n_feat, bias=False
        )
        left = (kernel_size - 1) // 2 + max(sanm_shfit, 0)
        self.padding = (left, kernel_size - 1 - left)

    def forward_fsmn(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """inputs (B, T, D); mask (B, T, 1) of 0/1 in the inputs' dtype."""
        inputs = inputs * mask
        x = F.pad(inputs.transpose(1, 2), self.padding)
        x = self.fsmn_block(x).transpose(1, 2)
        return (x + inputs) * mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, T, in_feat); mask (B, T, 1) of 0/1; keep (B, 1, 1, T) bool, True at frames."""
        batch, steps, _ = x.shape
        q, k, v = torch.split(self.linear_q_k_v(x), self.h * self.d_k, dim=-1)
        memory = self.forward_fsmn(v, mask)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, steps, self.h, self.d_k).transpose(1, 2)

        # softmax(q k^T / sqrt(d_k)) v with padded keys excluded, as the reference's masked_fill
        # with -inf (no row is all padding: the four query frames are always there).
        attended = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), attn_mask=keep, scale=self.d_k**-0.5
        )
        attended = attended.transpose(1, 2).reshape(batch, steps, self.h * self.d_k)
        return self.linear_out(attended) + memory


class LayerNorm(nn.LayerNorm):
    """Layer norm computed in float32 whatever the model's dtype (the reference's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        )
        return out.type_as(x)


class EncoderLayerSANM(nn.Module):
    """Pre-norm SAN-M block; without a residual around attention when it changes the width."""

    def __init__(self, in_size: int, size: int, self_attn: nn.Module, feed_forward: nn.Module):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.norm1 = LayerNorm(in_size)
        self.norm2 = LayerNorm(size)
        self.in_size = in_size
        self.size = size

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        attended = self.self_attn(self.norm1(x), mask, keep)
        x = x + attended if self.in_size == self.size else attended
        return x + self.feed_forward(self.norm2(x))


class SenseVoiceEncoderSmall(nn.Module):
    """One SAN-M layer from the features' width, num_blocks - 1 more, a norm, then tp_blocks
    layers and their norm."""

    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self._output_size = size = config.output_size

        def layer(in_size: int) -> EncoderLayerSANM:
            attention = MultiHeadedAttentionSANM(
                config.attention_heads, in_size, size, config.kernel_size, config.sanm_shfit
            )
            return EncoderLayerSANM(
                in_size, size, attention, PositionwiseFeedForward(size, config.linear_units)
            )

        self.embed = SinusoidalPositionEncoder()
        self.encoders0 = nn.ModuleList([layer(input_size)])
        self.encoders = nn.ModuleList([layer(size) for _ in range(config.num_blocks - 1)])
        self.after_norm = LayerNorm(size)
        self.tp_encoders = nn.ModuleList([layer(size) for _ in range(config.tp_blocks)])
        self.tp_norm = LayerNorm(size)

    def output_size(self) -> int:
        return self._output_size

    def forward(self, xs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """xs (B, T, input_size); lengths (B,). Returns (B, T, output_size)."""
        steps = xs.shape[1]
        valid = torch.arange(steps, device=xs.device)[None, :] < lengths[:, None]  # (B, T)
        mask = valid[:, :, None].to(xs.dtype)
        keep = valid[:, None, None, :]
        xs = self.embed(xs * self._output_size**0.5)
        for layer in self.encoders0:
            xs = layer(xs, mask, keep)
        for layer in self.encoders:
            xs = layer(xs, mask, keep)
        xs = self.after_norm(xs)
        for layer in self.tp_encoders:
            xs = layer(xs, mask, keep)
        return self.tp_norm(xs)


class CTC(nn.Module):
    """FunASR's CTC head at inference: one linear layer, then a log-softmax."""

    def __init__(self, odim: int, encoder_output_size: int):
        super().__init__()
        self.ctc_lo = nn.Linear(encoder_output_size, odim)

    def log_softmax(self, hs: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.ctc_lo(hs).float(), dim=-1)


class SenseVoiceSmall(nn.Module):
    """Query embeddings, the SAN-M encoder and the CTC head."""

    def __init__(self, input_size: int, vocab_size: int, encoder: EncoderConfig):
        super().__init__()
        rows = 7 + len(LANGUAGE_QUERY) + len(TEXTNORM_QUERY)  # 16, as in the reference
        self.embed = nn.Embedding(rows, input_size)
        self.encoder = SenseVoiceEncoderSmall(input_size, encoder)
        self.ctc = CTC(vocab_size, self.encoder.output_size())
        self.input_size = input_size
        self.vocab_size = vocab_size

    def encode(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        language: torch.Tensor,
        textnorm: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, input_size) zero-padded; lengths (B,) frames; language and textnorm
        (B,) embedding rows (LANGUAGE_QUERY, TEXTNORM_QUERY). Returns the encoder's output
        (B, 4 + T, output_size) and its lengths (B,)."""
        event, emotion = (torch.full_like(language, row) for row in EVENT_EMOTION_QUERY)
        rows = torch.stack([language, event, emotion, textnorm], dim=1)  # (B, 4)
        queries = self.embed(rows).to(features.dtype)
        xs = torch.cat([queries, features], dim=1)
        lengths = lengths + QUERY_FRAMES
        return self.encoder(xs, lengths), lengths

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        language: torch.Tensor,
        textnorm: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode`, then CTC log-probabilities (B, 4 + T, vocab) in float32 and their lengths."""
        hidden, lengths = self.encode(features, lengths, language, textnorm)
        return self.ctc.log_softmax(hidden), lengths
