"""Realtime transcription over a plain WebSocket: OpenAI's Realtime transcription events.

python examples/realtime_client.py FILE.wav [--url ws://localhost:8080/v1/realtime]
                                   [--rate 24000|16000] [--language en] [--fast]

Reads a WAV file, sends it as 16-bit PCM in 100 ms `input_audio_buffer.append` events, paced
as a microphone would (--fast: at once), and prints the events that come back: speech
started/stopped, transcript deltas while a turn is spoken, and each turn's completed transcript
(with the language and word times speechmesh adds under "speechmesh").

Only the standard library and `websockets`; a WAV that is not mono 16-bit PCM at 24 or 16 kHz
is converted with numpy and soxr (`pip install soxr`). $SPEECHMESH_API_KEY, when set, goes as
`Authorization: Bearer KEY` (the gateway also takes `x-api-key`).
"""

import argparse
import asyncio
import base64
import json
import os
import time
import wave

from websockets.asyncio.client import connect

CHUNK_SECONDS = 0.1


def read_pcm16(path: str, rate: int | None) -> tuple[bytes, int]:
    """The WAV's audio as mono 16-bit PCM: as it is when it is that already at 24 or 16 kHz
    (and `rate` does not ask for another), else converted to `rate` (24 kHz by default)."""
    with wave.open(path, "rb") as wav:
        channels, width, source_rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        frames = wav.readframes(wav.getnframes())
    as_it_is = channels == 1 and width == 2 and source_rate in (24000, 16000)
    if as_it_is and rate in (None, source_rate):
        return frames, source_rate
    import numpy as np  # only to convert
    import soxr

    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(frames, dtype).reshape(-1, channels).astype(np.float32)
    if width == 1:
        samples = (samples - 128) / 128
    else:
        samples /= float(np.iinfo(dtype).max)
    target = rate or 24000
    mono = soxr.resample(samples.mean(axis=1), source_rate, target)
    return (np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes(), target


def event(kind: str, **fields) -> str:
    return json.dumps({"type": kind, **fields})


async def send_audio(ws, pcm: bytes, rate: int, fast: bool) -> None:
    step = int(rate * CHUNK_SECONDS) * 2  # bytes of 100 ms
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), step)):
        if not fast:  # real time: chunk N goes N * 100 ms after the first
            await asyncio.sleep(max(0.0, started + index * CHUNK_SECONDS - time.monotonic()))
        chunk = base64.b64encode(pcm[offset : offset + step]).decode("ascii")
        await ws.send(event("input_audio_buffer.append", audio=chunk))
    # The end of the audio. speechmesh answers a session.update that changes the session only
    # once the audio before it is transcribed and every result sent, so its session.updated
    # marks the end (noise_reduction is accepted and not applied: a harmless change). With
    # OpenAI's service, send input_audio_buffer.commit and wait for the last completed instead.
    await ws.send(
        event(
            "session.update",
            session={
                "type": "transcription",
                "audio": {"input": {"noise_reduction": {"type": "near_field"}}},
            },
        )
    )


async def main(args: argparse.Namespace) -> None:
    pcm, rate = read_pcm16(args.file, args.rate)
    headers = {}
    if os.environ.get("SPEECHMESH_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["SPEECHMESH_API_KEY"]
    async with connect(args.url, additional_headers=headers) as ws:
        session = {
            "type": "transcription",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": rate},
                    "transcription": {"model": args.model, "language": args.language},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                    "noise_reduction": None,
                }
            },
        }
        await ws.send(event("session.update", session=session))
        sender = None
        async for message in ws:
            received = json.loads(message)
            kind = received["type"]
            if kind == "session.updated":
                if sender is not None:  # the answer to the update after the audio: the end
                    break
                model = received["session"]["audio"]["input"]["transcription"]["model"]
                print(f"session    {rate} Hz, model {model}")
                sender = asyncio.create_task(send_audio(ws, pcm, rate, args.fast))
            elif kind == "input_audio_buffer.speech_started":
                print(f"speech     started at {received['audio_start_ms'] / 1000:.2f} s")
            elif kind == "input_audio_buffer.speech_stopped":
                print(f"speech     stopped at {received['audio_end_ms'] / 1000:.2f} s")
            elif kind == "conversation.item.input_audio_transcription.delta":
                print(f"delta      {received['delta']}")
            elif kind == "conversation.item.input_audio_transcription.completed":
                extra = received.get("speechmesh", {})
                start, end = extra.get("start_ms", 0) / 1000, extra.get("end_ms", 0) / 1000
                language = extra.get("language")
                print(f"completed  {received['transcript']}  [{language}, {start:.2f}-{end:.2f} s]")
            elif kind == "error":
                raise SystemExit(f"error: {received['error']['message']}")
        if sender is not None:
            await sender


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", help="a WAV file")
    parser.add_argument("--url", default="ws://localhost:8080/v1/realtime")
    parser.add_argument("--rate", type=int, choices=[24000, 16000], help="PCM rate to send")
    parser.add_argument("--language", default="", help="BCP-47 code; default: detected")
    parser.add_argument("--model", default="", help="ASR model; default: the service's")
    parser.add_argument("--fast", action="store_true", help="send the audio at once")
    asyncio.run(main(parser.parse_args()))
