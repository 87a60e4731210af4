"""Transcribe a file with word times: python examples/recognize.py [FILE] [TARGET]."""

import sys

import grpc

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc

path = sys.argv[1] if len(sys.argv) > 1 else "examples/hello.wav"
target = sys.argv[2] if len(sys.argv) > 2 else "localhost:50051"

with grpc.insecure_channel(target) as channel:
    asr = asr_pb2_grpc.AsrServiceStub(channel)
    with open(path, "rb") as f:
        response = asr.Recognize(
            asr_pb2.RecognizeRequest(
                audio=f.read(),
                config=asr_pb2.RecognitionConfig(language_code="en", enable_word_time_offsets=True),
            )
        )
    print(response.transcript)
    for word in response.segments[0].words[:3]:
        print(word.word, word.start_offset.ToMilliseconds(), word.end_offset.ToMilliseconds())
