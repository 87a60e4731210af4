"""Fuzz every service with request bodies that are not valid messages, or barely are.

Each service (ASR on both engines, translate, TTS) gets >= 10,000 bodies spread over all its
methods, unary and streaming, over a raw channel (identity serializers): random bytes;
truncations, bit flips, byte edits, insertions, deletions, splices and concatenations of valid
serialized requests; and decodable messages built at random from the request descriptors with
odd values (out-of-range enums, NaN and infinities, huge and negative numbers, odd strings).
A stream carries several such bodies, with bad ones in the middle too.

Every answer must be success or a caller's error: never UNKNOWN or INTERNAL, never a hang (the
generous deadline is not a budget: DEADLINE_EXCEEDED fails), never a class name or stack text.
A body that does not parse is INVALID_ARGUMENT naming the message type, and in a stream the
position of the first bad message. The interceptor counts every call in the metrics. After all
that the host still serves: health SERVING, reflection and a plain call answer.

Bodies that parse and would reach a model (audio that decodes, text to speak or translate) are
capped per method so a run stays fast; every body is drawn from one fixed seed before any is
sent, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import io
import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
import soundfile as sf
from google.api import httpbody_pb2
from google.longrunning import operations_pb2 as lro_pb2
from google.protobuf import descriptor, empty_pb2, message_factory
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from speechmesh.asr.v1 import asr_pb2
from speechmesh.audio.v1 import audio_pb2
from speechmesh.common.v1.operations_pb2 import AudioInput
from speechmesh.dsp.audio import decode_audio
from speechmesh.runtime.proto_mapping import raw_format
from speechmesh.translate.v1 import translate_pb2
from speechmesh.tts.v1 import tts_pb2
from tests.unit.forms import CONTENT_TYPE, form_body

SEED = 20261203
BODIES_PER_SERVICE = 10_000
#: Calls in flight at once (streams included).
WORKERS = 8
#: Far beyond any call here: reaching it means a hang, and fails the test.
DEADLINE_S = 120.0
#: Share of the bodies that go to streaming methods.
STREAM_SHARE = 0.35

#: Codes that say the server failed, not the caller.
SERVER_FAULTS = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.CANCELLED,
}
#: Internals that must never reach a caller.
LEAKS = ("<class", "Traceback", "DecodeError", "Error parsing", "Unexpected <", 'File "')

INVALID = grpc.StatusCode.INVALID_ARGUMENT
RATE = 16000


# -- audio for the seeds ----------------------------------------------------------------


def _noise(seconds: float, amplitude: float, seed: int) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).clip(
        -1, 1
    )


def _wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _voice_like(seconds: float) -> np.ndarray:
    """A voiced, varying signal loud enough for a cloning reference."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    tone = np.sin(2 * np.pi * np.cumsum(pitch) / RATE) + 0.3 * np.sin(4 * np.pi * pitch * t)
    return 0.4 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2)


SHORT_WAV = _wav(_noise(0.25, 0.2, 1))
QUIET_PCM = (_noise(0.05, 0.002, 2) * 32767).astype("<i2").tobytes()  # 50 ms LINEAR16
REFERENCE_WAV = _wav(_voice_like(3.5))
GARBAGE = random.Random(SEED).randbytes(600)
LINEAR16 = audio_pb2.AudioFormat(
    encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE, channel_count=1
)


def audio_decodes(data: bytes, fmt: audio_pb2.AudioFormat | None = None) -> bool:
    """Whether the service could decode `data` as audio (and so run a model on it)."""
    if not data:
        return False
    try:
        raw = None if fmt is None else raw_format(fmt, "fuzz")
        decode_audio(data, raw, None)
    except Exception:
        return False
    return True


def _speech_json_speaks(data: bytes) -> bool:
    try:
        fields = json.loads(data)
    except ValueError:
        return False
    return isinstance(fields, dict) and bool(str(fields.get("input") or "").strip())


# -- what each service gets ------------------------------------------------------------


@dataclass
class Plan:
    """A service's methods, valid requests to mutate, and which parsed requests cost model work."""

    service: descriptor.ServiceDescriptor
    #: Method name -> valid requests (for streams: the first message of a stream).
    seeds: dict[str, list[Message]]
    #: Stream method name -> valid later messages (payloads and controls).
    stream_seeds: dict[str, list[Message]] = field(default_factory=dict)
    #: Method name -> whether a parsed request (stream: the parsed messages) reaches a model.
    costly: dict[str, Callable] = field(default_factory=dict)
    #: Parsed bodies that reach a model, at most, for the whole service.
    model_budget: int = 100
    #: Strings worth trying in any string field (model names, voices, languages).
    words: list[str] = field(default_factory=list)


def _stream_audio_bytes(messages: list[Message]) -> int:
    return sum(len(m.audio) for m in messages if m.WhichOneof("streaming_request") == "audio")


def _stream_costly(limit_bytes: int) -> Callable:
    """A stream that opens with a config and carries more than `limit_bytes` of audio."""

    def costly(messages: list[Message]) -> bool:
        opens = messages[0].WhichOneof("streaming_request") == "streaming_config"
        return opens and _stream_audio_bytes(messages[1:]) > limit_bytes

    return costly


def asr_plan(model: str, engine: str) -> Plan:
    config = asr_pb2.RecognitionConfig
    stream = asr_pb2.StreamingRecognizeRequest
    full = config(
        audio_format=LINEAR16,
        language_code="en",
        task=asr_pb2.RECOGNITION_TASK_TRANSCRIBE,
        enable_word_time_offsets=True,
        prompt="A prompt.",
        hotwords=["speechmesh", "fuzz"],
        beam_size=2,
        temperature=0.2,
        model=model,
    )
    form = [("model", "whisper-1"), ("language", "en"), ("response_format", "verbose_json")]
    return Plan(
        service=asr_pb2.DESCRIPTOR.services_by_name["AsrService"],
        seeds={
            "Recognize": [
                asr_pb2.RecognizeRequest(audio=SHORT_WAV, config=config(language_code="en")),
                asr_pb2.RecognizeRequest(config=full, request_id="fuzz"),
                asr_pb2.RecognizeRequest(audio=GARBAGE, config=config(task=2, beam_size=8)),
            ],
            "RecognizeFile": [
                asr_pb2.RecognizeFileRequest(
                    audio=httpbody_pb2.HttpBody(content_type="audio/wav", data=SHORT_WAV)
                ),
                asr_pb2.RecognizeFileRequest(
                    audio=httpbody_pb2.HttpBody(content_type="audio/wav", data=GARBAGE),
                    config=full,
                    request_id="fuzz",
                ),
            ],
            "StreamingRecognize": [
                stream(
                    streaming_config=asr_pb2.StreamingRecognitionConfig(
                        config=config(audio_format=LINEAR16),
                        interim_results=True,
                        enable_voice_activity_events=True,
                        request_id="fuzz",
                    )
                ),
                stream(
                    streaming_config=asr_pb2.StreamingRecognitionConfig(
                        config=full, single_utterance=True, vad_threshold=0.9
                    )
                ),
            ],
            "ListModels": [asr_pb2.ListModelsRequest(request_id="fuzz")],
            # Admin calls: the fuzzer is no operator (PERMISSION_DENIED, never a crash).
            "LoadModel": [
                asr_pb2.LoadModelRequest(name="whisper", request_id="fuzz"),
                asr_pb2.LoadModelRequest(name="x", source="/etc"),
            ],
            "UnloadModel": [asr_pb2.UnloadModelRequest(name="whisper", request_id="fuzz")],
            "BatchRecognize": [
                asr_pb2.BatchRecognizeRequest(
                    config=config(language_code="en"), files=[AudioInput(content=SHORT_WAV)]
                ),
                asr_pb2.BatchRecognizeRequest(
                    config=full,
                    files=[
                        AudioInput(upload="uploads/fuzz"),
                        AudioInput(uri="file:///etc/passwd"),
                        AudioInput(uri="https://169.254.169.254/"),
                        AudioInput(content=GARBAGE),
                    ],
                    request_id="fuzz",
                ),
            ],
            "CreateTranscription": [
                httpbody_pb2.HttpBody(
                    content_type=CONTENT_TYPE, data=form_body(("file", SHORT_WAV), *form)
                ),
                httpbody_pb2.HttpBody(
                    content_type=CONTENT_TYPE,
                    data=form_body(
                        ("file", GARBAGE),
                        ("temperature", "0.3"),
                        ("timestamp_granularities[]", "word"),
                        ("prompt", "Hello"),
                    ),
                ),
            ],
            "CreateTranslation": [
                httpbody_pb2.HttpBody(
                    content_type=CONTENT_TYPE, data=form_body(("file", SHORT_WAV), *form)
                ),
                httpbody_pb2.HttpBody(
                    content_type=CONTENT_TYPE,
                    data=form_body(("file", GARBAGE), ("response_format", "srt")),
                ),
            ],
            "ListOpenAiModels": [asr_pb2.ListOpenAiModelsRequest()],
            "GetOpenAiModel": [asr_pb2.GetOpenAiModelRequest(model="whisper-1")],
        },
        stream_seeds={
            "StreamingRecognize": [
                stream(audio=QUIET_PCM),
                stream(audio=QUIET_PCM[:333]),
                stream(control=asr_pb2.StreamingControl(action=1)),
            ]
        },
        costly={
            "Recognize": lambda m: audio_decodes(m.audio, m.config.audio_format),
            "RecognizeFile": lambda m: audio_decodes(m.audio.data, m.config.audio_format),
            "CreateTranscription": lambda m: b"RIFF" in m.data,
            "CreateTranslation": lambda m: b"RIFF" in m.data,
            "StreamingRecognize": _stream_costly(len(QUIET_PCM) * 4),
            "BatchRecognize": lambda m: len(m.files) > 0,  # a job that may run
        },
        # The transformers engine decodes a tiny random Whisper for seconds; CTranslate2 for
        # about a tenth of one.
        model_budget=8 if engine == "transformers" else 150,
        words=[model, "whisper-1", "en", "fr", "auto", "transcribe", "translate", "srt"],
    )


def translate_plan(model: str, text_model: str) -> Plan:
    t = translate_pb2
    speech = t.SpeechTranslationConfig(
        source_language_code="en",
        target_language_code="fr",
        output_modalities=[t.MODALITY_TEXT, t.MODALITY_SPEECH],
        enable_source_transcript=True,
        output_audio_config=audio_pb2.OutputAudioConfig(
            encoding=audio_pb2.OUTPUT_ENCODING_FLAC, sample_rate_hertz=22050
        ),
    )
    raw_speech = t.SpeechTranslationConfig(
        audio_format=LINEAR16, source_language_code="en", target_language_code="de"
    )
    to_speech = t.TextToSpeechTranslationConfig(
        source_language_code="en", target_language_code="fr"
    )
    body = httpbody_pb2.HttpBody(content_type="audio/wav", data=SHORT_WAV)
    stream = t.StreamingTranslateSpeechRequest
    return Plan(
        service=t.DESCRIPTOR.services_by_name["TranslateService"],
        seeds={
            "TranslateText": [
                t.TranslateTextRequest(
                    texts=["Hello.", ""], source_language_code="en", target_language_code="fr"
                ),
                t.TranslateTextRequest(
                    texts=["Bonjour."], target_language_code="en", model=text_model
                ),
                t.TranslateTextRequest(request_id="fuzz", target_language_code="fr"),
            ],
            "TranslateSpeech": [
                t.TranslateSpeechRequest(audio=SHORT_WAV, config=speech),
                t.TranslateSpeechRequest(audio=GARBAGE, config=raw_speech, request_id="fuzz"),
            ],
            "TranslateSpeechFile": [t.TranslateSpeechFileRequest(audio=body, config=speech)],
            "TranslateSpeechAudio": [t.TranslateSpeechAudioRequest(audio=body, config=speech)],
            "TranslateTextToSpeech": [
                t.TranslateTextToSpeechRequest(text="Good night.", config=to_speech),
                t.TranslateTextToSpeechRequest(config=to_speech, request_id="fuzz"),
            ],
            "TranslateTextToSpeechAudio": [
                t.TranslateTextToSpeechAudioRequest(text="Hi.", config=to_speech)
            ],
            "StreamingTranslateSpeech": [
                stream(
                    streaming_config=t.StreamingSpeechTranslationConfig(
                        config=raw_speech, request_id="fuzz"
                    )
                ),
                stream(
                    streaming_config=t.StreamingSpeechTranslationConfig(
                        config=t.SpeechTranslationConfig(
                            audio_format=LINEAR16,
                            source_language_code="en",
                            target_language_code="fr",
                            output_modalities=[t.MODALITY_SPEECH],
                        ),
                        vad_threshold=0.3,
                    )
                ),
            ],
            "ListLanguages": [t.ListLanguagesRequest(model=model)],
            "ListModels": [t.ListModelsRequest()],
            "BatchTranslateSpeech": [
                t.BatchTranslateSpeechRequest(
                    config=raw_speech, files=[AudioInput(content=QUIET_PCM)], request_id="fuzz"
                ),
                t.BatchTranslateSpeechRequest(
                    config=t.SpeechTranslationConfig(target_language_code="fr"),
                    files=[AudioInput(upload="uploads/x"), AudioInput(uri="file:///x")],
                ),
            ],
        },
        stream_seeds={
            "StreamingTranslateSpeech": [
                stream(audio=QUIET_PCM),
                stream(audio=QUIET_PCM[:101]),
                stream(control=t.StreamingControl(action=1)),
            ]
        },
        costly={
            "TranslateText": lambda m: any(text.strip() for text in m.texts),
            "TranslateSpeech": lambda m: audio_decodes(m.audio, m.config.audio_format),
            "TranslateSpeechFile": lambda m: audio_decodes(m.audio.data, m.config.audio_format),
            "TranslateSpeechAudio": lambda m: audio_decodes(m.audio.data, m.config.audio_format),
            "TranslateTextToSpeech": lambda m: bool(m.text.strip()),
            "TranslateTextToSpeechAudio": lambda m: bool(m.text.strip()),
            "StreamingTranslateSpeech": _stream_costly(len(QUIET_PCM) * 4),
            "BatchTranslateSpeech": lambda m: len(m.files) > 0,
        },
        model_budget=100,
        words=[model, text_model, "en", "fr", "de", "eng", "fra", "default"],
    )


def tts_plan(model: str, preset_model: str) -> Plan:
    t = tts_pb2
    clone = t.SynthesisConfig(
        reference_audio=t.ReferenceAudio(audio=REFERENCE_WAV, transcript="This is my voice."),
        output_audio_config=audio_pb2.OutputAudioConfig(encoding=audio_pb2.OUTPUT_ENCODING_PCM),
        speed=1.2,
        temperature=0.7,
        seed=3,
    )
    preset = t.SynthesisConfig(preset_voice="default", model=preset_model, language_code="en")
    voice = t.Voice(display_name="Fuzz", transcript="This is my voice.", language_code="en")
    stream = t.StreamingSynthesizeRequest
    speech = {"model": "tts-1", "input": "Hi.", "voice": "alloy", "response_format": "wav"}
    odd_speech = [
        {"input": 5},
        {"input": None, "voice": ["a"]},
        {"input": "Hi.", "speed": "fast"},
        {"input": "Hi.", "speed": 1e999},
        {"input": "Hi.", "response_format": {"a": 1}, "stream_format": ["sse"]},
        {"model": 3, "input": "Hi.", "voice": {"id": "x"}},
        ["input", "Hi."],
        "Hi.",
    ]
    return Plan(
        service=t.DESCRIPTOR.services_by_name["TtsService"],
        seeds={
            "Synthesize": [
                t.SynthesizeRequest(text="Hello there.", config=preset),
                t.SynthesizeRequest(text="Hi. How are you?", config=clone, request_id="fuzz"),
                t.SynthesizeRequest(config=t.SynthesisConfig(voice="voices/fuzz-seed")),
            ],
            "SynthesizeAudio": [
                t.SynthesizeAudioRequest(text="Hi.", config=preset),
                t.SynthesizeAudioRequest(config=clone),
            ],
            "StreamingSynthesize": [
                stream(streaming_config=t.StreamingSynthesisConfig(config=preset)),
                stream(streaming_config=t.StreamingSynthesisConfig(config=clone)),
            ],
            "CreateVoice": [
                t.CreateVoiceRequest(
                    voice_id="fuzz-seed", voice=voice, reference_audio=REFERENCE_WAV
                ),
                t.CreateVoiceRequest(
                    voice=voice, reference_audio=GARBAGE, reference_audio_format=LINEAR16
                ),
            ],
            "UploadVoice": [
                t.UploadVoiceRequest(
                    reference_audio=httpbody_pb2.HttpBody(
                        content_type="audio/wav", data=REFERENCE_WAV
                    ),
                    voice_id="fuzz-upload",
                    voice=voice,
                ),
            ],
            "GetVoice": [t.GetVoiceRequest(name="voices/fuzz-seed")],
            "ListVoices": [t.ListVoicesRequest(page_size=2), t.ListVoicesRequest(page_token="abc")],
            "DeleteVoice": [t.DeleteVoiceRequest(name="voices/fuzz-nothing")],
            "ListModels": [t.ListModelsRequest()],
            "BatchSynthesize": [
                t.BatchSynthesizeRequest(text="A first sentence. A second.", request_id="fuzz"),
                t.BatchSynthesizeRequest(
                    text="Hi.", config=t.SynthesisConfig(voice="voices/fuzz-nothing")
                ),
            ],
            "CreateSpeech": [
                httpbody_pb2.HttpBody(
                    content_type="application/json", data=json.dumps(body).encode()
                )
                for body in [speech, *odd_speech]
            ],
        },
        stream_seeds={
            "StreamingSynthesize": [
                stream(text="Hello there. "),
                stream(text="and more"),
                stream(control=t.StreamingControl(action=1)),
            ]
        },
        costly={
            "Synthesize": lambda m: bool(m.text.strip()),
            "BatchSynthesize": lambda m: bool(m.text.strip()),
            "SynthesizeAudio": lambda m: bool(m.text.strip()),
            "StreamingSynthesize": lambda ms: (
                ms[0].WhichOneof("streaming_request") == "streaming_config"
                and any(m.text.strip() for m in ms[1:])
            ),
            "CreateVoice": lambda m: audio_decodes(m.reference_audio, m.reference_audio_format),
            "UploadVoice": lambda m: audio_decodes(
                m.reference_audio.data, m.reference_audio_format
            ),
            "CreateSpeech": lambda m: _speech_json_speaks(m.data),
        },
        model_budget=120,
        words=[model, preset_model, "default", "voices/fuzz-seed", "tts-1", "alloy", "en"],
    )


# -- random and mutated bodies ---------------------------------------------------------

F = descriptor.FieldDescriptor
_INTS = [0, 1, -1, 2, 3, 7, 8, 9, 50, 51, 400, 5001, 8000, 16000, 22050, 48000, 192001]
_INT32 = [*_INTS, 2**31 - 1, -(2**31)]
_INT64 = [*_INT32, 2**63 - 1, -(2**63), 315_576_000_001, 10**10]
_FLOATS = [0.0, -0.0, 0.05, 0.3, 0.5, 0.95, 1.0, 1.5, -1.0, 4.0, 1e-40, 3.4e38]
_FLOATS += [math.inf, -math.inf, math.nan]
_STRINGS = ["", " ", "x", "EN", "en-US", "pt-BR", "zz", "und", "*", "voices/", "voices/a/b"]
_STRINGS += ["../../etc/passwd", "\x00", "é", "日本語。", "🙂", "\u202e", "a" * 129, "Hi. " * 700]
_STRINGS += ["%s%n{}", "null", "-1", "NaN", "\n\n", "Hello. How are you? Fine."]


class Fuzzer:
    """Draws request bodies for one service from a seeded generator."""

    def __init__(self, rng: random.Random, plan: Plan):
        self.rng = rng
        self.plan = plan
        self.strings = [*_STRINGS, *plan.words]
        self.blobs: list[bytes] = [b"", b"\x00", b"RIFF", SHORT_WAV[:44], b"\xff\xfb\x90\x00"]
        for seeds in [*plan.seeds.values(), *plan.stream_seeds.values()]:
            for seed in seeds:
                self._collect(seed)

    def _collect(self, msg: Message) -> None:
        for fd, value in msg.ListFields():
            values = value if fd.is_repeated else [value]
            for v in values:
                if fd.type == F.TYPE_MESSAGE:
                    self._collect(v)
                elif fd.type == F.TYPE_STRING and v not in self.strings:
                    self.strings.append(v)
                elif fd.type == F.TYPE_BYTES and len(v) < 4096:
                    self.blobs.append(v)

    # -- decodable random messages

    def message(self, desc: descriptor.Descriptor, depth: int = 0) -> Message:
        msg = message_factory.GetMessageClass(desc)()
        fill = self.rng.choice([0.2, 0.5, 0.9])
        chosen_oneofs = {o.name: self.rng.choice([None, *o.fields]) for o in desc.oneofs}
        for fd in desc.fields:
            if fd.containing_oneof is not None:
                if chosen_oneofs[fd.containing_oneof.name] is not fd:
                    continue
            elif self.rng.random() > fill:
                continue
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                continue
            if fd.is_repeated:
                n = self.rng.choice([0, 1, 2, 3, 60])
                target = getattr(msg, fd.name)
                for _ in range(n):
                    if fd.type == F.TYPE_MESSAGE:
                        if depth < 3:
                            target.add().CopyFrom(self.message(fd.message_type, depth + 1))
                    else:
                        target.append(self.scalar(fd))
            elif fd.type == F.TYPE_MESSAGE:
                if depth < 3:
                    getattr(msg, fd.name).CopyFrom(self.message(fd.message_type, depth + 1))
            else:
                setattr(msg, fd.name, self.scalar(fd))
        return msg

    def scalar(self, fd: descriptor.FieldDescriptor):
        rng = self.rng
        if fd.type == F.TYPE_STRING:
            if rng.random() < 0.1:
                return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(12)))
            return rng.choice(self.strings)
        if fd.type == F.TYPE_BYTES:
            if rng.random() < 0.3:
                return rng.randbytes(rng.choice([1, 2, 7, 64, 333]))
            return rng.choice(self.blobs)
        if fd.type == F.TYPE_BOOL:
            return rng.random() < 0.5
        if fd.type == F.TYPE_ENUM:
            values = [v.number for v in fd.enum_type.values]
            return rng.choice([*values, *values, max(values) + 1, -1, 99, 2**31 - 1])
        if fd.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
            return rng.choice(_FLOATS)
        if fd.type in (F.TYPE_UINT32, F.TYPE_FIXED32):
            return rng.choice([v for v in _INT32 if v >= 0])
        if fd.type in (F.TYPE_UINT64, F.TYPE_FIXED64):
            return rng.choice([v for v in _INT64 if v >= 0])
        if fd.type in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
            return rng.choice(_INT64)
        return rng.choice(_INT32)

    # -- bytes

    def random_bytes(self) -> bytes:
        n = self.rng.choice([0, 1, 2, 3, 5, 9, 17, 64, 300, 2048])
        return self.rng.randbytes(n)

    def mutate(self, body: bytes, other: bytes) -> bytes:
        rng = self.rng
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            n = len(body)
            kind = rng.randrange(10)
            if kind == 0 and n:  # truncate
                body = body[: rng.randrange(n)]
            elif kind in (1, 2) and n:  # flip bits
                data = bytearray(body)
                for _ in range(rng.choice([1, 1, 2, 4, 8])):
                    data[rng.randrange(n)] ^= 1 << rng.randrange(8)
                body = bytes(data)
            elif kind == 3 and n:  # set bytes to edge values
                data = bytearray(body)
                for _ in range(rng.choice([1, 2, 4])):
                    data[rng.randrange(n)] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF])
                body = bytes(data)
            elif kind == 4:  # insert random bytes
                at = rng.randrange(n + 1)
                body = body[:at] + rng.randbytes(rng.choice([1, 2, 5, 16])) + body[at:]
            elif kind == 5 and n:  # delete a range
                at = rng.randrange(n)
                body = body[:at] + body[at + rng.choice([1, 2, 8, 64]) :]
            elif kind == 6:  # splice with another body
                body = body[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
            elif kind == 7:  # concatenate: protobuf merges the two
                body = body + other if rng.random() < 0.5 else other + body
            elif kind == 8:  # a field with a bogus length or an overlong varint
                at = rng.randrange(n + 1)
                junk = rng.choice(
                    [b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10 + b"\x01", b"\x12\x7f"]
                )
                body = body[:at] + junk + body[at:]
            elif n:  # change a wire type
                data = bytearray(body)
                at = rng.randrange(n)
                data[at] = (data[at] & 0xF8) | rng.randrange(8)
                body = bytes(data)
        return body

    def body(self, request: descriptor.Descriptor, seeds: list[bytes]) -> bytes:
        """One body for a method taking `request`, valid or not."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.15:
            return self.random_bytes()
        if roll < 0.30:
            return self.message(request).SerializeToString()
        if roll < 0.40 and seeds:
            return rng.choice(seeds)
        base = rng.choice(seeds) if seeds and rng.random() < 0.7 else None
        if base is None:
            base = self.message(request).SerializeToString()
        other = rng.choice(seeds) if seeds else self.random_bytes()
        return self.mutate(base, other)


# -- jobs: what is sent, and what each body is ------------------------------------------


@dataclass
class Target:
    method: descriptor.MethodDescriptor
    cls: type[Message]
    seeds: list[bytes]
    stream_seeds: list[bytes]
    costly: Callable | None
    cap: int
    costly_sent: int = 0

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return self.method.client_streaming


@dataclass
class Job:
    target: Target
    bodies: list[bytes]
    #: Each body parsed here (None: it does not parse).
    parsed: list[Message | None]


def _parse(cls: type[Message], body: bytes) -> Message | None:
    try:
        return cls.FromString(body)
    except Exception:
        return None


def _targets(plan: Plan) -> list[Target]:
    costly_methods = len(plan.costly) or 1
    cap = max(1, plan.model_budget // costly_methods)
    targets = []
    for method in plan.service.methods:
        cls = message_factory.GetMessageClass(method.input_type)
        targets.append(
            Target(
                method,
                cls,
                [m.SerializeToString() for m in plan.seeds.get(method.name, [])],
                [m.SerializeToString() for m in plan.stream_seeds.get(method.name, [])],
                plan.costly.get(method.name),
                cap,
            )
        )
    missing = {t.method.name for t in targets} - set(plan.seeds)
    assert not missing, f"no seeds for {missing}: a new method needs seeds here"
    return targets


def _is_costly(target: Target, parsed: list[Message | None]) -> bool:
    if target.costly is None:
        return False
    if target.streaming:
        good = []
        for msg in parsed:  # the server reads up to the first bad message
            if msg is None:
                break
            good.append(msg)
        return bool(good) and target.costly(good)
    return parsed[0] is not None and target.costly(parsed[0])


def _draw(fuzzer: Fuzzer, target: Target) -> list[bytes]:
    rng = fuzzer.rng
    request = target.method.input_type
    if not target.streaming:
        return [fuzzer.body(request, target.seeds)]
    later = target.stream_seeds + target.seeds
    bodies = [
        rng.choice(target.seeds) if rng.random() < 0.5 else fuzzer.body(request, target.seeds)
    ]
    for _ in range(rng.choice([0, 1, 2, 3, 5, 7])):
        roll = rng.random()
        bodies.append(
            rng.choice(target.stream_seeds) if roll < 0.5 else fuzzer.body(request, later)
        )
    return bodies


def make_jobs(plan: Plan, seed: int = SEED, total: int = BODIES_PER_SERVICE) -> list[Job]:
    """Jobs carrying at least `total` bodies, spread over every method, in a seeded order."""
    rng = random.Random(seed)
    fuzzer = Fuzzer(rng, plan)
    targets = _targets(plan)
    unary = [t for t in targets if not t.streaming]
    streams = [t for t in targets if t.streaming]
    quota = {t.method.name: total * (1 - STREAM_SHARE) / len(unary) for t in unary}
    for t in streams:
        quota[t.method.name] = total * STREAM_SHARE / len(streams)
    jobs = []
    for target in targets:
        sent = 0
        while sent < quota[target.method.name]:
            for _ in range(50):  # redraw what would exceed the method's model work
                bodies = _draw(fuzzer, target)
                parsed = [_parse(target.cls, b) for b in bodies]
                costly = _is_costly(target, parsed)
                if not costly or target.costly_sent < target.cap:
                    break
            else:
                bodies = [b"\xff"]
                parsed = [None]
                costly = False
            target.costly_sent += costly
            jobs.append(Job(target, bodies, parsed))
            sent += len(bodies)
    rng.shuffle(jobs)
    return jobs


# -- sending and judging ---------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    seconds: float


_RAW = {"request_serializer": None, "response_deserializer": None}


@dataclass
class Client:
    channel: grpc.aio.Channel
    #: For client streams: when the server ends a stream while the client still writes, the
    #: asyncio client reports INTERNAL "Internal error from Core" instead of the server's
    #: status (grpc/grpc#36066); the sync client reports the server's.
    sync_channel: grpc.Channel
    #: The sync client's own threads: blocked in the default executor, they would starve the
    #: server in this process of the threads it decodes and runs models on.
    threads: concurrent.futures.ThreadPoolExecutor


async def send(client: Client, job: Job) -> Outcome:
    """Sends a job's bodies as they are."""
    method, path = job.target.method, job.target.path
    channel = client.channel
    if method.client_streaming:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(client.threads, _send_stream, client.sync_channel, job)
    started = time.perf_counter()
    try:
        if method.server_streaming:
            async for _ in channel.unary_stream(path, **_RAW)(job.bodies[0], timeout=DEADLINE_S):
                pass
        else:
            await channel.unary_unary(path, **_RAW)(job.bodies[0], timeout=DEADLINE_S)
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code(), error.details() or "", time.perf_counter() - started)
    return Outcome(grpc.StatusCode.OK, "", time.perf_counter() - started)


def _send_stream(channel: grpc.Channel, job: Job) -> Outcome:
    method, path = job.target.method, job.target.path
    started = time.perf_counter()
    try:
        if method.server_streaming:
            for _ in channel.stream_stream(path, **_RAW)(iter(job.bodies), timeout=DEADLINE_S):
                pass
        else:
            channel.stream_unary(path, **_RAW)(iter(job.bodies), timeout=DEADLINE_S)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", time.perf_counter() - started)
    return Outcome(grpc.StatusCode.OK, "", time.perf_counter() - started)


def not_valid(type_name: str) -> str:
    return f"the request is not a valid {type_name}"


_POSITION = re.compile(r" \(message (\d+) of the stream\)$")


def judge(job: Job, outcome: Outcome) -> str | None:
    """What is wrong with the answer to a job; None when it is right."""
    code, details = outcome.code, outcome.details
    if code == grpc.StatusCode.UNAVAILABLE and details.startswith("the cascade needs the"):
        return None  # the cascade path asked of a translate service without its ASR/TTS peers
    if code in SERVER_FAULTS:
        return f"{code.name}: {details}"
    if any(leak in details for leak in LEAKS):
        return f"internals in the message: {details}"
    name = job.target.method.input_type.full_name
    first_bad = next((i for i, msg in enumerate(job.parsed) if msg is None), None)
    said_undecodable = details.startswith(not_valid(name))
    if not job.target.streaming:
        if first_bad is None:
            return f"a valid body answered as undecodable: {details}" if said_undecodable else None
        if code != INVALID or details != not_valid(name):
            return f"an undecodable body answered {code.name}: {details!r}"
        return None
    position = _POSITION.search(details)
    if said_undecodable:
        expected = f"{not_valid(name)} (message {(first_bad or 0) + 1} of the stream)"
        if first_bad is None or code != INVALID or details != expected:
            return f"expected {expected!r}, got {code.name}: {details!r}"
    elif position is not None:
        return f"a stream position without the message type: {details!r}"
    if first_bad == 0 and not said_undecodable:
        return f"an undecodable first message answered {code.name}: {details!r}"
    return None


def _requests_counted(service: str, method: str, code: str) -> float:
    labels = {"service": service, "method": method, "code": code}
    return REGISTRY.get_sample_value("speechmesh_requests_total", labels) or 0.0


async def delete_jobs(channel: grpc.aio.Channel, service: str) -> None:
    """Deletes the jobs the fuzz created (a running one is cancelled), so that the shared
    server runs none of them after this test."""
    prefix = f"/speechmesh.{service}.v1.OperationsService/"
    list_jobs = channel.unary_unary(
        prefix + "ListOperations",
        request_serializer=lro_pb2.ListOperationsRequest.SerializeToString,
        response_deserializer=lro_pb2.ListOperationsResponse.FromString,
    )
    delete = channel.unary_unary(
        prefix + "DeleteOperation",
        request_serializer=lro_pb2.DeleteOperationRequest.SerializeToString,
        response_deserializer=empty_pb2.Empty.FromString,
    )
    while True:
        page = await list_jobs(
            lro_pb2.ListOperationsRequest(name=f"operations/{service}", page_size=1000)
        )
        if not page.operations:
            return
        for op in page.operations:
            await delete(lro_pb2.DeleteOperationRequest(name=op.name))


async def fuzz_service(host, channel, plan: Plan, label: str) -> None:
    """Sends a service's jobs, checks every answer and the host after; prints a summary."""
    service_label = host.app.name
    jobs = make_jobs(plan)
    bodies = sum(len(job.bodies) for job in jobs)
    assert bodies >= BODIES_PER_SERVICE
    per_method = collections.Counter()
    for job in jobs:
        per_method[job.target.method.name] += len(job.bodies)
    assert set(per_method) == {m.name for m in plan.service.methods}
    assert min(per_method.values()) >= 100, per_method

    codes = sorted({c.name for c in grpc.StatusCode})
    methods = [m.name for m in plan.service.methods]
    counted_before = {
        (m, c): _requests_counted(service_label, m, c) for m in methods for c in codes
    }
    outcomes: list[Outcome | None] = [None] * len(jobs)
    pending = iter(enumerate(jobs))
    client = Client(
        channel,
        grpc.insecure_channel(f"127.0.0.1:{host.port}"),
        concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="fuzz-client"),
    )

    async def worker() -> None:
        for index, job in pending:
            outcomes[index] = await send(client, job)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    finally:
        client.sync_channel.close()
        client.threads.shutdown()
    elapsed = time.perf_counter() - started
    await delete_jobs(channel, service_label)
    await asyncio.sleep(0.2)  # the handlers' last bookkeeping after the answers left

    problems = []
    tally: collections.Counter = collections.Counter()
    slowest = max(outcomes, key=lambda o: o.seconds)
    for index, (job, outcome) in enumerate(zip(jobs, outcomes, strict=True)):
        tally[job.target.method.name, outcome.code.name] += 1
        problem = judge(job, outcome)
        if problem is not None:
            sent = [b[:48].hex() for b in job.bodies]
            problems.append(f"job {index} {job.target.method.name} {sent}: {problem}")
    by_code = collections.Counter()
    for (_, code), n in tally.items():
        by_code[code] += n
    undecodable = sum(1 for o in outcomes if o.details.startswith("the request is not a valid "))
    mid_stream = sum(1 for o in outcomes if (m := _POSITION.search(o.details)) and m[1] != "1")
    costly = {t.method.name: t.costly_sent for t in _jobs_targets(jobs) if t.costly_sent}
    print(
        f"\nfuzz {label}: {bodies} bodies in {len(jobs)} calls, {elapsed:.1f} s"
        f" (slowest call {slowest.seconds:.2f} s); codes {dict(by_code)};"
        f" undecodable {undecodable}, of them mid-stream {mid_stream};"
        f" bodies reaching a model {costly}"
    )
    for method in methods:
        answers = {code: n for (m, code), n in sorted(tally.items()) if m == method}
        print(f"  {method}: {per_method[method]} bodies; {answers}")
    assert not problems, f"{len(problems)} wrong answers, first ones:\n" + "\n".join(problems[:20])

    # The fuzz must reach both the decoding and the servicers, and some calls must succeed.
    calls = len(jobs)
    assert undecodable >= 0.2 * calls, by_code
    assert calls - undecodable >= 0.2 * calls, by_code
    assert by_code["OK"] >= 0.01 * calls, by_code
    assert mid_stream >= 20, mid_stream
    # Every call was logged and counted by the interceptor, with the code the caller saw.
    miscounted = {}
    for method in methods:
        for code in codes:
            counted = _requests_counted(service_label, method, code) - counted_before[method, code]
            if counted != tally[method, code]:
                miscounted[method, code] = (counted, tally[method, code])
    assert not miscounted, miscounted
    await check_still_serving(host, channel, plan)


def _jobs_targets(jobs: list[Job]) -> list[Target]:
    seen: dict[str, Target] = {}
    for job in jobs:
        seen.setdefault(job.target.method.name, job.target)
    return list(seen.values())


async def check_still_serving(host, channel, plan: Plan) -> None:
    assert host.failed is None
    health = health_pb2_grpc.HealthStub(channel)
    for name in ["", plan.service.full_name]:
        answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, name
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = [a async for a in reflection.ServerReflectionInfo(iter([request]), timeout=10)]
    listed = {s.name for s in answers[0].list_services_response.service}
    assert plan.service.full_name in listed, listed
    list_models = channel.unary_unary(
        f"/{plan.service.full_name}/ListModels",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=bytes,
    )
    cls = message_factory.GetMessageClass(plan.service.methods_by_name["ListModels"].input_type)
    assert await list_models(cls(), timeout=10)


# -- the services ------------------------------------------------------------------------


async def served_models(channel, service: descriptor.ServiceDescriptor) -> list[str]:
    """The names ListModels gives, default first (seeds and strings use these: unlike the
    checkpoints' paths, they are the same on every run, and so are the bodies drawn)."""
    method = service.methods_by_name["ListModels"]
    response_cls = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{service.full_name}/ListModels",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    response = await call(message_factory.GetMessageClass(method.input_type)(), timeout=10)
    return [m.name for m in sorted(response.models, key=lambda m: not getattr(m, "default", False))]


# Bodies are decoded before any engine runs, so one engine is fuzzed: CTranslate2, the default,
# which also takes the most bodies that reach the model (150, against 8 on transformers).
@pytest.mark.parametrize("tiny_asr", ["ctranslate2"], indirect=True)
async def test_fuzz_asr(tiny_asr):
    host, channel = tiny_asr
    service = asr_pb2.DESCRIPTOR.services_by_name["AsrService"]
    (model,) = await served_models(channel, service)
    plan = asr_plan(model, host.settings.engine)
    await fuzz_service(host, channel, plan, f"asr ({host.settings.engine})")


async def test_fuzz_translate(tiny_translate):
    host, channel = tiny_translate
    service = translate_pb2.DESCRIPTOR.services_by_name["TranslateService"]
    model, text_model = await served_models(channel, service)
    plan = translate_plan(model, text_model)
    await fuzz_service(host, channel, plan, "translate")


@pytest.fixture
async def tts_voices_restored(tiny_tts):
    """The shared TTS server's voices as they were: voices the fuzz created are deleted."""
    _, channel = tiny_tts
    before = await _voice_names(channel)
    yield tiny_tts
    for name in await _voice_names(channel) - before:
        await channel.unary_unary(
            "/speechmesh.tts.v1.TtsService/DeleteVoice",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=bytes,
        )(tts_pb2.DeleteVoiceRequest(name=name), timeout=10)
    assert await _voice_names(channel) == before


async def _voice_names(channel) -> set[str]:
    list_voices = channel.unary_unary(
        "/speechmesh.tts.v1.TtsService/ListVoices",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=tts_pb2.ListVoicesResponse.FromString,
    )
    names: set[str] = set()
    token = ""
    while True:
        page = await list_voices(tts_pb2.ListVoicesRequest(page_token=token), timeout=10)
        names |= {v.name for v in page.voices}
        token = page.next_page_token
        if not token:
            return names


async def test_fuzz_tts(tts_voices_restored):
    host, channel = tts_voices_restored
    service = tts_pb2.DESCRIPTOR.services_by_name["TtsService"]
    model, preset_model = await served_models(channel, service)
    plan = tts_plan(model, preset_model)
    await fuzz_service(host, channel, plan, "tts")


# -- the answers to undecodable bodies, one by one ------------------------------------


async def test_undecodable_unary_body_names_the_message_type(tiny_translate):
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    _, channel = tiny_translate
    call = channel.unary_unary(
        "/speechmesh.translate.v1.TranslateService/TranslateText",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"\x0a\xff\xff", timeout=10)
    error = raised.value
    assert error.code() == INVALID
    assert error.details() == not_valid("speechmesh.translate.v1.TranslateTextRequest")
    status = rpc_status.from_call(error)
    assert status.message == error.details()
    (detail,) = status.details
    info = error_details_pb2.ErrorInfo()
    assert detail.Unpack(info)
    assert info.reason == "MALFORMED_REQUEST" and info.domain == "speechmesh.dev"
    assert info.metadata["message_type"] == "speechmesh.translate.v1.TranslateTextRequest"


async def test_bad_message_mid_stream_ends_the_stream_naming_its_position(tiny_tts):
    """The messages before the bad one are handled (the config is checked), the bad one
    ends the call with its position; the stream's later messages are never read."""
    _, channel = tiny_tts
    config = tts_pb2.StreamingSynthesizeRequest(
        streaming_config=tts_pb2.StreamingSynthesisConfig(
            config=tts_pb2.SynthesisConfig(preset_voice="default", model="no-such-model")
        )
    )
    flush = tts_pb2.StreamingSynthesizeRequest(control=tts_pb2.StreamingControl(action=1))
    call = channel.stream_stream(
        "/speechmesh.tts.v1.TtsService/StreamingSynthesize",
        request_serializer=None,
        response_deserializer=None,
    )
    good = tts_pb2.StreamingSynthesizeRequest(
        streaming_config=tts_pb2.StreamingSynthesisConfig(
            config=tts_pb2.SynthesisConfig(preset_voice="default")
        )
    ).SerializeToString()
    # Message 4 announces 5 bytes of text and carries 2.
    bodies = [good, flush.SerializeToString(), flush.SerializeToString(), b"\x12\x05ab", b"\x12"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call(iter(bodies), timeout=30):
            pass
    assert raised.value.code() == INVALID
    assert raised.value.details() == (
        "the request is not a valid speechmesh.tts.v1.StreamingSynthesizeRequest"
        " (message 4 of the stream)"
    )
    # The same stream with a config the servicer rejects: its answer, not the decoding's.
    bad_config = [config.SerializeToString(), b"\x12"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async for _ in call(iter(bad_config), timeout=30):
            pass
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in raised.value.details()
