"""CSM and VITS synthesis engines on tiny random checkpoints: loading, output, seeds, batching,
voices and errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, CsmForConditionalGeneration, CsmProcessor

from speechmesh.tiny.models import TINY_ARCHS
from speechmesh.tiny.tts import CSM_CODEBOOK_SIZE, CSM_CODEBOOKS, build_vits
from speechmesh.tts.engines.base import InvalidOptionError, SynthesisJob, VoicePrompt
from speechmesh.tts.engines.csm import CsmEngine
from speechmesh.tts.engines.loader import load_engine
from speechmesh.tts.engines.vits import VitsEngine

CSM_FRAME = 1920  # samples per Mimi frame at 24 kHz
VITS_HOP = 256  # samples per VITS frame at 16 kHz


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run faster without intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def csm_path(tiny_csm_checkpoint: Path) -> Path:
    return tiny_csm_checkpoint


@pytest.fixture(scope="session")
def vits_path(tiny_vits_checkpoint: Path) -> Path:
    return tiny_vits_checkpoint


@pytest.fixture(scope="module")
def csm(csm_path: Path) -> CsmEngine:
    engine = load_engine(csm_path, "tiny-csm", "cpu", "auto")
    assert isinstance(engine, CsmEngine)
    return engine


@pytest.fixture(scope="module")
def vits(vits_path: Path) -> VitsEngine:
    engine = load_engine(vits_path, "tiny-vits", "cpu", "auto")
    assert isinstance(engine, VitsEngine)
    return engine


def job(text: str = "Hello there.", **options) -> SynthesisJob:
    return SynthesisJob(text=text, language="en", **options)


def speak(engine, *jobs: SynthesisJob) -> list[np.ndarray]:
    results = engine.run_batch(list(jobs))
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def assert_audio(audio: np.ndarray) -> None:
    assert isinstance(audio, np.ndarray) and audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) > 0
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert np.abs(audio).max() > 0  # not silence


def assert_rows_as_alone(engine, jobs: list[SynthesisJob], atol: float) -> None:
    """Each row of the jobs spoken as one batch is the job spoken alone: same length, and the
    same samples within `atol`."""
    batched = speak(engine, *jobs)
    for one, row in zip(jobs, batched, strict=True):
        (alone,) = speak(engine, one)
        assert alone.shape == row.shape
        np.testing.assert_allclose(row, alone, atol=atol)


def assert_seeds_decide(engine) -> np.ndarray:
    """The same seed speaks the same audio, another seed other audio, and greedy decoding
    (temperature 0) the same whatever the seed; returns the audio of seed 7."""
    a1, a2, b = speak(engine, job(seed=7), job(seed=7), job(seed=8))
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1[: len(b)], b[: len(a1)])
    # Greedy: the seed does not matter.
    g1, g2 = speak(engine, job(seed=1, temperature=0.0), job(seed=2, temperature=0.0))
    assert np.array_equal(g1, g2)
    return a1


def assert_fails(result, option: str) -> None:
    assert isinstance(result, InvalidOptionError), result
    assert result.option == option


# -- checkpoints -----------------------------------------------------------------------------


def cloning_chat(transcript: str, reference, text: str) -> list[dict]:
    """The CSM processor's conversation for speaker 0: the reference audio and its transcript,
    then the text to say."""
    return [
        {
            "role": "0",
            "content": [
                {"type": "text", "text": transcript},
                {"type": "audio", "path": reference},
            ],
        },
        {"role": "0", "content": [{"type": "text", "text": text}]},
    ]


def test_builders_are_registered() -> None:
    assert {"csm", "vits"} <= set(TINY_ARCHS)


@pytest.mark.parametrize("arch", ["csm", "vits"])
def test_checkpoints_are_small_and_marked_random(arch: str, csm_path: Path, vits_path: Path):
    path = {"csm": csm_path, "vits": vits_path}[arch]
    assert sum(f.stat().st_size for f in path.iterdir()) < 5_000_000
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == arch
    assert config["speechmesh_random_weights"] is True


def test_csm_processor_chat_template_with_audio_context(csm_path: Path) -> None:
    """The processor path of transformers' own examples works on the tiny checkpoint."""
    processor = AutoProcessor.from_pretrained(csm_path)
    model = CsmForConditionalGeneration.from_pretrained(csm_path).eval()
    assert isinstance(processor, CsmProcessor)
    assert model.codec_model.config.codebook_size == CSM_CODEBOOK_SIZE >= model.config.vocab_size
    reference = noise(1.5, 24000)
    conversation = cloning_chat("A reference.", reference, "Say this.")
    text = processor.apply_chat_template(conversation, tokenize=False)
    assert text == (
        "<|begin_of_text|>[0]A reference.<|end_of_text|><|AUDIO|><|audio_eos|>"
        "<|begin_of_text|>[0]Say this.<|end_of_text|>"
    )
    inputs = processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
    frames = model.codec_model.encode(torch.from_numpy(reference)[None, None]).audio_codes
    assert frames.shape[1] == CSM_CODEBOOKS
    # The processor's frame count (hard-coded Mimi kernels) matches the tiny codec's.
    assert int((inputs["input_ids"] == model.config.audio_token_id).sum()) == frames.shape[-1]
    with torch.inference_mode():
        audio = model.generate(**inputs, max_new_tokens=3, output_audio=True)
    assert 0 < audio[0].shape[-1] <= 3 * CSM_FRAME
    plain = processor("[0]Plain text.", add_special_tokens=True)
    assert processor.tokenizer.decode(plain["input_ids"][0]) == (
        "<|begin_of_text|>[0]Plain text.<|end_of_text|>"
    )


def test_loader_refuses_other_model_types(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(ValueError, match=r"'whisper' checkpoint.*csm.*vits"):
        load_engine(tmp_path, "whisper-thing", "cpu", "auto")
    with pytest.raises(ValueError, match="cannot be read"):
        load_engine(tmp_path / "missing", "nothing", "cpu", "auto")


# -- CSM -------------------------------------------------------------------------------------


def test_csm_engine_describes_itself(csm: CsmEngine) -> None:
    assert (csm.name, csm.family, csm.supports_cloning) == ("tiny-csm", "csm", True)
    assert csm.languages == ["en"] and csm.preset_voices == []
    assert csm.sample_rate == 24000 and csm.default_temperature == 0.9
    assert csm.random_weights is True
    assert (csm.device, csm.dtype) == ("cpu", "float32")
    assert 0 < csm.memory_bytes < 5_000_000
    assert csm.max_input_characters > 100
    assert csm.batch_key(job()) == csm.batch_key(job("Other.", seed=3, temperature=0.1))
    csm.warmup()


def test_csm_output_is_mono_float_within_the_length_cap(csm: CsmEngine) -> None:
    short, long = "Hi.", "A somewhat longer sentence to speak."
    assert csm.max_frames(short) < csm.max_frames(long)
    for text in (short, long):
        (audio,) = speak(csm, job(text, seed=1))
        assert_audio(audio)
        assert len(audio) % CSM_FRAME == 0
        assert len(audio) <= csm.max_frames(text) * CSM_FRAME


def test_csm_seeds_decide_the_audio(csm: CsmEngine) -> None:
    a1 = assert_seeds_decide(csm)
    # Temperature changes what is sampled with the same seed.
    (hot,) = speak(csm, job(seed=7, temperature=1.5))
    assert not np.array_equal(a1[: len(hot)], hot[: len(a1)])


@pytest.fixture(scope="module")
def csm_voice(csm: CsmEngine) -> VoicePrompt:
    return csm.prepare_voice(noise(2.0, 24000, seed=5), "This is my voice.", "en")


def test_csm_prepare_voice_stores_the_codec_tokens(
    csm: CsmEngine, csm_voice: VoicePrompt, csm_path: Path
) -> None:
    codes, audio = csm_voice.arrays["codes"], csm_voice.arrays["audio"]
    assert (csm_voice.engine, csm_voice.transcript, csm_voice.language) == (
        "csm",
        "This is my voice.",
        "en",
    )
    assert codes.dtype == np.int32 and codes.shape == (math.ceil(2.0 * 12.5), CSM_CODEBOOKS)
    assert codes.min() >= 0 and codes.max() < CSM_CODEBOOK_SIZE
    assert len(np.unique(codes)) > 4  # random centroids: not all code 0 (the end-of-audio code)
    assert np.array_equal(audio, noise(2.0, 24000, seed=5))

    # The prompt built from the stored codes is the one transformers builds from the audio.
    processor = AutoProcessor.from_pretrained(csm_path)
    conversation = cloning_chat("This is my voice.", audio, "Hello there.")
    inputs = processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
    with torch.inference_mode():
        expected = csm.model._merge_input_ids_with_input_values(
            inputs["input_ids"], inputs["input_values"], inputs["input_values_cutoffs"]
        )["inputs_embeds"][0]
        ours = csm._prompt(job(prompt=csm_voice))
    torch.testing.assert_close(ours, expected)


def test_csm_speaks_in_a_prepared_voice(csm: CsmEngine, csm_voice: VoicePrompt) -> None:
    other = csm.prepare_voice(noise(2.0, 24000, seed=6), "This is my voice.", "en")
    plain, cloned, again, other_voice = speak(
        csm,
        job(seed=3),
        job(seed=3, prompt=csm_voice),
        job(seed=3, prompt=csm_voice),
        job(seed=3, prompt=other),
    )
    assert_audio(cloned)
    assert np.array_equal(cloned, again)
    assert not np.array_equal(cloned[: len(plain)], plain[: len(cloned)])
    assert not np.array_equal(cloned[: len(other_voice)], other_voice[: len(cloned)])


def test_csm_batch_rows_equal_the_jobs_run_alone(csm: CsmEngine, csm_voice: VoicePrompt) -> None:
    jobs = [
        job("The first sentence.", seed=1),
        job("Two.", seed=2, prompt=csm_voice),
        job("A third one, greedy.", temperature=0.0),
        job("And a hot fourth.", seed=4, temperature=1.4, prompt=csm_voice),
    ]
    # Identical in practice; allclose leaves room for the rounding of padded attention.
    assert_rows_as_alone(csm, jobs, atol=1e-5)


def test_csm_bad_jobs_fail_alone(csm: CsmEngine, csm_voice: VoicePrompt) -> None:
    vits_voice = VoicePrompt(engine="vits", transcript="x", language="en")
    results = csm.run_batch(
        [
            job(preset="alice"),
            job(seed=1),
            SynthesisJob(text="Bonjour.", language="fr"),
            job("x" * (csm.max_input_characters + 1)),
            job(prompt=vits_voice),
            job("<|AUDIO|>"),
            job(temperature=2.5),
        ]
    )
    assert_fails(results[0], "preset_voice")
    assert_audio(results[1])
    assert_fails(results[2], "language_code")
    assert_fails(results[3], "text")
    assert_fails(results[4], "voice")
    assert_audio(results[5])  # read as text, never as an audio frame (test_csm_text.py)
    assert_fails(results[6], "temperature")
    with pytest.raises(InvalidOptionError) as error:
        csm.prepare_voice(noise(1.0, 24000), "", "en")
    assert error.value.option == "transcript"
    with pytest.raises(InvalidOptionError) as error:
        csm.prepare_voice(np.zeros(0, np.float32), "Words.", "en")
    assert error.value.option == "reference_audio"


# -- VITS ------------------------------------------------------------------------------------


def test_vits_engine_describes_itself(vits: VitsEngine) -> None:
    assert (vits.name, vits.family, vits.supports_cloning) == ("tiny-vits", "vits", False)
    assert vits.languages == ["en"]  # "eng" in the tokenizer, as MMS-TTS
    assert [voice.name for voice in vits.preset_voices] == ["default"]
    assert vits.sample_rate == 16000
    assert vits.default_temperature == pytest.approx(0.667)  # VITS's noise_scale
    assert vits.random_weights is True
    assert (vits.device, vits.dtype) == ("cpu", "float32")
    assert 0 < vits.memory_bytes < 5_000_000
    assert vits.batch_key(job()) == vits.batch_key(job(preset="default", seed=4))
    vits.warmup()


def test_vits_output_is_mono_float_of_plausible_length(vits: VitsEngine) -> None:
    short, long = speak(
        vits, job("Hi.", seed=1), job("A somewhat longer sentence to speak.", seed=1)
    )
    for audio in (short, long):
        assert_audio(audio)
        assert len(audio) % VITS_HOP == 0
    assert len(short) < len(long) < 0.5 * 16000 * len("A somewhat longer sentence to speak.")


def test_vits_seeds_decide_the_audio(vits: VitsEngine) -> None:
    assert_seeds_decide(vits)


def test_vits_batch_rows_match_the_jobs_run_alone(vits: VitsEngine) -> None:
    jobs = [
        job("The first sentence.", seed=1),
        job("Two.", seed=2),
        job("A third one, without noise.", temperature=0.0),
        job("And a noisier fourth.", seed=4, temperature=1.2),
    ]
    # Same noise and length; the batched text encoder and flows round differently.
    assert_rows_as_alone(vits, jobs, atol=1e-4)


def test_vits_cannot_clone(vits: VitsEngine, csm_voice: VoicePrompt) -> None:
    with pytest.raises(InvalidOptionError, match="cannot clone") as error:
        vits.prepare_voice(noise(1.0, 16000), "Words.", "en")
    assert error.value.option == "reference_audio"
    results = vits.run_batch([job(prompt=csm_voice), job(seed=1)])
    assert_fails(results[0], "voice")
    assert_audio(results[1])


def test_vits_bad_jobs_fail_alone(vits: VitsEngine) -> None:
    results = vits.run_batch([job(preset="nobody"), job("!!!"), SynthesisJob("Hallo.", "de")])
    assert_fails(results[0], "preset_voice")
    assert_fails(results[1], "text")
    assert_fails(results[2], "language_code")


def test_vits_multi_speaker_presets(tmp_path: Path) -> None:
    build_vits(tmp_path, 0, num_speakers=3)
    engine = load_engine(tmp_path, "tiny-vits-3", "cpu", "float32")
    names = [voice.name for voice in engine.preset_voices]
    assert names == ["speaker-0", "speaker-1", "speaker-2"]
    assert engine.random_weights is False  # built without build_tiny's marker
    assert engine.batch_key(job(preset="speaker-1")) != engine.batch_key(job(preset="speaker-2"))
    assert engine.batch_key(job()) == engine.batch_key(job(preset="speaker-0"))
    one, two = (
        speak(engine, job(seed=1, preset="speaker-1")),
        speak(engine, job(seed=1, preset="speaker-2")),
    )
    assert not np.array_equal(one[0][: len(two[0])], two[0][: len(one[0])])
    (result,) = engine.run_batch([job(preset="default")])
    assert_fails(result, "preset_voice")
