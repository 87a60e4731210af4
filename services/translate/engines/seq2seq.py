"""Text-only translation through transformers seq2seq models: NLLB-200, M2M100 and Marian.

One engine for the three families, loaded with `AutoModelForSeq2SeqLM` + `AutoTokenizer`; the
family comes from the config and the tokenizer's language tokens:

- "nllb": `m2m_100` (or `nllb-moe`) model type with `eng_Latn`-style tokens. Encoder input
  `src_lang text </s>` (or the legacy `text </s> src_lang` when the tokenizer says
  `legacy_behaviour`); the target language is forced as the first generated token.
- "m2m100": `m2m_100` with `__en__`-style tokens: `__src__ text </s>`, target forced first.
- "marian": a fixed pair (opus-mt-en-de): `text </s>`; multi-target opus-mt models with
  `>>fra<<`-style tokens get that token in front of the text.

The engine frames each job's ids itself (the language token and `</s>` around the tokenizer's
pieces) rather than setting `tokenizer.src_lang` per job: the result is the same ids, with no
shared tokenizer state to race on between `count_tokens` on the event loop and the worker thread,
and it also works for tokenizers that have no `src_lang` (M2M100 and Marian saved as a generic
`tokenizers` model, e.g. the tiny ones of speechmesh.tiny.seq2seq).

Languages on the wire are BCP-47. NLLB's codes become the ISO 639-1 code where one exists for the
variety (eng_Latn -> "en", arb_Arab -> "ar", pes_Arab -> "fa", zsm_Latn -> "ms", nob_Latn -> "nb"),
else the ISO 639-3 code, itself a valid BCP-47 subtag (prs_Arab -> "prs", arz_Arab -> "arz").
A language written in several scripts keeps a bare tag for its usual script and gets
"lang-Script" for the others: zho_Hans -> "zh", zho_Hant -> "zh-Hant", ace_Latn -> "ace",
ace_Arab -> "ace-Arab". Requests may also say "zh-Hans", "zh-TW"/"zh-HK"/"zh-MO" (Traditional),
"fa-AF" (Dari), "en-Latn", "pt-BR" (regions are otherwise ignored); an explicit script the model
lacks is refused ("sr-Latn" for NLLB's Cyrillic Serbian). M2M100's codes are ISO 639-1 already
("ns" is reported as "nso"); scripts and regions are ignored.

These models cannot detect the source language: NLLB and M2M100 need one per job
(`requires_source_language`); a job without it fails with InvalidOptionError("source_language").
Marian's source is fixed, so it needs none. Decoding is greedy by default (`num_beams=1`, the
throughput choice: beams multiply the decoder's work for a small gain on these models); the
checkpoints' own generation configs (beam 4-5) are overridden.
"""

from __future__ import annotations

import pathlib
import re

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from speechmesh.inference.jobs import right_padded
from speechmesh.inference.languages import ALIASES, primary_subtag
from speechmesh.inference.loading import load_pretrained, loaded
from speechmesh.translate.engines.base import (
    InvalidOptionError,
    Languages,
    TranslationJob,
    TranslationOutput,
)

#: ISO 639-3 (and 639-2/T) codes that have an ISO 639-1 code BCP-47 prefers; for macrolanguages,
#: the individual language NLLB uses is the macrolanguage's usual variety (arb -> ar, pes -> fa).
_ISO639_1: dict[str, str] = dict(
    re.findall(
        r"([a-z]{3}):([a-z]{2})",
        """
afr:af aka:ak als:sq amh:am ara:ar arb:ar asm:as aym:ay ayr:ay aze:az azj:az bak:ba bam:bm
bel:be ben:bn bod:bo bos:bs bul:bg cat:ca ces:cs cym:cy dan:da deu:de dzo:dz ell:el eng:en
epo:eo est:et eus:eu ewe:ee fao:fo fas:fa fij:fj fin:fi fra:fr ful:ff fuv:ff gaz:om gla:gd
gle:ga glg:gl grn:gn guj:gu hat:ht hau:ha heb:he hin:hi hrv:hr hun:hu hye:hy ibo:ig ind:id
isl:is ita:it jav:jv jpn:ja kan:kn kas:ks kat:ka kau:kr kaz:kk khk:mn khm:km kik:ki kin:rw
kir:ky kmr:ku knc:kr kon:kg kor:ko kur:ku lao:lo lav:lv lim:li lin:ln lit:lt ltz:lb lug:lg
lvs:lv mal:ml mar:mr mkd:mk mlg:mg mlt:mt mon:mn mri:mi msa:ms mya:my nep:ne nld:nl nno:nn
nob:nb nor:no npi:ne nya:ny oci:oc ori:or orm:om ory:or pan:pa pbt:ps pes:fa plt:mg pol:pl
por:pt pus:ps que:qu quy:qu ron:ro run:rn rus:ru sag:sg san:sa sin:si slk:sk slv:sl smo:sm
sna:sn snd:sd som:so sot:st spa:es sqi:sq srd:sc srp:sr ssw:ss sun:su swa:sw swe:sv swh:sw
tam:ta tat:tt tel:te tgk:tg tgl:tl tha:th tir:ti tsn:tn tso:ts tuk:tk tur:tr twi:tw uig:ug
ukr:uk urd:ur uzb:uz uzn:uz vie:vi wol:wo xho:xh ydd:yi yid:yi yor:yo zho:zh zsm:ms zul:zu
""",
    )
)
#: M2M100 codes that are not BCP-47 as they stand.
_M2M100_TAGS = {"ns": "nso"}
#: The script a bare tag means when the model has a language in several.
_USUAL_SCRIPT = {"zh": "Hans", "ks": "Arab", "sr": "Cyrl", "pa": "Guru", "ms": "Latn"}
#: Region subtags that choose a variety: (language, region) -> the tag to look up instead.
_REGION_TAGS = {
    ("zh", "TW"): "zh-Hant",
    ("zh", "HK"): "zh-Hant",
    ("zh", "MO"): "zh-Hant",
    ("fa", "AF"): "prs",
}
#: Other names of a primary subtag, tried when the tag itself is not known.
_OTHER_NAMES = {**ALIASES, "jw": "jv", "nb": "no", "no": "nb", "fil": "tl", "mo": "ro", "prs": "fa"}

_NLLB_TOKEN = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")
_M2M100_TOKEN = re.compile(r"^__([a-z]{2,3})__$")
_MARIAN_TARGET_TOKEN = re.compile(r"^>>([a-z]{2,3}(?:_[A-Za-z]{2,4})?)<<$")
_OPUS_MT_NAME = re.compile(r"opus-mt-(?:tc-)?(?:big-)?([A-Za-z]+(?:_[A-Za-z]+)?)-([A-Za-z_]+)$")
#: Output room: a translation may take this many times its input's tokens (plus a constant).
OUTPUT_RATIO = 2.0
OUTPUT_EXTRA = 16


class Seq2SeqEngine:
    tasks = frozenset({"t2tt"})
    #: Speech is not this engine's: these only satisfy the TranslationEngine interface.
    input_sample_rate = 16000
    output_sample_rate = 16000
    max_speech_seconds = 0.0

    def __init__(
        self,
        name: str,
        path: pathlib.Path,
        device: torch.device,
        dtype: torch.dtype,
        *,
        num_beams: int = 1,
        max_input_tokens: int | None = None,
    ):
        self.name = name
        self._device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = load_pretrained(AutoModelForSeq2SeqLM, path, device, dtype)
        config = self.model.config
        vocab = dict(self.tokenizer.get_vocab())
        # The slow M2M100Tokenizer (with sentencepiece) keeps its language tokens apart.
        vocab.update(getattr(self.tokenizer, "lang_token_to_id", None) or {})
        self.family = _family(name, config.model_type, vocab)
        self.voices: list[str] = []
        self.num_beams = num_beams
        # The engine sets the output length per batch (max_new_tokens); the checkpoints' own
        # max_length and beam settings would only clash with it.
        generation = self.model.generation_config
        generation.max_length = None
        generation.num_beams = num_beams
        generation.do_sample = False
        if num_beams == 1:
            generation.early_stopping = False
        self._eos = self.tokenizer.eos_token_id
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._legacy = bool(getattr(self.tokenizer, "legacy_behaviour", False))

        codes = self._language_codes(vocab)  # engine code -> (BCP-47 tag, token)
        self._token_ids = {code: vocab[token] for code, (_, token) in codes.items()}
        if self.family == "marian":
            source, target = _marian_pair(name, path, self.tokenizer)
            targets = {code: tag for code, (tag, _) in codes.items()}
            self._targets = _LanguageTable(targets or ({target: target} if target else {}))
            self._sources = _LanguageTable({source: source} if source else {})
            self._any_source = source is None  # a group ("mul", "ROMANCE"): not checked
            self._multi_target = bool(targets)
        else:
            table = _LanguageTable({code: tag for code, (tag, _) in codes.items()})
            self._sources = self._targets = table
            self._any_source = False
            self._multi_target = False
        self.requires_source_language = self.family != "marian"
        self.languages = Languages(text_in=self._sources.tags, text_out=self._targets.tags)

        positions = min(
            getattr(config, "max_position_embeddings", None) or 512,
            getattr(self.tokenizer, "model_max_length", None) or 10**9,
        )
        self._max_positions = positions
        # Half the positions: the translation needs room too, and these models learnt on
        # sentences; the service splits longer text at sentence boundaries.
        self.max_input_tokens = max_input_tokens or positions // 2
        self._framing = 1 if self.family == "marian" else 2
        self._framing += int(self._multi_target)
        self.device, self.dtype, self.memory_bytes, self.random_weights = loaded(
            self.model, path, device, dtype
        )

    # -- languages -------------------------------------------------------

    def _language_codes(self, vocab: dict[str, int]) -> dict[str, tuple[str, str]]:
        """The model's language codes: code -> (BCP-47 tag, vocabulary token)."""
        if self.family == "nllb":
            found = {m.group(0): m for tok in vocab if (m := _NLLB_TOKEN.match(tok))}
            return _tags_by_script({code: (m[1], m[2], code) for code, m in found.items()})
        if self.family == "m2m100":
            return {
                m[1]: (_M2M100_TAGS.get(m[1], m[1]), tok)
                for tok in vocab
                if (m := _M2M100_TOKEN.match(tok))
            }
        parts = {}
        for tok in vocab:
            if m := _MARIAN_TARGET_TOKEN.match(tok):
                lang, _, sub = m[1].partition("_")
                script = sub.title() if len(sub) == 4 else None
                parts[m[1]] = (lang, script, tok, sub.upper() if len(sub) == 2 else None)
        tags = _tags_by_script({code: p[:3] for code, p in parts.items()})
        for code, (_, _, _, region) in parts.items():  # >>pt_br<< -> "pt-BR"
            if region:
                tags[code] = (f"{tags[code][0]}-{region}", tags[code][1])
        return tags

    def language_code(self, tag: str, modality: str, direction: str) -> str:
        if direction not in ("in", "out"):
            raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
        option = "source_language" if direction == "in" else "target_language"
        if modality == "speech":
            raise InvalidOptionError(
                "modality",
                f"model {self.name} translates text only; for speech input or output use a"
                " SeamlessM4T v2 model",
            )
        if modality != "text":
            raise InvalidOptionError("modality", f"{modality!r} is not 'text' or 'speech'")
        table = self._sources if direction == "in" else self._targets
        try:
            code = table.resolve(tag)
        except ValueError as error:
            raise InvalidOptionError(option, str(error)) from None
        if code is None and direction == "in" and self._any_source:
            return primary_subtag(tag)  # Marian from a group of languages: not checked
        if code is None:
            known = table.tags
            listed = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
            raise InvalidOptionError(
                option,
                f"{tag!r} is not a language model {self.name} translates"
                f" {'from' if direction == 'in' else 'into'} ({listed}); ListModels lists them",
            )
        return code

    # -- translation -----------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self._pieces(text)) + self._framing

    def warmup(self) -> None:
        source = self._sources.code_for("en") if self.requires_source_language else None
        target = self._targets.code_for("fr", avoid=source)
        if target is None:
            return
        self.run_batch([TranslationJob("t2tt", target, text="Hello world.", source=source)])

    @torch.inference_mode()
    def run_batch(self, jobs: list[TranslationJob]) -> list[TranslationOutput | BaseException]:
        outputs: list[TranslationOutput | BaseException | None] = [None] * len(jobs)
        target = jobs[0].target
        if target not in self._targets.codes:
            error = InvalidOptionError(
                "target_language", f"{target!r} is not a target code of model {self.name}"
            )
            return [error] * len(jobs)
        rows: list[tuple[int, list[int]]] = []
        for i, job in enumerate(jobs):
            if job.target != target:  # the batch key keeps targets apart: a caller's bug
                outputs[i] = ValueError(f"job for {job.target!r} in a batch for {target!r}")
                continue
            try:
                ids = self._encode(job, target)
            except InvalidOptionError as error:
                outputs[i] = error
                continue
            if ids is None:
                outputs[i] = TranslationOutput("")
            else:
                rows.append((i, ids))
        if rows:
            texts = self._generate([ids for _, ids in rows], target)
            for (i, _), text in zip(rows, texts, strict=True):
                outputs[i] = TranslationOutput(text)
        return outputs  # type: ignore[return-value]

    def _pieces(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _encode(self, job: TranslationJob, target: str) -> list[int] | None:
        """The encoder ids of one job, framed as its family wants; None for empty text."""
        if job.task != "t2tt":
            raise InvalidOptionError(
                "task", f"model {self.name} translates text to text only, not {job.task}"
            )
        if not job.text.strip():
            return None
        pieces = self._pieces(job.text)
        if self.family == "marian":
            prefix = [self._token_ids[target]] if self._multi_target else []
            ids = prefix + pieces + [self._eos]
        else:
            if job.source is None:
                raise InvalidOptionError(
                    "source_language",
                    f"model {self.name} cannot detect the source language; set"
                    " source_language_code",
                )
            if job.source not in self._token_ids:
                raise InvalidOptionError(
                    "source_language",
                    f"{job.source!r} is not a source code of model {self.name}",
                )
            lang = self._token_ids[job.source]
            legacy = self._legacy  # NLLB's old layout puts the language last
            ids = [*pieces, self._eos, lang] if legacy else [lang, *pieces, self._eos]
        if len(ids) > self.max_input_tokens:
            raise InvalidOptionError(
                "text",
                f"is {len(ids)} tokens; model {self.name} takes at most"
                f" {self.max_input_tokens} per piece (split long text first)",
            )
        return ids

    def _generate(self, rows: list[list[int]], target: str) -> list[str]:
        input_ids, attention_mask = right_padded(rows, self._pad)
        longest = input_ids.shape[1]
        kwargs: dict = dict(
            input_ids=input_ids.to(self._device),
            attention_mask=attention_mask.to(self._device),
            max_new_tokens=min(self._max_positions - 2, int(OUTPUT_RATIO * longest) + OUTPUT_EXTRA),
            num_beams=self.num_beams,
            do_sample=False,
        )
        if self.family != "marian":
            kwargs["forced_bos_token_id"] = self._token_ids[target]
        sequences = self.model.generate(**kwargs)
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        return [text.strip() for text in texts]


class _LanguageTable:
    """Engine codes and the BCP-47 tags that name them."""

    def __init__(self, tags: dict[str, str]):  # engine code -> canonical tag
        self.codes = set(tags)
        self.tags = sorted(set(tags.values()))
        self._by_tag: dict[str, str] = {}
        self._scripts: dict[str, set[str]] = {}  # languages whose scripts the model names
        for code, tag in tags.items():
            self._by_tag.setdefault(tag.lower(), code)
        for code, tag in tags.items():
            lang = tag.split("-", 1)[0]
            script = _script_of(code)
            if script:
                self._scripts.setdefault(lang, set()).add(script)
                self._by_tag.setdefault(f"{lang}-{script}".lower(), code)
        for (lang, region), other in _REGION_TAGS.items():
            if other.lower() in self._by_tag:
                self._by_tag.setdefault(f"{lang}-{region}".lower(), self._by_tag[other.lower()])

    def resolve(self, tag: str) -> str | None:
        """The engine code for a BCP-47 tag, None if the model lacks it; ValueError if malformed."""
        lang, script, region = _parse(tag)
        for name in dict.fromkeys([lang, _OTHER_NAMES.get(lang, lang)]):
            keys = [tag.strip().replace("_", "-")]
            if script:
                keys.append(f"{name}-{script}")
            if region:
                keys.append(f"{name}-{region}")
            if script is None or name not in self._scripts:
                keys.append(name)
            for key in keys:
                if (code := self._by_tag.get(key.lower())) is not None:
                    return code
        return None

    def code_for(self, tag: str, avoid: str | None = None) -> str | None:
        """The code for `tag`, else any code but `avoid` (for warm-up)."""
        code = self.resolve(tag)
        if code is not None and code != avoid:
            return code
        return next((c for c in sorted(self.codes) if c != avoid), code)


def _parse(tag: str) -> tuple[str, str | None, str | None]:
    primary_subtag(tag)  # validates
    parts = tag.strip().replace("_", "-").split("-")
    script = region = None
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            script = script or part.title()
        elif (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            region = region or part.upper()
    return parts[0].lower(), script, region


def _script_of(code: str) -> str | None:
    sub = code.partition("_")[2]
    return sub.title() if len(sub) == 4 and sub.isalpha() else None


def _tags_by_script(
    parts: dict[str, tuple[str, str | None, str]],
) -> dict[str, tuple[str, str]]:
    """code -> (tag, token) from code -> (ISO 639 code, script, token).

    A language in one script gets its bare tag; in several, the usual script keeps the bare tag
    and the others get "lang-Script".
    """
    by_lang: dict[str, list[str]] = {}
    for code, (lang, _, _) in parts.items():
        by_lang.setdefault(_ISO639_1.get(lang, lang), []).append(code)
    tags = {}
    for lang, codes in by_lang.items():
        scripts = {code: parts[code][1] for code in codes}
        if len(codes) == 1:
            tags[codes[0]] = (lang, parts[codes[0]][2])
            continue
        usual = _USUAL_SCRIPT.get(lang, "Latn")
        bare = next((c for c in sorted(codes) if scripts[c] == usual), sorted(codes)[0])
        for code in codes:
            tag = lang if code == bare or not scripts[code] else f"{lang}-{scripts[code]}"
            tags[code] = (tag, parts[code][2])
    return tags


def _family(name: str, model_type: str, vocab: dict[str, int]) -> str:
    if model_type == "marian":
        return "marian"
    if model_type in ("m2m_100", "nllb-moe"):
        if "eng_Latn" in vocab:
            return "nllb"
        if "__en__" in vocab:
            return "m2m100"
        raise ValueError(
            f"model {name} is an M2M100 model whose tokenizer has neither NLLB (eng_Latn) nor"
            " M2M100 (__en__) language tokens"
        )
    raise ValueError(
        f"model {name} is a {model_type!r} model; this engine runs NLLB-200, M2M100 and Marian"
        " (opus-mt) checkpoints"
    )


def _marian_pair(name: str, path: pathlib.Path, tokenizer) -> tuple[str | None, str | None]:
    """The BCP-47 source and target of a Marian model: tokenizer config, else its name.

    A group ("mul", "ROMANCE") is None: not a language the engine can check.
    """
    kwargs = getattr(tokenizer, "init_kwargs", {}) or {}
    source = getattr(tokenizer, "source_lang", None) or kwargs.get("source_lang")
    target = getattr(tokenizer, "target_lang", None) or kwargs.get("target_lang")
    if not (source and target):
        for candidate in (name.rstrip("/"), path.name):
            if m := _OPUS_MT_NAME.search(candidate):
                source, target = source or m[1], target or m[2]
                break
    return _marian_tag(source), _marian_tag(target)


def _marian_tag(code: str | None) -> str | None:
    if not code or not re.fullmatch(r"[a-z]{2,3}(_[A-Za-z]{2,4})?", code):
        return None
    if code in ("mul", "roa", "gem", "gmw", "sla", "zle", "zls", "zlw", "itc", "cel", "ine"):
        return None
    lang, _, sub = code.partition("_")
    tag = _ISO639_1.get(lang, lang)
    return f"{tag}-{sub.title() if len(sub) == 4 else sub.upper()}" if sub else tag
