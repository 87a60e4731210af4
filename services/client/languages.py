"""Language names for BCP-47 codes, and close matches for a code the services do not know."""

from __future__ import annotations

import difflib

# Whisper's languages (ISO 639-1 where one exists), for the names of codes the translation
# table below does not name.
_WHISPER = (
    "en English, zh Chinese, de German, es Spanish, ru Russian, ko Korean, fr French,"
    " ja Japanese, pt Portuguese, tr Turkish, pl Polish, ca Catalan, nl Dutch, ar Arabic,"
    " sv Swedish, it Italian, id Indonesian, hi Hindi, fi Finnish, vi Vietnamese, he Hebrew,"
    " uk Ukrainian, el Greek, ms Malay, cs Czech, ro Romanian, da Danish, hu Hungarian,"
    " ta Tamil, no Norwegian, th Thai, ur Urdu, hr Croatian, bg Bulgarian, lt Lithuanian,"
    " la Latin, mi Maori, ml Malayalam, cy Welsh, sk Slovak, te Telugu, fa Persian, lv Latvian,"
    " bn Bengali, sr Serbian, az Azerbaijani, sl Slovenian, kn Kannada, et Estonian,"
    " mk Macedonian, br Breton, eu Basque, is Icelandic, hy Armenian, ne Nepali, mn Mongolian,"
    " bs Bosnian, kk Kazakh, sq Albanian, sw Swahili, gl Galician, mr Marathi, pa Punjabi,"
    " si Sinhala, km Khmer, sn Shona, yo Yoruba, so Somali, af Afrikaans, oc Occitan,"
    " ka Georgian, be Belarusian, tg Tajik, sd Sindhi, gu Gujarati, am Amharic, yi Yiddish,"
    " lo Lao, uz Uzbek, fo Faroese, ht Haitian Creole, ps Pashto, tk Turkmen, nn Nynorsk,"
    " mt Maltese, sa Sanskrit, lb Luxembourgish, my Myanmar, bo Tibetan, tl Tagalog,"
    " mg Malagasy, as Assamese, tt Tatar, haw Hawaiian, ln Lingala, ha Hausa, ba Bashkir,"
    " jw Javanese, su Sundanese, yue Cantonese, zh-Hant Chinese (traditional)"
)


def _names() -> dict[str, str]:
    names = dict(item.strip().split(" ", 1) for item in _WHISPER.split(","))
    try:
        from speechmesh.translate.languages import LANGUAGES
    except ImportError:  # a client-only install
        return names
    for language in LANGUAGES:
        names.setdefault(language.tag, language.name)
    return names


NAMES = _names()


def name(code: str) -> str:
    """English name of a BCP-47 code ("" when unknown); "pt-BR" is named by "pt"."""
    return NAMES.get(code) or NAMES.get(code.split("-")[0].lower(), "")


def close_matches(given: str, known: list[str], n: int = 5) -> list[str]:
    """Codes among `known` that `given` probably meant: by code ("fra" -> "fr"), by name
    ("french" -> "fr", "germn" -> "de"), or by primary subtag ("en-GB" -> "en")."""
    text = given.strip().lower().replace("_", "-")
    known = list(dict.fromkeys(known))
    lowered = {code.lower(): code for code in known}
    found: list[str] = []
    primary = text.split("-")[0]
    if primary in lowered and primary != text:
        found.append(lowered[primary])
    by_name: dict[str, str] = {}
    for code in known:
        if name(code):
            by_name.setdefault(name(code).lower(), code)
    for candidate, code in by_name.items():
        if text and (candidate == text or candidate.split(" (")[0] == text):
            found.append(code)
    found += [lowered[c] for c in difflib.get_close_matches(text, list(lowered), n, 0.6)]
    found += [by_name[c] for c in difflib.get_close_matches(text, list(by_name), n, 0.7)]
    if len(text) >= 3:
        found += [code for candidate, code in by_name.items() if candidate.startswith(text)]
    return list(dict.fromkeys(found))[:n]


def describe(codes: list[str]) -> str:
    """ "fr (French), fa (Persian)"."""
    return ", ".join(f"{code} ({name(code)})" if name(code) else code for code in codes)
