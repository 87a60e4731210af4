"""The CLI's shared helpers without a server: where audio goes, its format, the option a
request field stands for, sizes and tables."""

from __future__ import annotations

import io
import sys

import pytest

from speechmesh.client.cli import output
from speechmesh.client.cli.failures import flag


def test_audio_format_from_the_option_else_the_extension_else_wav():
    assert output.audio_format("a.mp3", "flac") == "flac"
    assert output.audio_format("a.OPUS", None) == "ogg"
    assert output.audio_format("a.raw", None) == "pcm"
    assert output.audio_format("a.unknown", None) == "wav"
    assert output.audio_format("-", None) == output.audio_format(None, None) == "wav"


def test_audio_output_to_a_file_or_a_pipe_never_a_terminal(tmp_path, monkeypatch):
    with output.audio_output(str(tmp_path / "a.wav")) as stream:
        stream.write(b"RIFF")
    assert (tmp_path / "a.wav").read_bytes() == b"RIFF"
    missing = str(tmp_path / "missing" / "a.wav")
    with pytest.raises(output.UsageError, match="does not exist"), output.audio_output(missing):
        pass
    piped = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(piped))
    with output.audio_output("-") as stream:
        stream.write(b"audio")
    assert piped.getvalue() == b"audio"
    monkeypatch.setattr(output, "isatty", lambda stream: True)
    with pytest.raises(output.UsageError, match="terminal"), output.audio_output("-"):
        pass


def test_request_fields_are_named_by_their_options():
    assert flag("config.language_code") == "--language"
    assert flag("streaming_config.config.target_language_code") == "--to"
    assert flag("config.output_audio_config.encoding") == "--format"
    assert flag("voice.transcript") == "--transcript"
    assert flag("something_else") == "something_else"


def test_sizes_and_tables(capsys):
    assert output.memory(0) == "" and output.memory(512) == "512 B"
    assert output.memory(3 * 1024**3 // 2) == "1.5 GiB"
    output.table([["NAME", "STATE"], ["whisper-tiny", "ready"], ["vits", ""]])
    assert capsys.readouterr().out.splitlines() == [
        "NAME          STATE",
        "whisper-tiny  ready",
        "vits",
    ]
