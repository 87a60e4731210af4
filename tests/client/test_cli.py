"""Every client command of `speechmesh` end to end through the real gateway, run in-process
with `speechmesh.cli.main` (and once as a real process): output on a terminal and piped,
subtitle formats, and the messages of the common failures."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
import soundfile as sf

from speechmesh.client.cli import output, recognition
from speechmesh.dsp.audio import decode_audio
from tests.client.conftest import GOFORWARD, JFK, LIBRIVOX, REAL, real_only
from tests.servers import free_port

SRT_TIME = r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d"
VTT_TIME = r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d"


def words_of(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


@pytest.fixture
def terminal(monkeypatch):
    """Standard output and error are terminals."""
    monkeypatch.setattr(output, "isatty", lambda stream: True)


def stdin_bytes(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# -- transcribe ----------------------------------------------------------------------------------


@real_only
def test_transcribe_piped_prints_plain_text(cli):
    ran = cli("transcribe", str(GOFORWARD))
    assert ran.code == 0, ran.err
    assert ran.out == "Go forward 10 meters.\n"
    assert "\r" not in ran.out + ran.err


def test_transcribe_json_with_words(cli):
    ran = cli("transcribe", str(GOFORWARD), "--format", "json", "--words", "--language", "en")
    assert ran.code == 0, ran.err
    found = json.loads(ran.out)
    assert found["language"] == "en" and found["duration"] == pytest.approx(2.786, abs=0.01)
    assert found["segments"] and "words" in found["segments"][0]
    if REAL:
        assert [w["word"] for w in found["segments"][0]["words"]] == [
            "Go",
            "forward",
            "10",
            "meters.",
        ]


@real_only
def _vtt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def test_transcribe_srt_and_vtt(cli):
    srt = cli("transcribe", str(JFK), "--format", "srt")
    assert srt.code == 0, srt.err
    cues = srt.out.strip().split("\n\n")
    assert len(cues) >= 1
    for number, cue in enumerate(cues, 1):
        lines = cue.split("\n")
        assert lines[0] == str(number) and re.fullmatch(SRT_TIME, lines[1]) and lines[2]
    assert "country" in words_of(srt.out)
    vtt = cli("transcribe", str(GOFORWARD), "--format", "vtt", "--words")
    assert vtt.code == 0, vtt.err
    assert vtt.out.startswith("WEBVTT\n\n")
    cues = vtt.out.strip().split("\n\n")[1:]
    assert [cue.split("\n")[1] for cue in cues] == ["Go", "forward", "10", "meters."]
    assert all(re.fullmatch(VTT_TIME, cue.split("\n")[0]) for cue in cues)
    # Speech starts at 0.51 s: the first word's cue begins near it and lasts a moment.
    start, end = (_vtt_seconds(t) for t in cues[0].split("\n")[0].split(" --> "))
    assert 0.3 < start < 1.0 and start < end < start + 0.8


@real_only
def test_transcribe_a_long_file_shows_progress_on_a_terminal(
    cli, terminal, monkeypatch, long_recording
):
    monkeypatch.setattr(recognition, "PIECE_SECONDS", 6.0)
    monkeypatch.setattr(recognition, "PROGRESS_MIN_SECONDS", 5.0)
    ran = cli("transcribe", str(long_recording))
    assert ran.code == 0, ran.err
    bars = [part for part in ran.err.split("\r") if part.startswith("transcribing [")]
    assert len(bars) >= 3 and "0.0/" in bars[0] and "100%" in bars[-1]
    assert ran.err.endswith("\r\033[K")  # the bar is cleared at the end
    assert "\r" not in ran.out and "selfish" in words_of(ran.out)


def test_transcribe_in_pieces_piped_has_no_progress_bar(cli, monkeypatch):
    monkeypatch.setattr(recognition, "PIECE_SECONDS", 1.0)
    monkeypatch.setattr(recognition, "PROGRESS_MIN_SECONDS", 1.0)
    ran = cli("transcribe", str(GOFORWARD))
    assert ran.code == 0 and ran.err == ""
    assert "\r" not in ran.out and ran.out.endswith("\n")


def test_transcribe_stream_on_a_terminal_prints_interim_results_in_place(cli, terminal):
    clip = LIBRIVOX[0] if LIBRIVOX else GOFORWARD  # 7 s of one sentence: time for interims
    ran = cli("transcribe", str(clip), "--stream")  # in real time
    assert ran.code == 0, ran.err
    assert ran.out.endswith("\n")
    parts = ran.out.split("\r\033[K")
    if REAL:
        interims = [p for p in parts if p and not p.endswith("\n")]
        assert interims  # hypotheses came, in place, before the final line
        assert "prudently" in words_of(parts[-1]) and "\r" not in parts[-1]


def test_transcribe_stream_piped_prints_final_lines_only(cli):
    ran = cli("transcribe", str(JFK), "--stream", "--fast")
    assert ran.code == 0, ran.err
    assert "\r" not in ran.out
    lines = ran.out.splitlines()
    assert lines and all(line.strip() for line in lines)
    if REAL:
        # The speaker pauses mid-sentence: the sentence comes as one final, whole.
        assert {"americans", "country"} <= set(words_of(ran.out))


def test_transcribe_stream_srt_and_json_lines(cli):
    srt = cli("transcribe", str(JFK), "--stream", "--fast", "--format", "srt")
    assert srt.code == 0, srt.err
    cues = srt.out.strip().split("\n\n")
    assert [cue.split("\n")[0] for cue in cues] == [str(i) for i in range(1, len(cues) + 1)]
    assert all(re.fullmatch(SRT_TIME, cue.split("\n")[1]) for cue in cues)
    lines = cli("transcribe", str(GOFORWARD), "--stream", "--fast", "--format", "json")
    found = [json.loads(line) for line in lines.out.splitlines()]
    assert found and found[0]["utterance"] == 0 and found[0]["end"] > found[0]["start"]


def test_transcribe_standard_input(cli, monkeypatch):
    stdin_bytes(monkeypatch, GOFORWARD.read_bytes())
    ran = cli("transcribe", "-")
    assert ran.code == 0, ran.err
    if REAL:
        assert words_of(ran.out) == ["go", "forward", "10", "meters"]
    stdin_bytes(monkeypatch, GOFORWARD.read_bytes())  # a live WAV stream
    ran = cli("transcribe", "-", "--stream")
    assert ran.code == 0, ran.err
    if REAL:
        assert "forward" in words_of(ran.out)
    stdin_bytes(monkeypatch, b"this is not audio at all")
    ran = cli("transcribe", "-")
    assert ran.code == 2 and "standard input: not an audio file" in ran.err


def test_transcribe_missing_file_and_not_audio(cli, tmp_path):
    ran = cli("transcribe", str(tmp_path / "nope.wav"))
    assert ran.code == 2 and "nope.wav: no such file" in ran.err and ran.out == ""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    ran = cli("transcribe", str(notes), "--stream")
    assert ran.code == 2 and "notes.txt: not an audio file" in ran.err


@real_only
def test_transcribe_translate_with_an_english_only_model(cli):
    ran = cli("transcribe", str(GOFORWARD), "--translate")
    assert ran.code == 2
    assert ran.err.startswith("speechmesh: --translate") or "--model" in ran.err


@real_only
def test_transcribe_unknown_language_lists_the_model_s(cli):
    ran = cli("transcribe", str(GOFORWARD), "--language", "english")
    assert ran.code == 2
    assert "--language english" in ran.err and "en (English)" in ran.err


def test_nothing_listening_says_how_to_start_the_gateway(cli):
    ran = cli("transcribe", str(GOFORWARD), target=f"127.0.0.1:{free_port()}")
    assert ran.code == 1
    assert "cannot reach the speechmesh gateway" in ran.err
    assert "make run" in ran.err and "speechmesh up" in ran.err
    assert cli("health", target=f"127.0.0.1:{free_port()}").code == 1


def test_usage_errors_exit_2(cli):
    assert cli("transcribe").code == 2
    assert cli("translate", "hello").code == 2  # --to is required


# -- translate -----------------------------------------------------------------------------------


def test_translate_text(cli):
    ran = cli("translate", "Hello there.", "--to", "fr", "--from", "en")
    assert ran.code == 0, ran.err
    assert len(ran.out.splitlines()) == 1 and ran.out.strip()


def test_translate_standard_input_line_by_line(cli, monkeypatch):
    stdin_bytes(monkeypatch, b"Hello.\n\nGood night.\n")
    ran = cli("translate", "-", "--to", "de", "--from", "en")
    assert ran.code == 0, ran.err
    lines = ran.out.split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[0] and lines[2]
    stdin_bytes(monkeypatch, b"Hello.\nBye.\n")
    found = json.loads(cli("translate", "-", "--to", "de", "--from", "en", "--json").out)
    assert [f["text"] for f in found] == ["Hello.", "Bye."]
    assert all(f["source_language"] == "en" for f in found)


def test_translate_unknown_language_suggests_close_matches(cli):
    ran = cli("translate", "Hello", "--to", "french", "--from", "en")
    assert ran.code == 2
    assert "--to french" in ran.err and "Did you mean fr (French)?" in ran.err
    ran = cli("translate", "Hello", "--to", "fr", "--from", "englsh")
    assert ran.code == 2 and "Did you mean en (English)?" in ran.err
    ran = cli("translate", "Hello", "--to", "fr")  # the model cannot detect the language
    assert ran.code == 2 and ran.err.startswith("speechmesh: --from")


def test_translate_speech_text_and_audio(cli, tmp_path):
    out = tmp_path / "fr.wav"
    ran = cli("translate-speech", str(GOFORWARD), "--to", "fr", "--text", "--out", str(out))
    assert ran.code == 0, ran.err
    assert ran.out.strip() and "wrote" in ran.err
    info = sf.info(out)
    assert info.samplerate == 16000 and info.duration > 0
    text_only = cli(
        "translate-speech", str(GOFORWARD), "--to", "de", "--transcript", "--from", "en"
    )
    assert text_only.code == 0, text_only.err
    assert [line[:5] for line in text_only.out.splitlines()] == ["[en] ", "[de] "]
    flac = tmp_path / "fr.flac"
    assert cli("translate-speech", str(GOFORWARD), "--to", "fr", "--out", str(flac)).code == 0
    assert sf.info(flac).format == "FLAC"


def test_translate_speech_unknown_speech_language(cli, tmp_path):
    ran = cli("translate-speech", str(GOFORWARD), "--to", "xx", "--out", str(tmp_path / "o.wav"))
    assert ran.code == 2 and "--to xx" in ran.err and "Languages here:" in ran.err


# -- speak and voices ----------------------------------------------------------------------------


def test_speak_to_a_file_in_any_format(cli, tmp_path):
    out = tmp_path / "hello.wav"
    ran = cli("speak", "Hello there. How are you?", "--out", str(out), "--seed", "4")
    assert ran.code == 0, ran.err
    assert f"wrote {out}" in ran.err and "2 sentence(s)" in ran.err and "seed 4" in ran.err
    assert sf.info(out).samplerate == 24000
    mp3 = tmp_path / "hello.mp3"
    assert cli("speak", "Hello.", "--out", str(mp3)).code == 0
    assert sf.info(mp3).format == "MP3"
    ogg = tmp_path / "preset"  # no extension: --format says
    ran = cli("speak", "Hello.", "--voice", "default", "--format", "ogg", "--out", str(ogg))
    assert ran.code == 0, ran.err
    assert ogg.read_bytes()[:4] == b"OggS" and b"OpusHead" in ogg.read_bytes()[:64]
    assert decode_audio(ogg.read_bytes(), None, None).sample_rate == 48000


def test_speak_stream_writes_chunks_as_they_come(cli, tmp_path, monkeypatch):
    out = tmp_path / "stream.wav"
    stdin_bytes(monkeypatch, b"First sentence here. Then a second one")
    ran = cli("speak", "-", "--stream", "--out", str(out))
    assert ran.code == 0, ran.err
    assert "2 sentence(s)" in ran.err
    samples, rate = sf.read(out)  # the stream's chunks are one continuous WAV
    assert rate == 24000 and len(samples) > rate


def test_speak_piped_writes_audio_to_standard_output(suite, capsysbinary):
    from speechmesh.cli import main

    code = main(["speak", "Hi there.", "--format", "flac", "--target", suite.gateway])
    captured = capsysbinary.readouterr()
    assert code == 0 and captured.out[:4] == b"fLaC" and captured.err == b""
    code = main(["speak", "Hi. Bye.", "--stream", "--out", "-", "--target", suite.gateway])
    captured = capsysbinary.readouterr()
    assert code == 0 and captured.out[:4] == b"RIFF"


def test_speak_unknown_voice_lists_the_voices(cli):
    ran = cli("speak", "Hello.", "--voice", "defualt", "--out", os.devnull)
    assert ran.code == 2
    assert "no voice named 'defualt'" in ran.err and "Did you mean default?" in ran.err
    assert "speechmesh voices create" in ran.err


def test_voices_create_list_speak_delete(cli, reference_wav, tmp_path):
    created = cli(
        "voices", "create", "cli-voice", "--audio", str(reference_wav), "--transcript", "Hi."
    )
    assert created.code == 0, created.err
    assert created.out.startswith("created voices/cli-voice:") and "csm" in created.out
    again = cli("voices", "create", "cli-voice", "--audio", str(reference_wav), "--transcript", "x")
    assert again.code == 2 and "already exists" in again.err.lower()
    listed = cli("voices", "list")
    assert listed.code == 0 and listed.out.splitlines()[0].split()[:2] == ["NAME", "LANGUAGE"]
    assert any(line.startswith("cli-voice ") for line in listed.out.splitlines())
    as_json = json.loads(cli("voices", "list", "--json").out)
    assert "voices/cli-voice" in [v["name"] for v in as_json]
    spoken = cli("speak", "Hello.", "--voice", "cli-voice", "--out", str(tmp_path / "v.wav"))
    assert spoken.code == 0, spoken.err
    deleted = cli("voices", "delete", "cli-voice")
    assert deleted.code == 0 and deleted.out == "deleted voices/cli-voice\n"
    missing = cli("voices", "delete", "cli-voice")
    assert missing.code == 2 and "no voice named 'cli-voice'" in missing.err


def test_voices_create_bad_input(cli, tmp_path, reference_wav):
    ran = cli("voices", "create", "x1", "--audio", str(tmp_path / "no.wav"), "--transcript", "a")
    assert ran.code == 2 and "no.wav: no such file" in ran.err
    short = tmp_path / "short.wav"
    samples, rate = sf.read(reference_wav)
    sf.write(short, samples[: rate // 2], rate)
    ran = cli("voices", "create", "x1", "--audio", str(short), "--transcript", "a")
    assert ran.code == 2 and ran.err.startswith("speechmesh: --audio:")


# -- health and languages ------------------------------------------------------------------------


def test_health_shows_every_service_with_model_device_and_memory(cli, suite):
    ran = cli("health")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0] == f"gateway {suite.gateway}"
    assert lines[1].split() == ["SERVICE", "STATUS", "MODEL", "ENGINE", "DEVICE", "MEMORY"]
    for service in ("asr", "translate", "tts"):
        row = next(line for line in lines if line.startswith(service + " "))
        # CTranslate2 reports its compute type: int8 weights, float32 activations.
        assert "SERVING" in row and re.search(r"cpu (int8_)?float32", row)
        assert re.search(r"\d\.\d (KiB|MiB)$", row)
    assert "(random weights)" in ran.out
    found = json.loads(cli("health", "--json").out)
    assert found["healthy"] and [s["service"] for s in found["services"]] == [
        "asr",
        "translate",
        "tts",
    ]
    assert all(s["models"][0]["memory_bytes"] > 0 for s in found["services"])


def test_languages_table_and_json(cli):
    ran = cli("languages")
    assert ran.code == 0, ran.err
    rows = {line.split()[0]: line for line in ran.out.splitlines()[1:]}
    assert ran.out.splitlines()[0].split()[:3] == ["CODE", "NAME", "ASR"]
    assert "English" in rows["en"] and "French" in rows["fr"]
    found = {entry["code"]: entry for entry in json.loads(cli("languages", "--json").out)}
    assert "asr" in found["en"]["supports"] and "tts" in found["en"]["supports"]
    assert {"text-in", "text-out", "speech-out"} <= set(found["fr"]["supports"])
    only = json.loads(cli("languages", "--service", "tts", "--json").out)
    assert all(entry["supports"] == ["tts"] for entry in only)


# -- as a real process -----------------------------------------------------------------------------


def test_the_installed_command_in_a_pipe(suite):
    env = {**os.environ, "SPEECHMESH_TARGET": suite.gateway}
    ran = subprocess.run(
        [sys.executable, "-m", "speechmesh.cli", "transcribe", str(GOFORWARD), "--format", "vtt"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("WEBVTT\n\n") and "\r" not in ran.stdout
    assert re.search(VTT_TIME, ran.stdout)
    if REAL:
        assert "forward" in words_of(ran.stdout)
