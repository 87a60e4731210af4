"""Realtime transcription over WebSocket from the client side: `client.realtime` (blocking and
asyncio), `speechmesh transcribe --realtime`, and examples/realtime_client.py.

They run against the ASR service's own WebSocket port (ASR in-process on the real
whisper-tiny.en, the way the gateway's `/v1/realtime` route reaches it), so that transcripts
can be checked word for word; without ../shared they are skipped.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechmesh.client import (
    FORCE_ENDPOINT,
    AsyncClient,
    Client,
    InvalidArgument,
    NotFound,
    RealtimeDelta,
    RealtimeSpeechEvent,
    RealtimeTranscript,
    Unavailable,
    Unimplemented,
)
from tests.client.conftest import GOFORWARD, JFK, Background, quiet_servers, real_only
from tests.conftest import ROOT, TINY_EN, running_asr
from tests.servers import free_port

pytestmark = real_only

JFK_PHRASE = "ask not what your country can do for you"


def words_of(text: str) -> list[str]:
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower()).split()


def said(text: str, phrase: str) -> bool:
    return " ".join(words_of(phrase)) in " ".join(words_of(text))


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    """ASR on whisper-tiny.en in-process with its WebSocket port: (grpc_target, ws_port)."""
    with quiet_servers(tmp_path_factory.mktemp("logs") / "asr.log"):
        background = Background()
        try:
            host, _ = background.enter(running_asr(TINY_EN, websocket_port=0))
            yield f"127.0.0.1:{host.port}", host.websocket_port
        finally:
            background.close()


@pytest.fixture
def client(asr):
    target, ws_port = asr
    with Client(target, realtime_url=f"127.0.0.1:{ws_port}") as client:
        yield client


def turns(events) -> list[RealtimeTranscript]:
    return [e for e in events if isinstance(e, RealtimeTranscript)]


def test_sync_file_in_real_time_deltas_then_completed_turns(client):
    started = time.monotonic()
    events = list(client.realtime.transcribe(JFK, realtime=True, language="en", speech_events=True))
    assert time.monotonic() - started >= 10.0  # 11 s of audio, paced as a microphone would
    completed = turns(events)
    assert completed
    text = " ".join(turn.text for turn in completed)
    assert said(text, JFK_PHRASE), text
    # Deltas come while a turn is spoken, before its completed transcript, for turns it has.
    deltas = [e for e in events if isinstance(e, RealtimeDelta)]
    assert deltas and {d.item_id for d in deltas} <= {t.item_id for t in completed}
    first_final = events.index(completed[0])
    assert any(isinstance(e, RealtimeDelta) for e in events[:first_final])
    for turn in completed:
        assert turn.language == "en" and turn.words
        assert 0 <= turn.start < turn.end <= 11.1
        assert all(turn.start - 0.5 <= w.start <= w.end <= turn.end + 0.5 for w in turn.words)
        assert turn.to_segment().text == turn.text
    speech = [e for e in events if isinstance(e, RealtimeSpeechEvent)]
    assert speech[0].type == "speech_started" and speech[0].offset < 1.0


def test_async_numpy_chunks_at_24khz_with_a_forced_endpoint(asr):
    _, ws_port = asr
    samples, rate = sf.read(GOFORWARD, dtype="float32")
    at24 = soxr.resample(samples, rate, 24000).astype(np.float32)

    async def microphone():
        for start in range(0, len(at24), 2400):  # 100 ms
            yield at24[start : start + 2400]
        yield FORCE_ENDPOINT  # end the turn now rather than after a pause

    async def main():
        # The target's host and port with /v1/realtime: here the service's WebSocket port.
        async with AsyncClient(f"http://127.0.0.1:{ws_port}") as client:
            assert client.realtime.url == f"ws://127.0.0.1:{ws_port}/v1/realtime"
            return [e async for e in client.realtime.transcribe(microphone(), sample_rate=24000)]

    completed = turns(asyncio.run(main()))
    assert [words_of(t.text) for t in completed] == [["go", "forward", "10", "meters"]]
    assert completed[0].language == "en" and len(completed[0].words) == 4


def test_a_recording_as_bytes_and_an_early_break(client):
    data = GOFORWARD.read_bytes()
    completed = turns(client.realtime.transcribe(data, sample_rate=24000))
    assert words_of(" ".join(t.text for t in completed)) == ["go", "forward", "10", "meters"]
    # Leaving the loop early closes the session; the client goes on working.
    for _event in client.realtime.transcribe(JFK, realtime=True):
        break
    assert turns(client.realtime.transcribe(GOFORWARD))


def test_errors_are_the_sdk_s(client, asr):
    _, ws_port = asr
    with pytest.raises(InvalidArgument) as bad:
        list(client.realtime.transcribe(GOFORWARD, language="klingon"))
    assert bad.value.fields == ["session.audio.input.transcription.language"]
    with pytest.raises(NotFound):
        list(client.realtime.transcribe(GOFORWARD, model="no-such-model"))
    with pytest.raises(ValueError, match="16000 or 24000"):
        client.realtime.transcribe(GOFORWARD, sample_rate=44100)

    def failing():
        yield np.zeros(1600, np.int16).tobytes()
        raise RuntimeError("the microphone went away")

    with pytest.raises(RuntimeError, match="microphone"):
        list(client.realtime.transcribe(failing()))
    nowhere = f"ws://127.0.0.1:{ws_port}/v1/nowhere"
    with Client(realtime_url=nowhere) as other, pytest.raises(Unimplemented, match="404"):
        list(other.realtime.transcribe(GOFORWARD))
    with Client(f"127.0.0.1:{free_port()}") as nothing:
        with pytest.raises(Unavailable) as down:
            list(nothing.realtime.transcribe(GOFORWARD))
        assert down.value.connect_failed


# -- the CLI -------------------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from speechmesh.cli import main

    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code
    sys.stdout.flush()
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_transcribe_realtime(capsys, asr):
    _, ws_port = asr
    target = ("--target", f"127.0.0.1:{ws_port}")  # the service's WebSocket port, as a gateway
    code, out, err = run_cli(capsys, "transcribe", str(JFK), "--realtime", "--fast", *target)
    assert code == 0, err
    assert "\r" not in out and said(out, JFK_PHRASE), out  # piped: final lines only
    code, out, err = run_cli(
        capsys, "transcribe", str(GOFORWARD), "--realtime", "--fast", "--format", "json",
        "--words", *target,
    )  # fmt: skip
    assert code == 0, err
    [line] = [json.loads(line) for line in out.splitlines()]
    assert words_of(line["text"]) == ["go", "forward", "10", "meters"]
    assert line["language"] == "en" and words_of(line["words"][0]["word"]) == ["go"]
    code, out, err = run_cli(
        capsys, "transcribe", str(GOFORWARD), "--realtime", "--language", "klingon", *target
    )
    assert code == 2 and err.startswith("speechmesh: --language klingon:"), err


def test_cli_transcribe_realtime_from_standard_input(capsys, monkeypatch, asr):
    _, ws_port = asr
    target = ("--target", f"127.0.0.1:{ws_port}")
    samples, rate = sf.read(JFK, dtype="int16")  # 44.1 kHz stereo: mixed down and resampled
    wav = io.BytesIO()
    sf.write(wav, samples, rate, format="WAV", subtype="PCM_16")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(wav.getvalue())))
    code, out, err = run_cli(capsys, "transcribe", "-", "--realtime", "--fast", *target)
    assert code == 0, err
    assert said(out, JFK_PHRASE), out
    pcm = soxr.resample(samples.mean(axis=1), rate, 16000).astype("<i2").tobytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm)))
    code, out, err = run_cli(
        capsys, "transcribe", "-", "--realtime", "--raw-rate", "16000", "--fast", *target
    )
    assert code == 0, err
    assert said(out, JFK_PHRASE), out


# -- examples/realtime_client.py -----------------------------------------------------------------


@pytest.fixture(scope="module")
def jfk_wavs(tmp_path_factory) -> dict[str, str]:
    """jfk.flac as WAV files: as it is (44.1 kHz stereo), and 16 kHz mono."""
    folder = tmp_path_factory.mktemp("jfk")
    samples, rate = sf.read(JFK, dtype="float32")
    sf.write(folder / "stereo.wav", samples, rate, subtype="PCM_16")
    sf.write(folder / "mono16k.wav", soxr.resample(samples.mean(axis=1), rate, 16000), 16000)
    return {"stereo": str(folder / "stereo.wav"), "mono16k": str(folder / "mono16k.wav")}


@pytest.mark.parametrize(
    "wav, options",
    [
        ("stereo", ["--rate", "24000", "--fast"]),  # mixed down and resampled with soxr
        ("mono16k", ["--language", "en"]),  # sent as it is at 16 kHz, in real time
    ],
)
def test_the_plain_websocket_example(asr, jfk_wavs, wav, options):
    _, ws_port = asr
    ran = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "realtime_client.py"),
            jfk_wavs[wav],
            "--url",
            f"ws://127.0.0.1:{ws_port}/v1/realtime",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("session    " + ("24000" if "--rate" in options else "16000"))
    finals = [line for line in lines if line.startswith("completed")]
    assert finals and said(" ".join(finals), JFK_PHRASE), ran.stdout
    assert all("[en, " in line for line in finals)
    assert any(line.startswith("delta") for line in lines), ran.stdout
