"""Numbers and symbols spelled out as words, for voices that cannot read digits (English).

`spell_out_en(text, sayable)` rewrites what a voice's alphabet cannot say into English words:

- integers: "911" -> "nine hundred eleven", "1,000,000" -> "one million", "-5" -> "minus five";
  a number with a leading zero is read digit by digit ("007" -> "zero zero seven");
- decimals: "3.14" -> "three point one four";
- ordinals: "5th" -> "fifth", "21st" -> "twenty first", "100th" -> "one hundredth";
- times: "5pm" -> "five p m", "5:30 am" -> "five thirty a m", "7:05" -> "seven oh five",
  "9:00" -> "nine o'clock";
- percents: "50%" -> "fifty percent";
- currency: "$5" -> "five dollars", "$1.50" -> "one dollar and fifty cents", "€2" -> "two euros",
  "$3 million" -> "three million dollars";
- symbols: "&" -> "and", "%" -> "percent", "+" -> "plus", "=" -> "equals", "@" -> "at",
  "#" -> "number", "°" -> "degrees", ... (`SYMBOLS`).

Only a match with a character the voice cannot say (`sayable(char)` false) is rewritten; None
rewrites every match. Numbers beyond the quadrillions are read digit by digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = ("", "thousand", "million", "billion", "trillion", "quadrillion")
#: Ordinal forms of the words a cardinal can end with.
ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
#: Currency symbol -> (unit, units, cent, cents).
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
SYMBOLS = {
    "&": "and",
    "%": "percent",
    "+": "plus",
    "=": "equals",
    "@": "at",
    "#": "number",
    "°": "degrees",
    "×": "times",
    "÷": "divided by",
    "<": "less than",
    ">": "greater than",
    "~": "about",
    "§": "section",
    "©": "copyright",
    "®": "registered",
    "™": "trademark",
    "½": "one half",
    "¼": "one quarter",
    "¾": "three quarters",
    **{symbol: names[1] for symbol, names in CURRENCIES.items()},
}

_INTEGER = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+"
_NUMBER = rf"(?:{_INTEGER})(?:\.\d+)?"
_SCALE_WORDS = r"thousand|million|billion|trillion"
_CURRENCY = re.compile(
    rf"(?P<sign>-)?(?P<symbol>[{''.join(CURRENCIES)}])\s?(?P<amount>{_NUMBER})"
    rf"(?:\s(?P<scale>{_SCALE_WORDS})\b)?"
)
_TIME = re.compile(
    r"\b(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s?(?P<half>[ap])\.?\s?m\b\.?", re.IGNORECASE
)
_CLOCK = re.compile(r"\b(?P<hour>\d{1,2}):(?P<minute>[0-5]\d)\b")
_ORDINAL = re.compile(rf"\b(?P<number>{_INTEGER})(?P<suffix>st|nd|rd|th)\b", re.IGNORECASE)
_PERCENT = re.compile(rf"(?P<sign>-)?(?P<number>{_NUMBER})\s?%")
_PLAIN = re.compile(rf"(?<![\w.])(?P<sign>-)?(?P<number>{_NUMBER})|(?P<digits>\d+)")


def cardinal(n: int) -> str:
    """'0' -> 'zero', 911 -> 'nine hundred eleven', 2024 -> 'two thousand twenty four'."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (" " + ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return ONES[hundreds] + " hundred" + (" " + cardinal(rest) if rest else "")
    if n >= 1000 ** len(SCALES):
        return digits(str(n))
    words = []
    for scale in range(len(SCALES) - 1, -1, -1):
        group, n = divmod(n, 1000**scale)
        if group:
            words.append(cardinal(group) + (" " + SCALES[scale] if scale else ""))
    return " ".join(words)


def ordinal(n: int) -> str:
    """1 -> 'first', 21 -> 'twenty first', 100 -> 'one hundredth', 12 -> 'twelfth'."""
    words = cardinal(n).split()
    last = words[-1]
    if last in ORDINAL_WORDS:
        words[-1] = ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def digits(text: str) -> str:
    """'007' -> 'zero zero seven'."""
    return " ".join(ONES[int(d)] for d in text if d.isdigit())


def number(text: str) -> str:
    """A written number ('1,000', '3.14', '007', '.5' not included) in words."""
    whole, _, fraction = text.replace(",", "").partition(".")
    words = digits(whole) if len(whole) > 1 and whole.startswith("0") else cardinal(int(whole))
    if fraction:
        words += " point " + digits(fraction)
    return words


def _money(amount: str, names: tuple[str, str, str, str], scale: str | None) -> str:
    unit, units, cent, cents = names
    if scale:
        return f"{number(amount)} {scale} {units}"
    whole, _, fraction = amount.replace(",", "").partition(".")
    value = int(whole)
    words = f"{cardinal(value)} {unit if value == 1 else units}"
    if fraction and len(fraction) == 2:
        pennies = int(fraction)
        if pennies:
            words += f" and {cardinal(pennies)} {cent if pennies == 1 else cents}"
        return words
    if fraction:
        return f"{number(amount)} {units}"
    return words


def spell_out_en(text: str, sayable: Callable[[str], bool] | None = None) -> str:
    """`text` with numbers and symbols a voice cannot say written as English words (see the
    module's docstring); `sayable(char)` tells which characters the voice can say."""

    def rewrite(pattern: re.Pattern[str], words: Callable[[re.Match[str]], str]):
        def replace(match: re.Match[str]) -> str:
            found = match.group(0)
            if sayable is not None and all(sayable(c) for c in found if not c.isspace()):
                return found
            return f" {words(match)} "

        return lambda value: pattern.sub(replace, value)

    steps = [
        rewrite(
            _CURRENCY,
            lambda m: (
                ("minus " if m["sign"] else "")
                + _money(m["amount"], CURRENCIES[m["symbol"]], m["scale"])
            ),
        ),
        rewrite(
            _TIME,
            lambda m: _clock(int(m["hour"]), m["minute"], on_hour="") + f" {m['half'].lower()} m",
        ),
        rewrite(_CLOCK, lambda m: _clock(int(m["hour"]), m["minute"], on_hour=" o'clock")),
        rewrite(_ORDINAL, lambda m: ordinal(int(m["number"].replace(",", "")))),
        rewrite(
            _PERCENT, lambda m: ("minus " if m["sign"] else "") + number(m["number"]) + " percent"
        ),
        rewrite(
            _PLAIN,
            lambda m: (
                digits(m["digits"])
                if m["digits"]
                else ("minus " if m["sign"] else "") + number(m["number"])
            ),
        ),
    ]
    for step in steps:
        text = step(text)
    out = []
    for char in text:
        if char in SYMBOLS and (sayable is None or not sayable(char)):
            out.append(f" {SYMBOLS[char]} ")
        else:
            out.append(char)
    # Spaces added around the words, never doubled, and none before punctuation.
    text = re.sub(r"[ \t]{2,}", " ", "".join(out))
    return re.sub(r" ([,.;:!?)])", r"\1", text).strip()


def _clock(hour: int, minute: str | None, on_hour: str) -> str:
    if not minute or int(minute) == 0:
        return cardinal(hour) + on_hour
    value = int(minute)
    return f"{cardinal(hour)} {'oh ' + ONES[value] if value < 10 else cardinal(value)}"


#: Number spellers by BCP-47 primary language subtag.
SPELLERS: dict[str, Callable[[str, Callable[[str], bool] | None], str]] = {"en": spell_out_en}
