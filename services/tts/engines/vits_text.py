"""What a VITS voice can say: its tokenizer's normalization, checked, before the token ids.

`VitsTokenizer` quietly drops what a voice cannot say: a character-vocabulary voice (MMS-TTS)
strips every character outside its vocabulary ("Call 911 at 5pm" became "call at pm"), and a
non-Latin-script MMS voice without `uroman` installed strips its whole script. Here:

- At load (`check_dependencies`): a voice whose tokenizer romanizes (`is_uroman`) needs the
  `uroman` package, one that phonemizes needs `phonemizer` and the espeak-ng program; a missing
  one refuses the model with what to install.
- Per job (`VitsText.ids`), by tokenizer kind:
  - Phonemizing voices: espeak-ng reads digits and symbols itself ("5pm" -> "five p m"), so the
    text goes to it as given; what matters is its phonemes: one outside the voice's vocabulary
    (other than punctuation, which is silent) is INVALID_ARGUMENT naming it.
  - Character voices: the text is lower-cased as the tokenizer does, a letter the voice lacks
    is tried without its accents ("é" -> "e"), English numbers and symbols are spelled out
    (speechmesh.dsp.numbers) where the voice cannot say them, and non-Latin text is romanized
    (and lower-cased again, as MMS's reference inference does) for `is_uroman` voices.
    Punctuation the voice lacks is dropped (it is silent); any other character it cannot say
    (a digit in a language without a speller, a symbol, another script) is INVALID_ARGUMENT
    naming the characters.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata

from transformers import VitsTokenizer

from speechmesh.dsp.numbers import SPELLERS
from speechmesh.inference.jobs import InvalidOptionError

#: Characters a job's error names at most.
MAX_NAMED = 12


def check_dependencies(tokenizer: VitsTokenizer, name: str) -> None:
    """Raises RuntimeError, saying what to install, when the voice's tokenizer needs what this
    machine lacks: `uroman` (non-Latin MMS voices), `phonemizer` and espeak-ng."""
    if getattr(tokenizer, "is_uroman", False) and importlib.util.find_spec("uroman") is None:
        raise RuntimeError(
            f"model {name} reads its language in Latin letters (is_uroman): it needs the uroman"
            " romanizer, missing here; install it (pip install uroman) or serve another voice"
        )
    if getattr(tokenizer, "phonemize", False):
        if importlib.util.find_spec("phonemizer") is None:
            raise RuntimeError(
                f"model {name} speaks phonemes (phonemize=true): it needs the phonemizer package"
                " and the espeak-ng program; install them (pip install phonemizer;"
                " apt-get install espeak-ng)"
            )
        from phonemizer.backend import EspeakBackend

        if not EspeakBackend.is_available():
            raise RuntimeError(
                f"model {name} speaks phonemes (phonemize=true): phonemizer needs the espeak-ng"
                " program, missing here; install it (apt-get install espeak-ng, or set"
                " PHONEMIZER_ESPEAK_LIBRARY to its library)"
            )


class VitsText:
    """A voice's text preparation (see the module's docstring). `language` is the voice's
    BCP-47 primary subtag (which number speller applies)."""

    def __init__(self, tokenizer: VitsTokenizer, name: str, language: str):
        self.tokenizer = tokenizer
        self.name = name
        self.vocabulary = set(tokenizer.encoder) | set(tokenizer.added_tokens_encoder)
        self.phonemize = bool(getattr(tokenizer, "phonemize", False))
        self.uroman = bool(getattr(tokenizer, "is_uroman", False))
        self.speller = SPELLERS.get(language)
        self._romanizer = None

    def sayable(self, char: str) -> bool:
        return char in self.vocabulary

    def prepared(self, text: str) -> str:
        """The characters the voice's tokens are made of (phonemes or letters)."""
        tokenizer = self.tokenizer
        if self.phonemize:
            prepared, _ = tokenizer.prepare_for_tokenization(text)
            return self._checked(prepared, "phonemes", text)
        if tokenizer.normalize:
            text = tokenizer.normalize_text(text)
        text = "".join(self._letter(char) for char in text)
        if self.speller is not None:
            text = self.speller(text, self.sayable)
            if tokenizer.normalize:
                text = tokenizer.normalize_text(text)
        text = tokenizer._preprocess_char(text)
        if self.uroman and re.search(r"[^\x00-\x7F]", text):
            text = self._romanize(text)
            if tokenizer.normalize:
                text = text.lower()
            text = "".join(self._letter(char) for char in text)
        return self._checked(text, "characters", text)

    def ids(self, text: str) -> list[int]:
        """Token ids of `text` (the voice's blanks interspersed, as its tokenizer does);
        InvalidOptionError("text") naming what the voice cannot say."""
        prepared = self.prepared(text)
        tokens = self.tokenizer._tokenize(prepared)
        return self.tokenizer.convert_tokens_to_ids(tokens)

    # -- internals -----------------------------------------------------------------------

    def _letter(self, char: str) -> str:
        """A letter the voice lacks, without its accents when that is one it has."""
        if char in self.vocabulary or not char.isalpha():
            return char
        base = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        )
        if base and all(c in self.vocabulary for c in base):
            return base
        lower = base.lower()
        if lower and all(c in self.vocabulary for c in lower):
            return lower
        return char

    def _checked(self, text: str, what: str, original: str) -> str:
        missing: list[str] = []
        kept = []
        for char in text:
            if char in self.vocabulary:
                kept.append(char)
            elif char.isspace():
                kept.append(" ")
            elif unicodedata.category(char).startswith("P"):
                continue  # silent: punctuation the voice does not mark, dropped as MMS does
            elif char not in missing:
                missing.append(char)
        if missing:
            named = ", ".join(repr(c) for c in missing[:MAX_NAMED])
            more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
            if what == "phonemes":
                problem = f"its phonemes of the text include {named}{more}, which it cannot say"
            else:
                problem = f"it cannot say {named}{more} (not in its alphabet)"
            fix = "spell them out in words" if what == "characters" else "reword the text"
            raise InvalidOptionError("text", f"model {self.name}: {problem}; {fix}")
        prepared = re.sub(r"\s+", " ", "".join(kept)).strip()
        return prepared

    def _romanize(self, text: str) -> str:
        if self._romanizer is None:
            import uroman

            self._romanizer = uroman.Uroman()
        return self._romanizer.romanize_string(text)
