"""Long text in model-sized pieces, split at sentence boundaries, and joined back after translation.

`split_text` cuts at sentence ends (". ", "! ", "? ", "。", "！", "？", "؟", "۔", "।", "॥") and at
every line break, and packs consecutive sentences of one paragraph (or line) into pieces of at most
`max_tokens` tokens as `count_tokens` counts them (count a piece with the engine's own
`count_tokens`, which includes its special tokens). A sentence too long on its own is cut at
clause punctuation (",", ";", ":", "、", "，", "；", "：", "،"), then at whitespace, then between
characters (scripts written without spaces). Pieces never span a line break, so translations
keep the text's paragraphs and lines.

Each `Piece` remembers the whitespace that followed it in the original (`separator`);
`join_pieces` puts translations back together with it, so with untranslated pieces it gives the
original text back exactly.

Abbreviations: a "." is not a sentence end before a lowercase letter ("approx. three"), after a
title or reference word ("Dr.", "Prof.", "Fig.", "No."), after a single letter ("J. Smith"),
after a dotted abbreviation ("e.g.", "i.e.", "U.S.", "Ph.D."; "a.m."/"p.m." may end a sentence),
after a list number that opens a line or follows ":" ("1. First", "Steps: 2. Mix"), or inside
a number ("3.14": no space follows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: Terminators that end a sentence only before whitespace (or the end of the text).
_LATIN_END = re.compile(r"(?:[.!?]+|…)[\"'”’»)\]]*(?=\s|$)")
#: Terminators that end a sentence wherever they stand (scripts that put no space after them).
_STRONG_END = re.compile(r"[。！？؟۔।॥]+[\"'”’»)\]」』）〕】]*")
#: Clause punctuation for over-long sentences (Latin ones need whitespace after them).
_CLAUSE = re.compile(r"[,;:](?=\s)|[、，；：،؛]")
_SPACE = re.compile(r"\s*")
_WORD = re.compile(r"\S+\s*")
#: Words after which "." does not end a sentence.
_NO_END_AFTER = frozenset(
    """
    mr mrs ms mx dr prof sr jr st mt ft gen col capt cpt lt sgt maj adm cmdr rev hon sen rep gov
    pres supt insp messrs mmes mme mlle fr br sr sra srta dra herr hr frau
    vs v cf fig figs no nos nr vol vols pp p ch sec art eq eqs ref refs ed eds approx ca est dept
    univ assn bros ave blvd rd hwy ste apt tel ext dist
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun
    bzw usw ca ggf vgl evtl inkl zb dh etw nr
    """.split()  # noqa: SIM905 (a table of words reads best as text)
)
#: What may stand before a list item's number ("Steps: 1. Mix"); not ".", for "No. 10. Next".
_BEFORE_LIST_ITEM = frozenset("\n!?:;。！？")
#: Dotted abbreviations that may still end a sentence.
_MAY_END = frozenset({"a.m", "p.m"})


@dataclass(frozen=True)
class Piece:
    """A stretch of text to translate and what followed it in the original."""

    text: str
    #: The original whitespace after the piece ("" at the end, or between sentences of a script
    #: without spaces): spaces, or line breaks ending a paragraph.
    separator: str
    #: The next piece continues the same word (a cut between characters): joined with nothing.
    glued: bool = False

    @property
    def ends_paragraph(self) -> bool:
        return "\n" in self.separator


def split_text(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> list[Piece]:
    """Pieces of `text`, each at most `max_tokens` by `count_tokens`; [] for blank text.

    ValueError when `max_tokens` cannot hold even one character.
    """
    splitter = _Splitter(max_tokens, count_tokens)
    pieces: list[Piece] = []
    paragraph: list[tuple[str, str]] = []
    for sentence, separator in _sentences(text):
        paragraph.append((sentence, separator))
        if "\n" in separator:
            pieces += splitter.pack(paragraph, _LEVEL_SENTENCE)
            paragraph = []
    pieces += splitter.pack(paragraph, _LEVEL_SENTENCE)
    return pieces


def split_sentences(text: str, max_chars: int) -> list[Piece]:
    """One piece per sentence of `text` (for speech: each sentence is spoken on its own); a
    sentence over `max_chars` code points is cut at clauses, then words, into pieces that fit."""
    splitter = _Splitter(max_chars, len)
    pieces: list[Piece] = []
    for sentence, separator in _sentences(text):
        pieces += splitter.pack([(sentence, separator)], _LEVEL_SENTENCE)
    return pieces


class SentenceBuffer:
    """Text arriving in pieces (from a language model, say), taken out sentence by sentence.

    A sentence is complete once the text after its end has begun (a "." at the very end of the
    buffer may yet be "3.14" or "e.g."), or at a line break. Text that grows past `max_chars`
    without an end is cut at its last clause punctuation or space, so speech never waits on a
    text that will not end. `flush` takes whatever is buffered.
    """

    def __init__(self, max_chars: int = 400):
        self.max_chars = max_chars
        self._text = ""

    @property
    def pending(self) -> str:
        return self._text

    def add(self, piece: str) -> list[str]:
        """Adds a piece (joined exactly as sent); returns the sentences it completed."""
        self._text += piece
        done: list[str] = []
        while True:
            sentences = _sentences(self._text)
            if len(sentences) < 2:
                break
            sentence, separator = sentences[0]
            done.append(sentence)
            self._text = self._text[self._text.index(sentence) + len(sentence) + len(separator) :]
        if len(self._text) > self.max_chars:
            done += self._cut_long()
        return done

    def flush(self) -> list[str]:
        """Every buffered sentence, complete or not."""
        text, self._text = self._text, ""
        return [sentence for sentence, _ in _sentences(text)]

    def _cut_long(self) -> list[str]:
        out: list[str] = []
        while len(self._text) > self.max_chars:
            head = self._text[: self.max_chars]
            cut = max((m.end() for m in _CLAUSE.finditer(head)), default=0)
            if cut == 0:
                cut = head.rfind(" ") + 1 or self.max_chars
            piece, self._text = self._text[:cut].strip(), self._text[cut:].lstrip()
            if piece:
                out.append(piece)
        return out


def join_pieces(pieces: Sequence[Piece], original: str, texts: Sequence[str] | None = None) -> str:
    """The pieces' texts (or `texts`, their translations, in order) with the original spacing.

    Where the original had no space between sentences (after "。") but both translations are in
    a script written with spaces, one space goes between them.
    """
    if texts is None:
        texts = [piece.text for piece in pieces]
    if len(texts) != len(pieces):
        raise ValueError(f"{len(texts)} texts for {len(pieces)} pieces")
    parts = [original[: len(original) - len(original.lstrip())]]
    for i, (piece, text) in enumerate(zip(pieces, texts, strict=True)):
        parts.append(text)
        separator = piece.separator
        if not separator and not piece.glued and i + 1 < len(texts):
            following = texts[i + 1]
            if text and following and _spaced_end(text[-1]) and _spaced_start(following[0]):
                separator = " "
        parts.append(separator)
    return "".join(parts)


# -- sentences -------------------------------------------------------------


def _sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, the whitespace after it), in order; leading whitespace is left out."""
    cuts = {m.end() for m in _STRONG_END.finditer(text)}
    cuts.update(m.end() for m in _LATIN_END.finditer(text) if _ends_sentence(text, m))
    cuts.update(m.start() for m in re.finditer("\n", text))
    cuts.add(len(text))
    out: list[tuple[str, str]] = []
    start = _SPACE.match(text).end()
    for cut in sorted(cuts):
        if cut <= start:
            continue
        stretch = text[start:cut]
        sentence = stretch.rstrip()
        if not sentence:
            continue
        end = _SPACE.match(text, cut).end()
        out.append((sentence, text[start + len(sentence) : end]))
        start = end
    return out


def _ends_sentence(text: str, match: re.Match) -> bool:
    """Whether a "." (or "!", "?", "…") before whitespace ends a sentence."""
    marks = match.group()
    if "!" in marks or "?" in marks:
        return True
    after = _SPACE.match(text, match.end()).end()
    if after < len(text) and text[after].islower():
        return False  # "approx. three", "Wait... what"
    if not marks.startswith(".") or marks.startswith(".."):
        return True
    # The word the "." follows, without opening brackets or quotes.
    begin = match.start()
    while begin > 0 and not text[begin - 1].isspace():
        begin -= 1
    word = text[begin : match.start()].lstrip("\"'“‘«([{")
    if not word:
        return True
    lower = word.lower()
    if "." in word:  # e.g. i.e. U.S. Ph.D.
        return lower in _MAY_END
    if lower in _NO_END_AFTER or (len(word) == 1 and word.isalpha()):
        return False
    if word.isdigit() and len(word) <= 3:  # "1. First" opens a list item
        while begin > 0 and text[begin - 1] in " \t":
            begin -= 1
        return not (begin == 0 or text[begin - 1] in _BEFORE_LIST_ITEM)
    return True


# -- packing ---------------------------------------------------------------

_LEVEL_SENTENCE, _LEVEL_CLAUSE, _LEVEL_WORD, _LEVEL_CHAR = range(4)


class _Splitter:
    def __init__(self, max_tokens: int, count_tokens: Callable[[str], int]):
        self.max_tokens = max_tokens
        self.count = count_tokens
        # Tokens every piece costs whatever its text (a model's special tokens).
        self.framing = count_tokens("")
        if max_tokens <= self.framing:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room for text (an empty piece takes"
                f" {self.framing})"
            )
        self._char_cost: dict[str, int] = {}

    def pack(self, units: list[tuple[str, str]], level: int) -> list[Piece]:
        """Greedy packing of consecutive units (text, separator) into pieces that fit."""
        pieces: list[Piece] = []
        group: list[tuple[str, str]] = []
        total = self.framing
        glue = level == _LEVEL_CHAR
        for text, separator in units:
            cost = self._cost(text, level)
            if group and total + cost - self.framing > self.max_tokens:
                pieces += self._fit(group, level, glue)
                group, total = [], self.framing
            if cost > self.max_tokens and level < _LEVEL_CHAR:
                pieces += self.pack(self._split(text, separator, level + 1), level + 1)
                continue
            group.append((text, separator))
            total += cost - self.framing
        if group:
            pieces += self._fit(group, level, glue)
        if glue and pieces:  # the last cut of a word is followed by its own separator
            pieces[-1] = Piece(pieces[-1].text, pieces[-1].separator)
        return pieces

    def _cost(self, text: str, level: int) -> int:
        if level < _LEVEL_CHAR:
            return self.count(text)
        cost = self._char_cost.get(text)
        if cost is None:
            cost = self._char_cost[text] = self.count(text)
        return cost

    def _fit(self, group: list[tuple[str, str]], level: int, glue: bool) -> list[Piece]:
        """One piece of the group, checked with a real count (estimates add up per unit)."""
        text = "".join(t + s for t, s in group[:-1]) + group[-1][0]
        separator = group[-1][1]
        if len(group) == 1 or self.count(text) <= self.max_tokens:
            if len(group) == 1 and level == _LEVEL_CHAR and self.count(text) > self.max_tokens:
                raise ValueError(f"max_tokens={self.max_tokens} cannot hold the character {text!r}")
            return [Piece(text, separator, glue)]
        half = len(group) // 2  # the estimate was short: halve until each half fits
        return self._fit(group[:half], level, glue) + self._fit(group[half:], level, glue)

    @staticmethod
    def _split(text: str, separator: str, level: int) -> list[tuple[str, str]]:
        """`text` cut at a finer level; the last unit keeps `separator`."""
        if level == _LEVEL_CLAUSE:
            cuts = [m.end() for m in _CLAUSE.finditer(text)]
        elif level == _LEVEL_WORD:
            cuts = [m.end() for m in _WORD.finditer(text)]
        else:
            cuts = list(range(1, len(text) + 1))
        units: list[tuple[str, str]] = []
        start = 0
        for cut in [*cuts, len(text)]:
            if cut <= start:
                continue
            stretch = text[start:cut]
            unit = stretch.rstrip() if level < _LEVEL_CHAR else stretch
            if unit:
                units.append((unit, stretch[len(unit) :]))
            elif units:  # whitespace only: it belongs to the separator before
                units[-1] = (units[-1][0], units[-1][1] + stretch)
            end = _SPACE.match(text, cut).end() if level < _LEVEL_CHAR else cut
            if end > cut and units:
                units[-1] = (units[-1][0], units[-1][1] + text[cut:end])
            start = end
        if units:
            units[-1] = (units[-1][0], units[-1][1] + separator)
        return units


# -- scripts ---------------------------------------------------------------


def _spaceless(char: str) -> bool:
    """Characters of scripts written without spaces between words (and their punctuation)."""
    code = ord(char)
    return (
        0x3000 <= code <= 0x9FFF  # CJK punctuation, kana, ideographs
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF  # full-width forms
        or 0x0E00 <= code <= 0x0EFF  # Thai, Lao
        or 0x1000 <= code <= 0x109F  # Myanmar
        or 0x1780 <= code <= 0x17FF  # Khmer
        or 0x20000 <= code <= 0x3FFFF
    )


def _spaced_end(char: str) -> bool:
    return (char.isalnum() and not _spaceless(char)) or char in ".!?,;:)\"'”’»]"


def _spaced_start(char: str) -> bool:
    return (char.isalnum() and not _spaceless(char)) or char in "(\"'“‘«["
