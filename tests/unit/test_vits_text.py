"""What VITS voices can say: English numbers and symbols spelled out, what a voice cannot say
refused by name (never dropped), ISO 639-1 codes for ISO 639-3 voices, and voices refused at
load when the romanizer or phonemizer they need is missing. A character-vocabulary tiny voice
as MMS-TTS builds them, and the real phonemizing voice vits-en-joe when ../shared has it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from speechmesh.dsp.numbers import cardinal, ordinal, spell_out_en
from speechmesh.runtime.errors import ApiError
from speechmesh.tiny.tts import MMS_CHARACTERS, build_vits
from speechmesh.tts.engines.base import InvalidOptionError, SynthesisJob
from speechmesh.tts.engines.vits import VitsEngine
from speechmesh.tts.resolver import option_fields
from tests.conftest import SHARED

JOE = SHARED / "models" / "vits-en-joe"
requires_joe = pytest.mark.skipif(not JOE.is_dir(), reason=f"the real voice is not at {JOE}")
CPU, F32 = torch.device("cpu"), torch.float32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def voice(tmp_path_factory, name: str, **options) -> VitsEngine:
    path = tmp_path_factory.mktemp(name)
    build_vits(path, 0, **options)
    return VitsEngine(name, path, CPU, F32)


@pytest.fixture(scope="module")
def mms(tmp_path_factory) -> VitsEngine:
    """English as MMS-TTS spells it: letters, space, apostrophe and hyphen; no digits."""
    return voice(tmp_path_factory, "mms-eng", characters=MMS_CHARACTERS)


@pytest.fixture(scope="module")
def german(tmp_path_factory) -> VitsEngine:
    return voice(tmp_path_factory, "mms-deu", characters=MMS_CHARACTERS + "äöüß", language="deu")


@pytest.fixture(scope="module")
def joe() -> VitsEngine:
    return VitsEngine("vits-en-joe", JOE, CPU, F32)


def speak(engine: VitsEngine, text: str, language: str = "en") -> np.ndarray | BaseException:
    (result,) = engine.run_batch([SynthesisJob(text=text, language=language)])
    return result


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Call 911 at 5pm", "Call nine hundred eleven at five p m"),
        (
            "0 7 13 20 45 100 101 1,000,000",
            "zero seven thirteen twenty forty five one hundred one hundred one one million",
        ),
        ("2024", "two thousand twenty four"),
        ("3.14 and -5 and 007", "three point one four and minus five and zero zero seven"),
        (
            "5th 1st 2nd 3rd 12th 21st 40th 100th",
            "fifth first second third twelfth twenty first fortieth one hundredth",
        ),
        ("5:30 pm, 7:05 and 9:00.", "five thirty p m, seven oh five and nine o'clock."),
        ("50% off", "fifty percent off"),
        (
            "$5, $1, $1.50, €2 and £3",
            "five dollars, one dollar, one dollar and fifty cents, two euros and three pounds",
        ),
        ("$3 million", "three million dollars"),
        ("A & B + C = D", "A and B plus C equals D"),
        ("no numbers here", "no numbers here"),
    ],
)
def test_english_speller(text: str, spoken: str) -> None:
    assert spell_out_en(text) == spoken


def test_speller_words() -> None:
    assert cardinal(999_999) == "nine hundred ninety nine thousand nine hundred ninety nine"
    assert cardinal(1_000_001) == "one million one"
    assert ordinal(1_000_000) == "one millionth" and ordinal(90) == "ninetieth"
    # Only what the voice cannot say is rewritten.
    assert spell_out_en("Call 911 & 5pm", sayable=lambda c: c != "&") == "Call 911 and 5pm"


def test_mms_voice_speaks_numbers_as_words(mms: VitsEngine) -> None:
    assert "9" not in mms.text.vocabulary
    assert mms.text.prepared("Call 911 at 5pm!") == "call nine hundred eleven at five p m"
    assert mms.text.prepared("Café & naïve, 50%") == "cafe and naive fifty percent"
    spelled = speak(mms, "Call 911 at 5pm")
    dropped = speak(mms, "Call at pm")  # what the tokenizer alone made of it
    assert isinstance(spelled, np.ndarray) and isinstance(dropped, np.ndarray)
    assert len(spelled) > 2 * len(dropped)
    # The tokenizer alone drops the digits (the bug this guards against).
    assert mms.tokenizer.decode(mms.tokenizer("Call 911 at 5pm").input_ids) == "call  at pm"


def test_plain_text_gets_the_tokenizers_ids(mms: VitsEngine) -> None:
    text = "Hello there, my friend's dog-house."
    assert mms.text.ids(text) == mms.tokenizer(text).input_ids


def test_what_a_voice_cannot_say_is_named(mms: VitsEngine, german: VitsEngine) -> None:
    result = speak(mms, "Snowman ☃ and 日本")
    assert isinstance(result, InvalidOptionError) and result.option == "text"
    assert "'☃', '日', '本'" in str(result) and "mms-eng" in str(result)
    # No German speller: digits are named, not dropped.
    result = speak(german, "Ruf 911 um 5 an, für 3€", language="de")
    assert isinstance(result, InvalidOptionError) and result.option == "text"
    assert "'9', '1', '5', '3', '€'" in str(result)
    assert isinstance(speak(german, "Grüß Gott!", language="de"), np.ndarray)


def test_the_error_is_invalid_argument_on_text(mms: VitsEngine) -> None:
    result = speak(mms, "☃")
    with pytest.raises(ApiError) as caught, option_fields("config."):
        raise result
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.message.startswith("text: model mms-eng: it cannot say '☃'")


def test_a_voice_with_digits_keeps_them(tmp_path_factory) -> None:
    engine = voice(tmp_path_factory, "digits")  # the default tiny voice has 0-9
    assert engine.text.prepared("Call 911 at 5pm") == "call 911 at 5pm"
    assert engine.text.prepared("Call 911 & 5pm") == "call 911 and 5pm"


@pytest.mark.parametrize("asked", ["ar", "ara", "ar-EG"])
def test_iso_639_1_for_an_iso_639_3_voice(tmp_path_factory, asked: str) -> None:
    engine = voice(tmp_path_factory, "ara", characters=MMS_CHARACTERS, language="ara")
    assert engine.languages == ["ar"]
    assert isinstance(speak(engine, "marhaba", language=asked), np.ndarray)
    wrong = speak(engine, "marhaba", language="fa")
    assert isinstance(wrong, InvalidOptionError) and wrong.option == "language_code"


def test_a_uroman_voice_needs_uroman(tmp_path: Path) -> None:
    build_vits(tmp_path, 0, characters=MMS_CHARACTERS, language="rus", is_uroman=True)
    if importlib.util.find_spec("uroman") is None:
        with pytest.raises(RuntimeError, match=r"pip install uroman"):
            VitsEngine("mms-rus", tmp_path, CPU, F32)
    else:
        engine = VitsEngine("mms-rus", tmp_path, CPU, F32)
        assert engine.text.prepared("Привет, мир") == "privet mir"
        assert isinstance(speak(engine, "Привет, мир", language="ru"), np.ndarray)


def test_a_phonemizing_voice_loads_when_espeak_is_there(tmp_path: Path) -> None:
    from phonemizer.backend import EspeakBackend

    if not EspeakBackend.is_available():
        build_vits(tmp_path, 0, phonemize=True)
        with pytest.raises(RuntimeError, match="espeak-ng"):
            VitsEngine("phonemes", tmp_path, CPU, F32)
        return
    build_vits(tmp_path, 0, characters=MMS_CHARACTERS + "ˈˌːɪəɛæʌɔʊŋθðʃʒɹɾɐɚᵻ.,", phonemize=True)
    engine = VitsEngine("phonemes", tmp_path, CPU, F32)
    assert isinstance(speak(engine, "Call 911 at 5pm."), np.ndarray)


@requires_joe
def test_real_voice_reads_digits_through_espeak(joe: VitsEngine) -> None:
    prepared = joe.text.prepared("Call 911 at 5pm")
    assert "nˈaɪnhˈʌndɹɪd ɪlˈɛvən" in prepared and "fˈaɪv pˌiːˈɛm" in prepared
    assert joe.text.ids("Call 911 at 5pm") == joe.tokenizer("Call 911 at 5pm").input_ids
    # Brackets are outside its phonemes, but silent: dropped, not refused.
    assert "{" not in joe.text.prepared("A {note}")
    audio = speak(joe, "Call 911 at 5pm.")
    short = speak(joe, "Call at pm.")
    assert isinstance(audio, np.ndarray) and len(audio) > 1.5 * len(short)
