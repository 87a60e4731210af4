"""SynthesisConfig -> SynthesisRequest and spoken sentences -> protos: the mapping the servicer
and the BatchSynthesize jobs share."""

from __future__ import annotations

from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import duration, output_format, raw_format
from speechmesh.tts.resolver import Reference, VoiceRequest
from speechmesh.tts.speaker import SynthesisRequest
from speechmesh.tts.synthesizer import Speech, Style, new_seed
from speechmesh.tts.v1 import tts_pb2


def synthesis_request(config: tts_pb2.SynthesisConfig, at: str) -> SynthesisRequest:
    """A SynthesisConfig as the domain takes it; `at` is its path in the request."""
    encoding, rate = output_format(config.output_audio_config, at + "output_audio_config")
    source = config.WhichOneof("voice_source")
    reference = None
    if source == "reference_audio":
        ref = config.reference_audio
        raw = raw_format(ref.audio_format, at + "reference_audio.audio_format")
        reference = Reference(ref.audio, ref.transcript, raw, ref.language_code)
    voice = VoiceRequest(
        model=config.model,
        language=config.language_code,
        voice=config.voice if source == "voice" else None,
        reference=reference,
        preset=config.preset_voice if source == "preset_voice" else None,
    )
    return SynthesisRequest(
        voice,
        style(config, at),
        encoding,
        rate,
        at=at,
        output_field=at + "output_audio_config",
    )


def style(config: tts_pb2.SynthesisConfig, at: str) -> Style:
    speed = config.speed or 1.0
    if not 0.5 <= speed <= 2.0:
        raise errors.invalid_argument(at + "speed", f"is {config.speed:g}; use 0.5 to 2.0")
    temperature = None
    if config.HasField("temperature"):
        temperature = config.temperature
        if not 0.0 <= temperature <= 2.0:
            raise errors.invalid_argument(at + "temperature", f"is {temperature:g}; use 0.0 to 2.0")
    return Style(temperature, config.seed or new_seed(), speed)


def sentence_protos(speech: Speech) -> list[tts_pb2.SynthesizedSentence]:
    """The sentences of `speech`, with where each is spoken."""
    return [
        tts_pb2.SynthesizedSentence(
            text=s.text, start_offset=duration(s.start), end_offset=duration(s.end)
        )
        for s in speech.sentences
    ]
