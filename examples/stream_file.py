"""Stream a file to StreamingRecognize in real time, as a microphone would.

python examples/stream_file.py FILE [TARGET]
"""

import asyncio
import sys
import time

import grpc
import numpy as np
from recording import live_chunks, read_linear16

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.audio.v1 import audio_pb2


async def requests(samples: np.ndarray, rate: int):
    yield asr_pb2.StreamingRecognizeRequest(
        streaming_config=asr_pb2.StreamingRecognitionConfig(
            interim_results=True,
            enable_voice_activity_events=True,
            config=asr_pb2.RecognitionConfig(
                enable_word_time_offsets=True,
                audio_format=audio_pb2.AudioFormat(
                    encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate
                ),
            ),
        )
    )
    async for chunk in live_chunks(samples, rate):
        yield asr_pb2.StreamingRecognizeRequest(audio=chunk)


async def main(path: str, target: str) -> None:
    samples, rate = read_linear16(path)
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as channel:
        asr = asr_pb2_grpc.AsrServiceStub(channel)
        async for response in asr.StreamingRecognize(requests(samples, rate)):
            elapsed = time.perf_counter() - started
            if response.HasField("speech_event"):
                event = response.speech_event
                kind = {event.TYPE_SPEECH_BEGIN: "begins", event.TYPE_SPEECH_END: "ends"}.get(
                    event.type, "ended (single utterance)"
                )
                print(f"{elapsed:5.2f} speech {kind} at {event.offset.ToMilliseconds() / 1000} s")
            elif response.result.is_final:
                print(f"{elapsed:5.2f} FINAL    {response.result.transcript}")
            else:
                result = response.result
                print(f"{elapsed:5.2f} interim  [{result.stable_transcript}] {result.transcript}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "localhost:50051"))
