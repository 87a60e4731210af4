"""A tiny random SenseVoiceSmall checkpoint in the published folder layout, built offline.

The files and formats are the real ones (speechmesh.asr.engines.sensevoice_checkpoint):
config.yaml with `model: SenseVoiceSmall` and the real front end (80 mel bins, LFR 7/6, so 560
features), small `encoder_conf` (64 wide, 4 heads, 2 + 1 blocks); model.pt, a torch.save'd state
dict under the reference's parameter names; am.mvn in Kaldi nnet text; a sentencepiece BPE model
`chn_jpn_yue_eng_ko_spectok.bpe.model` of the real size (25,055 pieces); configuration.json with
ModelScope's `file_path_metas` and the random-weights marker.

The vocabulary: a BPE trained here on a few sentences, then laid out like the real one: <unk>
(the CTC blank), <s>, </s> first; the rich-transcription tags as user-defined pieces, those the
reference code names by number (REFERENCE_IDS: the five languages, <|nospeech|>, four emotions,
<|withitn|>, <|woitn|>) at those very ids, the others in the gaps between them (the engine finds
every tag by its piece); every other slot a CJK or Hangul character, so random outputs read as
text. Outputs are noise.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
import yaml
from sentencepiece import sentencepiece_model_pb2

from speechmesh.asr.engines.sensevoice_checkpoint import BPE_MODEL, CARD, CMVN, CONFIG, WEIGHTS
from speechmesh.asr.engines.sensevoice_frontend import write_cmvn
from speechmesh.asr.engines.sensevoice_model import EncoderConfig, SenseVoiceSmall
from speechmesh.asr.engines.sensevoice_tokens import ALL_TAGS, REFERENCE_IDS

VOCAB_SIZE = 25055
#: Where the tiny vocabulary puts the tags the reference code does not number: in the gaps
#: between those it does, emotions beside emotions. Only the layout is made up; the engine
#: finds every tag by its piece.
PLACED_IDS = {
    "<|Speech|>": 24993,
    "<|BGM|>": 24994,
    "<|Applause|>": 24995,
    "<|Laughter|>": 24996,
    "<|Cry|>": 24997,
    "<|Sneeze|>": 24998,
    "<|Breath|>": 24999,
    "<|Cough|>": 25000,
    "<|FEARFUL|>": 25005,
    "<|DISGUSTED|>": 25006,
    "<|SURPRISED|>": 25007,
    "<|Sing|>": 25010,
    "<|Speech_Noise|>": 25011,
    "<|GBG|>": 25012,
    "<|Event_UNK|>": 25013,
}
TRAINING_TEXT = """\
and so my fellow americans ask not what your country can do for you
he was not an ill disposed young man
go forward ten meters
the quick brown fox jumps over the lazy dog
one two three four five six seven eight nine ten
今天天气很好我们去公园散步吧
我们明天早上八点在学校门口见面
今日はいい天気ですね
안녕하세요 만나서 반갑습니다
"""
ENCODER_CONF = {
    "output_size": 64,
    "attention_heads": 4,
    "linear_units": 128,
    "num_blocks": 2,
    "tp_blocks": 1,
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.1,
    "input_layer": "pe",
    "pos_enc_class": "SinusoidalPositionEncoder",
    "normalize_before": True,
    "kernel_size": 11,
    "sanm_shfit": 0,
    "selfattention_layer_type": "sanm",
}
FRONTEND_CONF = {
    "fs": 16000,
    "window": "hamming",
    "n_mels": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "lfr_m": 7,
    "lfr_n": 6,
    "cmvn_file": None,
}


def build_sensevoice(dest: Path, seed: int) -> None:
    """Writes the tiny checkpoint into `dest` (build_tiny adds the marker to configuration.json)."""
    _write_vocabulary(dest / BPE_MODEL)
    config = {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": ENCODER_CONF,
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": FRONTEND_CONF,
        "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True},
    }
    (dest / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    input_size = FRONTEND_CONF["n_mels"] * FRONTEND_CONF["lfr_m"]
    torch.manual_seed(seed)
    model = SenseVoiceSmall(input_size, VOCAB_SIZE, EncoderConfig.from_conf(ENCODER_CONF))
    torch.save(model.state_dict(), dest / WEIGHTS)
    rng = np.random.default_rng(seed)
    # Kaldi's log-mel energies of speech at 16-bit scale are around 8 to 14 with deviations of
    # 3 to 6; LFR repeats the 80 bins 7 times.
    shift = np.tile(-rng.uniform(8.0, 14.0, FRONTEND_CONF["n_mels"]), FRONTEND_CONF["lfr_m"])
    scale = np.tile(1.0 / rng.uniform(3.0, 6.0, FRONTEND_CONF["n_mels"]), FRONTEND_CONF["lfr_m"])
    write_cmvn(dest / CMVN, shift.astype(np.float32), scale.astype(np.float32))
    card = {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": WEIGHTS,
            "config": CONFIG,
            "tokenizer_conf": {"bpemodel": BPE_MODEL},
            "frontend_conf": {"cmvn_file": CMVN},
        },
    }
    (dest / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def _write_vocabulary(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "text.txt"
        text.write_text(TRAINING_TEXT, encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(text),
            model_prefix=str(Path(tmp) / "bpe"),
            model_type="bpe",
            vocab_size=200,
            hard_vocab_limit=False,
            character_coverage=1.0,
            num_threads=1,
            minloglevel=2,
        )
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((Path(tmp) / "bpe.model").read_bytes())
    piece_type = sentencepiece_model_pb2.ModelProto.SentencePiece
    trained = list(proto.pieces)
    assert [p.piece for p in trained[:3]] == ["<unk>", "<s>", "</s>"], trained[:3]
    slots: dict[int, tuple[str, float, int]] = {}
    for i, p in enumerate(trained):
        slots[i] = (p.piece, p.score, p.type)
    for tag in ALL_TAGS:
        slots[{**REFERENCE_IDS, **PLACED_IDS}[tag]] = (tag, 0.0, piece_type.USER_DEFINED)
    taken = {piece for piece, _score, _type in slots.values()}
    fillers = (
        chr(c) for c in [*range(0x4E00, 0xA000), *range(0xAC00, 0xD7A4)] if chr(c) not in taken
    )
    lowest = min(p.score for p in trained)
    del proto.pieces[:]
    for i in range(VOCAB_SIZE):
        piece, score, kind = slots.get(i) or (next(fillers), lowest - 1.0 - i, piece_type.NORMAL)
        proto.pieces.add(piece=piece, score=score, type=kind)
    proto.trainer_spec.vocab_size = VOCAB_SIZE
    path.write_bytes(proto.SerializeToString())
