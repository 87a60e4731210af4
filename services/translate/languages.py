"""SeamlessM4T v2's languages: its three-letter codes and their BCP-47 tags.

The wire speaks BCP-47 ("en", "pt-BR", "zh-Hant"); Seamless speaks its own codes ("eng", "por",
"cmn_Hant"). `to_seamless` maps a tag to a code, `to_bcp47` maps back.

The rule for tags: ISO 639-1 where one exists, else the ISO 639-3 code. Where Seamless names one
variety of a macrolanguage (Modern Standard Arabic "arb", Mandarin "cmn", Western Persian "pes",
Swahili "swh", Standard Malay "zsm", ...) its tag is the macrolanguage's two letters ("ar", "zh",
"fa", "sw", "ms"), because that is what clients send; the other varieties keep their three-letter
codes ("ary", "arz", "yue"). So `to_bcp47("cmn") == "zh"`, `to_bcp47("yue") == "yue"` and
`to_bcp47("cmn_Hant") == "zh-Hant"`; `to_seamless` also accepts the codes themselves ("cmn",
"eng", "yue").

Chinese: "zh", "zh-Hans", "zh-CN", "cmn" are Mandarin in simplified script ("cmn"); "zh-Hant"
and "zh-TW", "zh-HK", "zh-MO" without a script are traditional script ("cmn_Hant"); Cantonese
is "yue". Malay: "ms" is Standard Malay ("zsm") for text; the checkpoints name Malay "zlm" in
their tokenizer and speech input, and engines fall back to it through `VARIANTS`.

`LANGUAGES` is the model card's table (speech input 101, text 96 plus the tokenizer's "sat"
and "zlm", speech output 36 plus "cmn_Hant"); what a given checkpoint supports is read from the
checkpoint itself (its tokenizer and generation config) and intersected with this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from speechmesh.inference.languages import primary_subtag


@dataclass(frozen=True)
class SeamlessLanguage:
    #: Seamless's code, as in `__eng__` tokens and `tgt_lang`.
    code: str
    #: BCP-47 tag on the wire.
    tag: str
    name: str
    speech_in: bool
    text: bool  # input and output alike
    speech_out: bool


def _rows(table: str) -> list[SeamlessLanguage]:
    rows = []
    for line in table.strip().splitlines():
        code, tag, name, modalities = (part.strip() for part in line.split("|"))
        flags = modalities.split()
        rows.append(SeamlessLanguage(code, tag, name, "Si" in flags, "T" in flags, "So" in flags))
    return rows


# code | BCP-47 | name | Si: speech input, T: text in and out, So: speech output
LANGUAGES: list[SeamlessLanguage] = _rows(
    """
afr | af | Afrikaans | Si T
amh | am | Amharic | Si T
arb | ar | Modern Standard Arabic | Si T So
ary | ary | Moroccan Arabic | Si T
arz | arz | Egyptian Arabic | Si T
asm | as | Assamese | Si T
ast | ast | Asturian | Si
azj | az | North Azerbaijani | Si T
bel | be | Belarusian | Si T
ben | bn | Bengali | Si T So
bos | bs | Bosnian | Si T
bul | bg | Bulgarian | Si T
cat | ca | Catalan | Si T So
ceb | ceb | Cebuano | Si T
ces | cs | Czech | Si T So
ckb | ckb | Central Kurdish | Si T
cmn | zh | Mandarin Chinese (simplified) | Si T So
cmn_Hant | zh-Hant | Mandarin Chinese (traditional) | Si T So
cym | cy | Welsh | Si T So
dan | da | Danish | Si T So
deu | de | German | Si T So
ell | el | Greek | Si T
eng | en | English | Si T So
est | et | Estonian | Si T So
eus | eu | Basque | Si T
fin | fi | Finnish | Si T So
fra | fr | French | Si T So
fuv | ff | Nigerian Fulfulde | Si T
gaz | om | West Central Oromo | Si T
gle | ga | Irish | Si T
glg | gl | Galician | Si T
guj | gu | Gujarati | Si T
heb | he | Hebrew | Si T
hin | hi | Hindi | Si T So
hrv | hr | Croatian | Si T
hun | hu | Hungarian | Si T
hye | hy | Armenian | Si T
ibo | ig | Igbo | Si T
ind | id | Indonesian | Si T So
isl | is | Icelandic | Si T
ita | it | Italian | Si T So
jav | jv | Javanese | Si T
jpn | ja | Japanese | Si T So
kam | kam | Kamba | Si
kan | kn | Kannada | Si T
kat | ka | Georgian | Si T
kaz | kk | Kazakh | Si T
kea | kea | Kabuverdianu | Si
khk | mn | Halh Mongolian | Si T
khm | km | Khmer | Si T
kir | ky | Kyrgyz | Si T
kor | ko | Korean | Si T So
lao | lo | Lao | Si T
lit | lt | Lithuanian | Si T
ltz | lb | Luxembourgish | Si
lug | lg | Ganda | Si T
luo | luo | Luo | Si T
lvs | lv | Standard Latvian | Si T
mai | mai | Maithili | Si T
mal | ml | Malayalam | Si T
mar | mr | Marathi | Si T
mkd | mk | Macedonian | Si T
mlt | mt | Maltese | Si T So
mni | mni | Meitei | Si T
mya | my | Burmese | Si T
nld | nl | Dutch | Si T So
nno | nn | Norwegian Nynorsk | Si T
nob | nb | Norwegian Bokmål | Si T
npi | ne | Nepali | Si T
nya | ny | Nyanja | Si T
oci | oc | Occitan | Si
ory | or | Odia | Si T
pan | pa | Punjabi | Si T
pbt | ps | Southern Pashto | Si T
pes | fa | Western Persian | Si T So
pol | pl | Polish | Si T So
por | pt | Portuguese | Si T So
ron | ro | Romanian | Si T So
rus | ru | Russian | Si T So
sat | sat | Santali | T
slk | sk | Slovak | Si T So
slv | sl | Slovenian | Si T
sna | sn | Shona | Si T
snd | sd | Sindhi | Si T
som | so | Somali | Si T
spa | es | Spanish | Si T So
srp | sr | Serbian | Si T
swe | sv | Swedish | Si T So
swh | sw | Swahili | Si T So
tam | ta | Tamil | Si T
tel | te | Telugu | Si T So
tgk | tg | Tajik | Si T
tgl | tl | Tagalog | Si T So
tha | th | Thai | Si T So
tur | tr | Turkish | Si T So
ukr | uk | Ukrainian | Si T So
urd | ur | Urdu | Si T So
uzn | uz | Northern Uzbek | Si T So
vie | vi | Vietnamese | Si T So
xho | xh | Xhosa | Si
yor | yo | Yoruba | Si T
yue | yue | Cantonese | Si T
zlm | ms | Colloquial Malay | Si T
zsm | ms | Standard Malay | T
zul | zu | Zulu | Si T
"""
)

BY_CODE: dict[str, SeamlessLanguage] = {lang.code: lang for lang in LANGUAGES}

#: Other Seamless codes for the same tag, tried in order when a checkpoint lacks the first.
VARIANTS: dict[str, tuple[str, ...]] = {"zsm": ("zlm",), "zlm": ("zsm",)}

# Primary subtags (as speechmesh.inference.languages.primary_subtag normalises them) -> code.
_PRIMARY: dict[str, str] = {}
for _lang in LANGUAGES:
    _PRIMARY.setdefault(_lang.code, _lang.code)
    if "-" not in _lang.tag:
        _PRIMARY.setdefault(_lang.tag, _lang.code)
_PRIMARY.update(
    {
        "ms": "zsm",  # not zlm: Standard Malay is what "ms" names in writing
        "no": "nob",  # primary_subtag turns "nb" into "no"
        "jw": "jav",  # primary_subtag turns "jv" into Whisper's "jw"
        "fil": "tgl",  # Filipino, the standard form of Tagalog
        "ekk": "est",  # Standard Estonian
    }
)
_TRADITIONAL_REGIONS = {"TW", "HK", "MO"}
_SUBTAG = re.compile(r"^[A-Za-z]{4}$")


def to_seamless(tag: str) -> str:
    """'en' -> 'eng', 'pt-BR' -> 'por', 'zh-Hant' -> 'cmn_Hant'; ValueError if unknown."""
    primary = primary_subtag(tag)  # ValueError for a malformed tag
    code = _PRIMARY.get(primary)
    if code is None:
        raise ValueError(
            f"{tag!r} is not a language SeamlessM4T v2 knows (BCP-47 tags such as en, fr,"
            " pt-BR, zh, zh-Hant; ListLanguages lists what each model supports)"
        )
    if code == "cmn":
        subtags = tag.strip().replace("_", "-").split("-")[1:]
        scripts = [s.title() for s in subtags if _SUBTAG.match(s)]
        regions = {s.upper() for s in subtags if len(s) == 2}
        if "Hant" in scripts or (not scripts and regions & _TRADITIONAL_REGIONS):
            return "cmn_Hant"
    return code


def to_bcp47(code: str) -> str:
    """'eng' -> 'en', 'cmn' -> 'zh', 'cmn_Hant' -> 'zh-Hant', 'yue' -> 'yue'; ValueError if
    `code` is not a Seamless code (also accepts the `__eng__` token form)."""
    lang = BY_CODE.get(code.strip().strip("_") if code.startswith("__") else code.strip())
    if lang is None:
        raise ValueError(f"{code!r} is not a SeamlessM4T v2 language code (examples: eng, fra)")
    return lang.tag
