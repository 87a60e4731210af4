"""The SenseVoice engine (speechmesh.asr.engines.sensevoice) on a tiny random checkpoint: the
published layout and parameter names (strict loading), batching that changes nothing, the CTC
output read into tags, text and times, option validation, and dispatch by folder layout."""

from __future__ import annotations

import json
import pathlib
import shutil
from fnmatch import fnmatch

import numpy as np
import pytest
import torch

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.engines.base import AUDIO_EVENTS, EMOTIONS, DecodeJob, DecodeOptions
from speechmesh.asr.engines.loader import load_engine
from speechmesh.asr.engines.sensevoice import SenseVoiceEngine, language_code
from speechmesh.asr.engines.sensevoice_checkpoint import SenseVoiceCheckpoint, load_state_dict
from speechmesh.asr.engines.sensevoice_model import EncoderConfig, SenseVoiceSmall
from speechmesh.asr.engines.sensevoice_tokens import (
    EMOTION_TAGS,
    EVENT_TAGS,
    REFERENCE_IDS,
    read_ctc,
)
from speechmesh.dsp.audio import decode_audio
from speechmesh.inference.jobs import InvalidOptionError
from speechmesh.inference.model_source import (
    WEIGHT_PATTERNS,
    ModelNotFoundError,
    is_random_checkpoint,
    resolve_model,
)
from speechmesh.tiny.models import build_tiny
from tests.sounds import voice_like

AUDIO = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "audio"
CLIPS = [
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    "goforward.wav",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
    "sr/chinese.flac",
    "fw/jfk.flac",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build_tiny("sensevoice", tmp_path_factory.mktemp("tiny") / "sensevoice")


@pytest.fixture(scope="module")
def engine(checkpoint: pathlib.Path) -> SenseVoiceEngine:
    return SenseVoiceEngine("tiny-sensevoice", checkpoint, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Real speech from ../shared/audio (16 kHz mono), else voice-like signals."""
    if AUDIO.is_dir():
        return [decode_audio((AUDIO / path).read_bytes()).samples for path in CLIPS]
    return [voice_like(s, seed=i) for i, s in enumerate((3.0, 2.8, 5.3, 1.0, 11.0))]


def reference_keys(num_blocks: int, tp_blocks: int) -> list[str]:
    """The state-dict keys of FunAudioLLM/SenseVoice's model.py (SenseVoiceSmall: embed, encoder,
    ctc; SenseVoiceEncoderSmall: encoders0 (one layer), encoders (num_blocks - 1), after_norm,
    tp_encoders, tp_norm; EncoderLayerSANM: self_attn (MultiHeadedAttentionSANM: linear_out,
    linear_q_k_v, fsmn_block without bias), feed_forward (w_1, w_2), norm1, norm2; CTC: ctc_lo),
    written out from that code."""
    layer = [
        "self_attn.linear_out.weight",
        "self_attn.linear_out.bias",
        "self_attn.linear_q_k_v.weight",
        "self_attn.linear_q_k_v.bias",
        "self_attn.fsmn_block.weight",
        "feed_forward.w_1.weight",
        "feed_forward.w_1.bias",
        "feed_forward.w_2.weight",
        "feed_forward.w_2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    ]
    keys = ["embed.weight"]
    keys += [f"encoder.encoders0.0.{k}" for k in layer]
    keys += [f"encoder.encoders.{i}.{k}" for i in range(num_blocks - 1) for k in layer]
    keys += ["encoder.after_norm.weight", "encoder.after_norm.bias"]
    keys += [f"encoder.tp_encoders.{i}.{k}" for i in range(tp_blocks) for k in layer]
    keys += ["encoder.tp_norm.weight", "encoder.tp_norm.bias", "ctc.ctc_lo.weight"]
    return [*keys, "ctc.ctc_lo.bias"]


def test_real_shape_has_the_reference_names_and_size() -> None:
    """SenseVoiceSmall as config.yaml describes it: 560 inputs (80 x LFR 7), 512 wide, 4 heads,
    2048 units, 50 + 20 blocks, kernel 11, 25,055 tokens: the published 234M parameters."""
    conf = EncoderConfig(
        output_size=512, attention_heads=4, linear_units=2048, num_blocks=50, tp_blocks=20
    )
    with torch.device("meta"):
        model = SenseVoiceSmall(560, 25055, conf)
    state = model.state_dict()
    assert list(state) == reference_keys(50, 20)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["embed.weight"] == (16, 560)
    assert shapes["encoder.encoders0.0.self_attn.linear_q_k_v.weight"] == (1536, 560)
    assert shapes["encoder.encoders0.0.norm1.weight"] == (560,)
    assert shapes["encoder.encoders.0.self_attn.fsmn_block.weight"] == (512, 1, 11)
    assert shapes["encoder.tp_encoders.19.feed_forward.w_1.weight"] == (2048, 512)
    assert shapes["ctc.ctc_lo.weight"] == (25055, 512)
    assert sum(p.numel() for p in model.parameters()) == 233_999_167


def test_tiny_checkpoint_has_the_published_layout(checkpoint: pathlib.Path) -> None:
    names = {p.name for p in checkpoint.iterdir()}
    assert names == {
        "config.yaml",
        "model.pt",
        "am.mvn",
        "chn_jpn_yue_eng_ko_spectok.bpe.model",
        "configuration.json",
    }
    card = json.loads((checkpoint / "configuration.json").read_text())
    assert card["file_path_metas"]["init_param"] == "model.pt"
    assert is_random_checkpoint(checkpoint)
    # A hub download fetches every one of these files.
    assert all(any(fnmatch(name, p) for p in WEIGHT_PATTERNS) for name in names)
    assert resolve_model(str(checkpoint), "SPEECHMESH_ASR_MODEL") == checkpoint.resolve()
    state = load_state_dict(checkpoint / "model.pt")
    assert list(state) == reference_keys(2, 1)


def test_a_folder_needs_config_yaml_beside_model_pt(
    checkpoint: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    shutil.copy(checkpoint / "config.yaml", tmp_path / "config.yaml")
    with pytest.raises(ModelNotFoundError, match=r"config\.yaml and model\.pt"):
        resolve_model(str(tmp_path), "SPEECHMESH_ASR_MODEL")


def test_vocabulary_has_the_reference_ids(engine: SenseVoiceEngine) -> None:
    sp = engine.vocab.sp
    assert sp.get_piece_size() == 25055
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    for piece, index in REFERENCE_IDS.items():
        assert sp.piece_to_id(piece) == index
    assert set(engine.vocab.emotions.values()) == set(EMOTIONS) | {""}
    assert set(engine.vocab.events.values()) == set(AUDIO_EVENTS) | {""}


def test_loading_is_strict(checkpoint: pathlib.Path, tmp_path: pathlib.Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    state = load_state_dict(checkpoint / "model.pt")
    state["encoder.encoders.0.self_attn.linear_qkv.weight"] = state.pop(
        "encoder.encoders.0.self_attn.linear_q_k_v.weight"
    )
    torch.save(state, broken / "model.pt")
    with pytest.raises(ValueError, match="linear_q_k_v"):
        SenseVoiceEngine("broken", broken, torch.device("cpu"), torch.float32)
    # FunASR's wrappers are unwrapped: {"state_dict": ...} and "module." prefixes.
    wrapped = tmp_path / "wrapped"
    shutil.copytree(checkpoint, wrapped)
    state = load_state_dict(checkpoint / "model.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped / "model.pt")
    assert list(load_state_dict(wrapped / "model.pt")) == list(state)


def test_save_and_load_round_trip(
    engine: SenseVoiceEngine, checkpoint: pathlib.Path, tmp_path: pathlib.Path, clips
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    torch.save(engine.model.state_dict(), copy / "model.pt")
    again = SenseVoiceEngine("again", copy, torch.device("cpu"), torch.float32)
    for key, value in engine.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    options = DecodeOptions()
    assert engine.decode_batch([DecodeJob(clips[0], options)]) == again.decode_batch(
        [DecodeJob(clips[0], options)]
    )


def test_engine_describes_itself(engine: SenseVoiceEngine) -> None:
    assert (engine.family, engine.runtime) == ("sensevoice", "torch")
    assert (engine.sample_rate, engine.window_seconds) == (16000, 30.0)
    assert engine.languages == ["zh", "en", "yue", "ja", "ko"]
    assert engine.supports_language_detection and engine.supports_word_timestamps
    assert engine.supports_emotion and engine.supports_audio_events
    assert engine.supports_text_normalization and not engine.supports_translation
    assert (engine.device, engine.dtype) == ("cpu", "float32")
    assert engine.random_weights
    assert engine.memory_bytes == sum(p.numel() * 4 for p in engine.model.parameters())
    engine.warmup()


def test_a_batch_decodes_as_each_clip_alone(engine: SenseVoiceEngine, clips) -> None:
    """Padding is masked as the reference masks it: every row of a batch gives what its clip
    gives alone, to float rounding (the same tokens, times and tags)."""
    options = [
        DecodeOptions(),
        DecodeOptions(language="en", text_normalization=False),
        DecodeOptions(language="zh"),
        DecodeOptions(language="ja", word_timestamps=True),
        DecodeOptions(text_normalization=False),
    ]
    features = [engine.frontend(c) for c in clips]
    hidden, lengths = engine.encode(features, options)
    for row, (f, o) in enumerate(zip(features, options, strict=True)):
        alone, length = engine.encode([f], [o])
        assert int(lengths[row]) == int(length[0]) == len(f) + 4
        n = int(length[0])
        torch.testing.assert_close(hidden[row, :n], alone[0, :n], atol=2e-5, rtol=1e-4)
    jobs = [DecodeJob(c, o) for c, o in zip(clips, options, strict=True)]
    batched = engine.decode_batch(jobs)
    alone = [engine.decode_batch([job])[0] for job in jobs]
    assert all(same(a, b) for a, b in zip(batched, alone, strict=True))
    assert any(r.segments for r in batched)
    for job, result in zip(jobs, batched, strict=True):
        assert result.language == (job.options.language or result.language)
        assert result.language in engine.languages
        assert 0 < result.language_probability <= 1
        for segment in result.segments:
            assert 0 <= segment.start <= segment.end <= len(job.audio) / 16000
            assert segment.text and 0 < segment.probability <= 1
            assert segment.emotion in (*EMOTIONS, "")
            assert set(segment.events) <= set(AUDIO_EVENTS)
            assert bool(segment.words) == job.options.word_timestamps


def test_one_bad_window_fails_alone(engine: SenseVoiceEngine, clips) -> None:
    jobs = [
        DecodeJob(clips[0], DecodeOptions()),
        DecodeJob(np.zeros((2, 800), dtype=np.float32), DecodeOptions()),
        DecodeJob(clips[1], DecodeOptions()),
    ]
    results = engine.decode_batch(jobs)
    assert isinstance(results[1], ValueError)
    assert same(results[0], engine.decode_batch([jobs[0]])[0])
    assert same(results[2], engine.decode_batch([jobs[2]])[0])


def test_queries_carry_language_and_text_normalization(engine: SenseVoiceEngine, clips) -> None:
    """The embedding rows in front of each window: [language, 1, 2, 14 withitn / 15 woitn], as
    the reference's inference() builds them (auto is row 0, en 4, zh 3, yue 7, ja 11, ko 12)."""
    seen: list[torch.Tensor] = []
    hook = engine.model.embed.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    try:
        engine.decode_batch(
            [
                DecodeJob(clips[0], DecodeOptions()),
                DecodeJob(clips[1], DecodeOptions(language="en", text_normalization=False)),
                DecodeJob(clips[1], DecodeOptions(language="yue")),
                DecodeJob(clips[1], DecodeOptions(language="ko", text_normalization=False)),
            ]
        )
    finally:
        hook.remove()
    assert seen[0].tolist() == [[0, 1, 2, 14], [4, 1, 2, 15], [7, 1, 2, 14], [12, 1, 2, 15]]


def ids(engine: SenseVoiceEngine, *pieces: str) -> list[int]:
    found = [engine.vocab.sp.piece_to_id(p) for p in pieces]
    assert 0 not in found, "a piece the tiny vocabulary lacks (it would be <unk>)"
    return found


def same(a, b) -> bool:
    """Two window results alike up to float rounding of their probabilities."""
    if isinstance(a, BaseException) or isinstance(b, BaseException):
        return False
    if (a.language, len(a.segments)) != (b.language, len(b.segments)):
        return False
    if a.language_probability != pytest.approx(b.language_probability, abs=1e-5):
        return False
    for x, y in zip(a.segments, b.segments, strict=True):
        fields = ("text", "start", "end", "emotion", "events")
        if any(getattr(x, f) != getattr(y, f) for f in fields):
            return False
        if x.probability != pytest.approx(y.probability, rel=1e-4):
            return False
        if [(w.text, w.start, w.end) for w in x.words] != [
            (w.text, w.start, w.end) for w in y.words
        ]:
            return False
    return True


def constructed(engine: SenseVoiceEngine, path: list[int], margin: float = 20.0) -> torch.Tensor:
    """Log-probabilities whose argmax at each frame is `path`'s label."""
    logits = torch.zeros(len(path), engine.vocab.size)
    logits[torch.arange(len(path)), torch.tensor(path)] = margin
    return logits.log_softmax(-1)


def test_read_ctc_parses_tags_text_and_times(engine: SenseVoiceEngine) -> None:
    ja, happy, laughter, withitn, applause = ids(
        engine, "<|ja|>", "<|HAPPY|>", "<|Laughter|>", "<|withitn|>", "<|Applause|>"
    )
    hello, world, comma = ids(engine, "\u2581he", "ll", "o")
    path = [ja, happy, laughter, withitn, 0, hello, hello, 0, world, world, world, 0, applause]
    path += [world, comma, 0]
    log_probs = constructed(engine, path)
    # The language frame: ja wins among the five languages, en comes second.
    log_probs[0, ids(engine, "<|en|>")[0]] = log_probs[0, ja] - 1.0
    decoded = read_ctc(log_probs, engine.vocab)
    assert (decoded.language, decoded.best_language) == ("ja", "ja")
    # Among the five languages: ja, en one nat below, the three others twenty below.
    expected = 1 / (1 + np.exp(-1.0) + 3 * np.exp(-20.0))
    assert decoded.language_probability == pytest.approx(expected, rel=1e-4)
    assert decoded.emotion == "happy"
    assert decoded.events == ["laughter", "applause"]
    assert decoded.text_normalization is True
    # blank, he he, blank, ll ll ll, blank, <|Applause|>, ll, o, blank: repeats collapse
    # unless a blank or another label stands between.
    assert decoded.tokens == [hello, world, world, comma]
    assert decoded.first_frames == [1, 4, 9, 10]
    assert decoded.last_frames == [2, 6, 9, 10]
    starts, ends = decoded.token_times(0.06)
    np.testing.assert_allclose(starts, [0.03, 0.21, 0.51, 0.57])
    np.testing.assert_allclose(ends, [0.15, 0.39, 0.57, 0.63])
    assert engine.vocab.text(decoded.tokens) == "hellllo"
    assert all(0.99 < p <= 1 for p in decoded.probabilities)


@pytest.mark.parametrize(
    ("tags", "language", "emotion", "events", "itn"),
    [
        (("<|nospeech|>", "<|EMO_UNKNOWN|>", "<|Speech|>", "<|woitn|>"), None, "", [], False),
        (("<|yue|>", "<|NEUTRAL|>", "<|BGM|>", "<|woitn|>"), "yue", "neutral", ["music"], False),
        (
            ("<|ko|>", "<|SURPRISED|>", "<|Cough|>", "<|withitn|>"),
            "ko",
            "surprised",
            ["coughing"],
            True,
        ),
        (("\u2581he", "ll", "o", "<|zh|>"), None, "", [], None),
    ],
)
def test_read_ctc_maps_every_tag(engine, tags, language, emotion, events, itn) -> None:
    decoded = read_ctc(constructed(engine, [*ids(engine, *tags), 0, 0]), engine.vocab)
    assert decoded.language == language
    assert decoded.best_language in engine.languages
    assert (decoded.emotion, decoded.events, decoded.text_normalization) == (emotion, events, itn)
    assert decoded.tokens == []


def test_every_tag_maps_to_our_names() -> None:
    assert {v for v in EMOTION_TAGS.values() if v} == set(EMOTIONS)
    assert {v for v in EVENT_TAGS.values() if v} == set(AUDIO_EVENTS)


def test_results_from_constructed_output(engine: SenseVoiceEngine) -> None:
    en, sad, speech, woitn = ids(engine, "<|en|>", "<|SAD|>", "<|Speech|>", "<|woitn|>")
    go, forward = ids(engine, "\u2581go", "\u2581for")
    audio = np.zeros(16000, dtype=np.float32)
    tags = [en, sad, speech, woitn]
    # Nothing but blanks: no segment, the language all the same.
    job = DecodeJob(audio, DecodeOptions())
    empty = engine._result(constructed(engine, [*tags, 0, 0, 0]), job)
    assert (empty.segments, empty.language) == ([], "en")
    assert 0.99 < empty.language_probability <= 1
    # A requested language is reported as asked, with certainty.
    asked = engine._result(constructed(engine, [*tags, 0]), DecodeJob(audio, DecodeOptions("zh")))
    assert (asked.language, asked.language_probability) == ("zh", 1.0)
    # Words: one per leading-space piece, times from the frames their tokens hold.
    path = [*tags, 0, go, go, 0, 0, forward, 0, 0]
    job = DecodeJob(audio, DecodeOptions(word_timestamps=True))
    result = engine._result(constructed(engine, path), job)
    (segment,) = result.segments
    assert segment.text == "go for"
    assert (segment.emotion, segment.events) == ("sad", [])
    assert (segment.start, segment.end) == pytest.approx((0.03, 0.33))
    assert [(w.text, w.start, w.end) for w in segment.words] == [
        ("go", pytest.approx(0.03), pytest.approx(0.15)),
        ("for", pytest.approx(0.27), pytest.approx(0.33)),
    ]
    # Times never pass the end of the audio.
    short = DecodeJob(np.zeros(1600, dtype=np.float32), DecodeOptions(word_timestamps=True))
    clipped = engine._result(constructed(engine, [*tags, *[0] * 10, go]), short).segments[0]
    assert clipped.start == clipped.end == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("zh", "zh"),
        ("zh-CN", "zh"),
        ("zh-Hans", "zh"),
        ("zh-Hant-TW", "zh"),
        ("cmn", "zh"),
        ("yue", "yue"),
        ("yue-Hant-HK", "yue"),
        ("zh-HK", "yue"),
        ("zh-Hant-HK", "yue"),
        ("zh-MO", "yue"),
        ("zh-yue", "yue"),
        ("en-US", "en"),
        ("ja-JP", "ja"),
        ("ko_KR", "ko"),
    ],
)
def test_language_tags(engine: SenseVoiceEngine, tag: str, code: str) -> None:
    assert language_code(tag) == code
    assert engine.options(**defaults(language=tag)).language == code


def defaults(**overrides) -> dict:
    options = dict(
        language="",
        task="transcribe",
        word_timestamps=False,
        prompt="",
        beam_size=1,
        temperature=0.0,
    )
    return {**options, **overrides}


def test_options(engine: SenseVoiceEngine) -> None:
    assert engine.options(**defaults()) == DecodeOptions()
    spoken = engine.options(**defaults(word_timestamps=True), text_normalization=False)
    assert spoken == DecodeOptions(word_timestamps=True, text_normalization=False)


@pytest.mark.parametrize(
    ("overrides", "option", "words"),
    [
        ({"language": "fr"}, "language", "SenseVoice knows zh, yue, en, ja, ko; leave it empty"),
        ({"language": "12"}, "language", "BCP-47"),
        ({"task": "translate"}, "task", "cannot translate"),
        ({"prompt": "ComfyUI"}, "prompt", "SenseVoice takes no prompt"),
        ({"beam_size": 4}, "beam_size", "greedily"),
        ({"temperature": 0.2}, "temperature", "greedily"),
    ],
)
def test_invalid_options(engine: SenseVoiceEngine, overrides, option: str, words: str) -> None:
    with pytest.raises(InvalidOptionError, match=words) as error:
        engine.options(**defaults(**overrides))
    assert error.value.option == option


def test_loader_serves_the_layout_whatever_the_runtime_setting(
    checkpoint: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    for runtime in ("auto", "transformers", "ctranslate2"):
        engine = load_engine("tiny", checkpoint, AsrSettings(engine=runtime))
        assert isinstance(engine, SenseVoiceEngine)
    other = tmp_path / "paraformer"
    shutil.copytree(checkpoint, other)
    config = (other / "config.yaml").read_text().replace("SenseVoiceSmall", "Paraformer")
    (other / "config.yaml").write_text(config)
    with pytest.raises(ValueError, match="another model than SenseVoiceSmall"):
        load_engine("other", other, AsrSettings())


def test_cli_builds_it(tmp_path: pathlib.Path, capsys) -> None:
    from speechmesh.cli import main

    assert main(["models", "tiny", "sensevoice", str(tmp_path / "sv")]) == 0
    assert "sensevoice" in capsys.readouterr().out
    assert SenseVoiceCheckpoint.read(tmp_path / "sv").encoder.output_size == 64
