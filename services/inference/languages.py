"""BCP-47 language tags on the wire; engines map them to their own codes."""

from __future__ import annotations

import re

_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")

#: Macrolanguage and legacy codes that engines know under another name.
ALIASES = {"cmn": "zh", "iw": "he", "in": "id", "ji": "yi", "jv": "jw", "nb": "no"}


def primary_subtag(tag: str) -> str:
    """'pt-BR' -> 'pt', 'zh-Hans-CN' -> 'zh', 'cmn' -> 'zh'; ValueError if malformed."""
    tag = tag.strip().replace("_", "-")
    if not _TAG.match(tag):
        raise ValueError(f"{tag!r} is not a BCP-47 language tag (examples: en, fr, pt-BR)")
    primary = tag.split("-", 1)[0].lower()
    return ALIASES.get(primary, primary)
