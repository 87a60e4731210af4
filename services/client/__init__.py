"""The speechmesh Python SDK: blocking and asyncio clients for ASR, translation and TTS.

    from speechmesh.client import Client

    with Client("localhost:8080") as client:          # the gateway of `make run`
        transcript = client.asr.recognize("speech.wav", language="en", words=True)
        print(transcript.text, transcript.segments[0].start)
        print(client.translate.text("Hello", to="fr").text)
        client.tts.synthesize("Hello there.").save("hello.wav")
        job = client.jobs.batch_recognize(["meeting.flac"], language="en")  # long work
        job = client.jobs.wait_job(job.name, on_progress=lambda j: print(j.progress_percent))
        print(client.jobs.job_result(job.name, "srt").decode())
        for event in client.realtime.transcribe("speech.wav", realtime=True):  # WebSocket
            print(event)

One channel carries every service (through the gateway) or one service (its own port).
Results are plain dataclasses with the protobuf message as `.proto`; failures raise
SpeechmeshError subclasses carrying the gRPC code, message, field violations and retry delay.
"""

from speechmesh.client.aio import AsyncClient, AsyncSynthesisStream
from speechmesh.client.audio import AudioFileError
from speechmesh.client.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ResourceInfo,
    SpeechmeshError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from speechmesh.client.sync import Client, SynthesisStream
from speechmesh.client.types import (
    FLUSH,
    FORCE_ENDPOINT,
    AudioChunk,
    Health,
    Job,
    JobError,
    JobFileResult,
    ModelInfo,
    ModelLanguages,
    RealtimeDelta,
    RealtimeSpeechEvent,
    RealtimeTranscript,
    Segment,
    Speech,
    SpeechEvent,
    SpeechTranslation,
    SpeechTranslationEvent,
    StreamingResult,
    SynthesisSummary,
    Transcript,
    TranslatedSegment,
    Translation,
    Upload,
    Voice,
    Word,
)

__all__ = [
    "FLUSH",
    "FORCE_ENDPOINT",
    "AlreadyExists",
    "AsyncClient",
    "AsyncSynthesisStream",
    "AudioChunk",
    "AudioFileError",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Health",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobError",
    "JobFileResult",
    "ModelInfo",
    "ModelLanguages",
    "NotFound",
    "PermissionDenied",
    "RealtimeDelta",
    "RealtimeSpeechEvent",
    "RealtimeTranscript",
    "ResourceExhausted",
    "ResourceInfo",
    "Segment",
    "Speech",
    "SpeechEvent",
    "SpeechTranslation",
    "SpeechTranslationEvent",
    "SpeechmeshError",
    "StreamingResult",
    "SynthesisStream",
    "SynthesisSummary",
    "Transcript",
    "TranslatedSegment",
    "Translation",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Upload",
    "Voice",
    "Word",
]
