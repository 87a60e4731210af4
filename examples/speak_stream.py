"""Stream text into StreamingSynthesize as a language model would, and write the audio as it
comes, one continuous WAV file.

python examples/speak_stream.py OUT.wav [VOICE] [TARGET]
"""

import asyncio
import sys
import time

import grpc

from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

TEXT = "Hello! This sentence is spoken while the next one is still being written. And here it is."


async def requests(voice: str):
    config = tts_pb2.SynthesisConfig(voice=voice) if voice else tts_pb2.SynthesisConfig()
    yield tts_pb2.StreamingSynthesizeRequest(
        streaming_config=tts_pb2.StreamingSynthesisConfig(config=config)
    )
    for word in TEXT.split(" "):  # one word at a time, like tokens from a model
        yield tts_pb2.StreamingSynthesizeRequest(text=word + " ")
        await asyncio.sleep(0.05)


async def main(out: str, voice: str, target: str) -> None:
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as channel:
        tts = tts_pb2_grpc.TtsServiceStub(channel)
        with open(out, "wb") as f:
            async for response in tts.StreamingSynthesize(requests(voice)):
                elapsed = time.perf_counter() - started
                if response.HasField("audio_chunk"):
                    chunk = response.audio_chunk
                    f.write(chunk.audio)
                    if chunk.text:
                        print(f"{elapsed:5.2f} sentence {chunk.sentence_index}: {chunk.text}")
                else:
                    summary = response.summary
                    seconds = summary.audio_duration.ToMilliseconds() / 1000
                    print(f"{elapsed:5.2f} done: {summary.sentence_count} sentences, {seconds} s")


if __name__ == "__main__":
    out = sys.argv[1]
    voice = sys.argv[2] if len(sys.argv) > 2 else ""
    target = sys.argv[3] if len(sys.argv) > 3 else "localhost:50053"
    asyncio.run(main(out, voice, target))
