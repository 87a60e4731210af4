"""Stream a file to StreamingTranslateSpeech in real time and print each segment's
translation as it comes; with --speech, also write the translated speech to a WAV file.

python examples/translate_stream.py FILE LANGUAGE [--speech OUT.wav] [TARGET]
"""

import argparse
import asyncio
import time

import grpc
import numpy as np
from recording import live_chunks, read_linear16

from speechmesh.audio.v1 import audio_pb2
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc


async def requests(samples: np.ndarray, rate: int, language: str, speech: bool):
    modalities = [tr.MODALITY_TEXT] + ([tr.MODALITY_SPEECH] if speech else [])
    yield tr.StreamingTranslateSpeechRequest(
        streaming_config=tr.StreamingSpeechTranslationConfig(
            config=tr.SpeechTranslationConfig(
                target_language_code=language,
                output_modalities=modalities,
                audio_format=audio_pb2.AudioFormat(
                    encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=rate
                ),
            )
        )
    )
    async for chunk in live_chunks(samples, rate):
        yield tr.StreamingTranslateSpeechRequest(audio=chunk)


async def main(args: argparse.Namespace) -> None:
    samples, rate = read_linear16(args.file)
    speech = bytearray()
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(args.target) as channel:
        translate = translate_pb2_grpc.TranslateServiceStub(channel)
        stream = requests(samples, rate, args.language, bool(args.speech))
        async for r in translate.StreamingTranslateSpeech(stream):
            elapsed = time.perf_counter() - started
            start, end = r.start_offset.ToMilliseconds(), r.end_offset.ToMilliseconds()
            if r.HasField("translation"):
                text = r.translation.translated_text
                print(f"{elapsed:5.2f} segment {r.segment_index} ({start}-{end} ms): {text}")
            elif r.HasField("audio_chunk"):
                speech += r.audio_chunk.audio  # one continuous WAV stream, header first
    if args.speech:
        with open(args.speech, "wb") as f:
            f.write(speech)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("language")
    parser.add_argument("--speech", help="write translated speech to this WAV file")
    parser.add_argument("target", nargs="?", default="localhost:50052")
    asyncio.run(main(parser.parse_args()))
