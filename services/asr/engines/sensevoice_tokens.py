"""SenseVoice's vocabulary and what its CTC output means: tags, text, token times.

The vocabulary is a sentencepiece model (`chn_jpn_yue_eng_ko_spectok.bpe.model`, 25,055
pieces; id 0, `<unk>`, is the CTC blank) whose rich-transcription tags are pieces of the form
`<|...|>`: languages, emotions, audio events and `<|withitn|>`/`<|woitn|>`. The reference decodes
greedily (argmax per frame, repeats collapsed, blanks dropped) and reads the first four tokens
as `<|lang|><|emotion|><|event|><|itn|>`: the four query frames make the model emit them there.
Here each tag is read at its own query frame, the text from the frames after them, and every
tag is found by its piece, never by a number, so any vocabulary that holds the pieces works.

Token times follow FunASR's SenseVoice timestamps (`output_timestamp`): a token spans the frames
its label holds on the CTC path after the query frames, frame f starting at f * 60 - 30 ms
(floored at 0), ending where its run ends. FunASR finds that path by forcing an alignment of the
decoded text (re-tokenized) onto the log-probabilities with blank raised to 0 where it won; for
the tokens greedy decoding emitted, the best alignment is the greedy path itself (every frame
takes its argmax, and raising the winning blank changes no argmax), so the path is read directly
and the emitted tokens are used, not a re-tokenization. Words are grouped by
`words.group_words` as for Whisper (punctuation joins the word before; CJK characters stand
alone), where FunASR's own grouping keeps punctuation as words of its own.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field

import numpy as np
import sentencepiece as spm
import torch

from speechmesh.asr.engines.sensevoice_model import BLANK_ID, QUERY_FRAMES

#: Engine language code -> tag. Cantonese is "yue" in BCP-47 as in SenseVoice.
LANGUAGE_TAGS = {"zh": "<|zh|>", "en": "<|en|>", "yue": "<|yue|>", "ja": "<|ja|>", "ko": "<|ko|>"}
NOSPEECH_TAG = "<|nospeech|>"
#: Emotion tags -> base.EMOTIONS ("" for unknown).
EMOTION_TAGS = {
    "<|HAPPY|>": "happy",
    "<|SAD|>": "sad",
    "<|ANGRY|>": "angry",
    "<|NEUTRAL|>": "neutral",
    "<|FEARFUL|>": "fearful",
    "<|DISGUSTED|>": "disgusted",
    "<|SURPRISED|>": "surprised",
    "<|EMO_UNKNOWN|>": "",
}
#: Event tags -> base.AUDIO_EVENTS ("" for speech and the events we have no name for).
EVENT_TAGS = {
    "<|BGM|>": "music",
    "<|Applause|>": "applause",
    "<|Laughter|>": "laughter",
    "<|Cry|>": "crying",
    "<|Cough|>": "coughing",
    "<|Sneeze|>": "sneezing",
    "<|Breath|>": "breathing",
    "<|Speech|>": "",
    "<|Sing|>": "",
    "<|Speech_Noise|>": "",
    "<|GBG|>": "",
    "<|Event_UNK|>": "",
}
TEXTNORM_TAGS = {"<|withitn|>": True, "<|woitn|>": False}
#: The vocabulary ids that the reference code itself names (model.py's lid_int_dict,
#: textnorm_int_dict and emo_dict); the tiny checkpoint puts these pieces there too.
REFERENCE_IDS = {
    "<|zh|>": 24884,
    "<|en|>": 24885,
    "<|yue|>": 24888,
    "<|ja|>": 24892,
    "<|ko|>": 24896,
    "<|nospeech|>": 24992,
    "<|HAPPY|>": 25001,
    "<|SAD|>": 25002,
    "<|ANGRY|>": 25003,
    "<|NEUTRAL|>": 25004,
    "<|EMO_UNKNOWN|>": 25009,
    "<|withitn|>": 25016,
    "<|woitn|>": 25017,
}
#: Every tag the reference's rich_transcription_postprocess knows.
ALL_TAGS = (
    *LANGUAGE_TAGS.values(),
    NOSPEECH_TAG,
    *EMOTION_TAGS,
    *EVENT_TAGS,
    *TEXTNORM_TAGS,
)
#: FunASR's token times: frame f starts at f * FRAME_MS - OFFSET_MS.
FRAME_OFFSET_SECONDS = 0.03

_TAG = re.compile(r"^<\|[^|]+\|>$")


class Vocabulary:
    """The sentencepiece model and the ids of its tags."""

    def __init__(self, path: pathlib.Path):
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.size = self.sp.get_piece_size()
        self.tags = {
            i: piece for i in range(self.size) if _TAG.match(piece := self.sp.id_to_piece(i))
        }
        ids = {piece: i for i, piece in self.tags.items()}
        missing = [tag for tag in LANGUAGE_TAGS.values() if tag not in ids]
        if missing:
            raise ValueError(f"{path.name} lacks SenseVoice's language tags {missing}")
        self.language_ids = {code: ids[tag] for code, tag in LANGUAGE_TAGS.items()}
        self.emotions = {ids[tag]: name for tag, name in EMOTION_TAGS.items() if tag in ids}
        self.events = {ids[tag]: name for tag, name in EVENT_TAGS.items() if tag in ids}
        self.textnorm = {ids[tag]: value for tag, value in TEXTNORM_TAGS.items() if tag in ids}

    def text(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i not in self.tags]).strip()

    def decode(self, ids: list[int]) -> str:
        """Text of `ids` with the leading space its first piece stands for (the form
        `words.group_words` expects of a tokenizer)."""
        text = self.sp.decode(ids)
        if ids and self.sp.id_to_piece(ids[0]).startswith("\u2581"):
            return " " + text
        return text


@dataclass
class Decoded:
    """One window's CTC output, read."""

    #: The language tag at the language frame, as an engine code; None for <|nospeech|> or
    #: anything else.
    language: str | None
    #: The most probable of the engine's languages at the language frame and its
    #: probability among them.
    best_language: str
    language_probability: float
    emotion: str
    events: list[str]
    #: <|withitn|> (True), <|woitn|> (False), or None when the frame gave neither.
    text_normalization: bool | None
    #: Text tokens (tags removed), each with its first and last frame after the queries and
    #: its probability (the highest of its label on its frames).
    tokens: list[int] = field(default_factory=list)
    first_frames: list[int] = field(default_factory=list)
    last_frames: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)

    def token_times(self, frame_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of each token in seconds, FunASR's way: the frames its label holds,
        frame f starting at f * frame_seconds - 30 ms, floored at 0."""
        first = np.asarray(self.first_frames, dtype=np.float64)
        last = np.asarray(self.last_frames, dtype=np.float64)
        starts = np.maximum(first * frame_seconds - FRAME_OFFSET_SECONDS, 0.0)
        ends = np.maximum((last + 1) * frame_seconds - FRAME_OFFSET_SECONDS, starts)
        return starts, ends


def read_ctc(log_probs: torch.Tensor, vocab: Vocabulary) -> Decoded:
    """Reads one window's CTC log-probabilities (frames, vocab), cut to its length and with
    the four query frames first: the tags at the query frames, greedy CTC after them."""
    if log_probs.shape[0] < QUERY_FRAMES:
        raise ValueError(f"{log_probs.shape[0]} frames; SenseVoice output has at least 4")
    log_probs = log_probs.float()
    best_log_probs, best_ids = log_probs.max(dim=-1)
    best = best_ids.tolist()
    # A token on the greedy path is its frame's argmax: its probability there is the max.
    best_probs = best_log_probs.exp().tolist()
    language_ids = torch.tensor(list(vocab.language_ids.values()))
    language_probs = log_probs[0, language_ids].softmax(-1)
    top = int(language_probs.argmax())
    codes = list(vocab.language_ids)
    tag_language = {i: code for code, i in vocab.language_ids.items()}
    emotion = vocab.emotions.get(best[1], "")
    events = [vocab.events[best[2]]] if vocab.events.get(best[2]) else []
    decoded = Decoded(
        language=tag_language.get(best[0]),
        best_language=codes[top],
        language_probability=float(language_probs[top]),
        emotion=emotion,
        events=events,
        text_normalization=vocab.textnorm.get(best[3]),
    )
    frame_probs = best_probs[QUERY_FRAMES:]
    previous = BLANK_ID
    for frame, token in enumerate(best[QUERY_FRAMES:]):
        if token == previous and token != BLANK_ID:  # the run of the token before goes on
            if decoded.last_frames and decoded.last_frames[-1] == frame - 1:
                decoded.last_frames[-1] = frame
                decoded.probabilities[-1] = max(decoded.probabilities[-1], frame_probs[frame])
            previous = token
            continue
        previous = token
        if token == BLANK_ID:
            continue
        if token in vocab.tags:  # a tag inside the text: an event is kept, others dropped
            name = vocab.events.get(token)
            if name and name not in decoded.events:
                decoded.events.append(name)
            continue
        decoded.tokens.append(token)
        decoded.first_frames.append(frame)
        decoded.last_frames.append(frame)
        decoded.probabilities.append(frame_probs[frame])
    return decoded
