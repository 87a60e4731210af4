"""Request messages from keyword options, for both clients: audio formats in and out, the
configs of recognition, translation and synthesis (and of their streams), the messages of
streams after the first, voice names. What each method sends is in _services.py."""

from __future__ import annotations

from typing import Any

from speechmesh.asr.v1 import asr_pb2
from speechmesh.audio.v1 import audio_pb2
from speechmesh.client._common import FLUSH, FORCE_ENDPOINT, duration, split_text
from speechmesh.client.audio import array_to_bytes
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.tts.v1 import tts_pb2

INPUT_ENCODINGS = {
    "linear16": audio_pb2.AUDIO_ENCODING_LINEAR16,
    "pcm": audio_pb2.AUDIO_ENCODING_LINEAR16,
    "float32": audio_pb2.AUDIO_ENCODING_FLOAT32,
    "mulaw": audio_pb2.AUDIO_ENCODING_MULAW,
    "alaw": audio_pb2.AUDIO_ENCODING_ALAW,
}
OUTPUT_ENCODINGS = {
    "wav": audio_pb2.OUTPUT_ENCODING_WAV,
    "flac": audio_pb2.OUTPUT_ENCODING_FLAC,
    "ogg": audio_pb2.OUTPUT_ENCODING_OGG_OPUS,
    "ogg_opus": audio_pb2.OUTPUT_ENCODING_OGG_OPUS,
    "opus": audio_pb2.OUTPUT_ENCODING_OGG_OPUS,
    "mp3": audio_pb2.OUTPUT_ENCODING_MP3,
    "pcm": audio_pb2.OUTPUT_ENCODING_PCM,
}


def audio_format(
    encoding: str | None, sample_rate: int | None, channels: int = 1
) -> audio_pb2.AudioFormat | None:
    """None (detect a container) unless a raw encoding is named."""
    if encoding is None or encoding in ("wav", "auto", "container"):
        return None
    if encoding not in INPUT_ENCODINGS:
        raise ValueError(
            f"unknown input encoding {encoding!r}; use one of {', '.join(INPUT_ENCODINGS)}"
            " (or None to detect a container)"
        )
    if not sample_rate:
        raise ValueError(f"raw {encoding} audio needs sample_rate")
    return audio_pb2.AudioFormat(
        encoding=INPUT_ENCODINGS[encoding], sample_rate_hertz=sample_rate, channel_count=channels
    )


def output_config(
    format: str | None, sample_rate: int | None
) -> audio_pb2.OutputAudioConfig | None:
    if not format and not sample_rate:
        return None
    name = (format or "wav").lower()
    if name not in OUTPUT_ENCODINGS:
        raise ValueError(f"unknown audio format {format!r}; use one of wav, flac, ogg, mp3, pcm")
    return audio_pb2.OutputAudioConfig(
        encoding=OUTPUT_ENCODINGS[name], sample_rate_hertz=sample_rate or 0
    )


def normalized_format(format: str | None) -> str:
    name = (format or "wav").lower()
    return {"ogg_opus": "ogg", "opus": "ogg"}.get(name, name)


def audio_message(request_type: type, chunk: Any, encoding: str | None) -> Any:
    """A message after the first of an audio stream (ASR's or translation's `request_type`):
    the chunk's bytes, or the control that ends the utterance or segment for FORCE_ENDPOINT."""
    if chunk is FORCE_ENDPOINT:
        return request_type(control={"action": "ACTION_FORCE_ENDPOINT"})
    return request_type(audio=array_to_bytes(chunk, encoding))


def voice_name(name: str) -> str:
    """The resource name of a voice: "alice" or "voices/alice" -> "voices/alice"."""
    name = name.strip()
    return name if name.startswith("voices/") else f"voices/{name}"


# -- ASR -------------------------------------------------------------------------------------


def recognition_config(
    *,
    language: str | None = None,
    model: str | None = None,
    translate: bool = False,
    words: bool = False,
    prompt: str | None = None,
    hotwords: list[str] | None = None,
    beam_size: int = 0,
    temperature: float = 0.0,
    encoding: str | None = None,
    sample_rate: int | None = None,
    channels: int = 1,
) -> asr_pb2.RecognitionConfig:
    """The RecognitionConfig of the options of `recognize` (see there)."""
    return asr_pb2.RecognitionConfig(
        audio_format=audio_format(encoding, sample_rate, channels),
        model=model or "",
        language_code=language or "",
        task=asr_pb2.RECOGNITION_TASK_TRANSLATE if translate else 0,
        enable_word_time_offsets=words,
        prompt=prompt or "",
        hotwords=hotwords or [],
        beam_size=beam_size,
        temperature=temperature,
    )


def streaming_recognition_config(
    *,
    request_id: str = "",
    interim_results: bool = True,
    single_utterance: bool = False,
    vad_events: bool = False,
    endpoint_silence: float | None = None,
    vad_threshold: float | None = None,
    max_utterance: float | None = None,
    interim_interval: float | None = None,
    **config,
) -> asr_pb2.StreamingRecognizeRequest:
    """The first message of a recognition stream; `config`: the options of `recognize`."""
    return asr_pb2.StreamingRecognizeRequest(
        streaming_config=asr_pb2.StreamingRecognitionConfig(
            request_id=request_id,
            config=recognition_config(**config),
            interim_results=interim_results,
            single_utterance=single_utterance,
            enable_voice_activity_events=vad_events,
            endpoint_silence=duration(endpoint_silence),
            vad_threshold=vad_threshold or 0.0,
            max_utterance_duration=duration(max_utterance),
            interim_interval=duration(interim_interval),
        )
    )


# -- translation -----------------------------------------------------------------------------


def speech_translation_config(
    *,
    to: str,
    source: str | None = None,
    text: bool = True,
    speech: bool = False,
    source_transcript: bool = False,
    format: str | None = None,
    output_sample_rate: int | None = None,
    voice: str | None = None,
    model: str | None = None,
    encoding: str | None = None,
    sample_rate: int | None = None,
    channels: int = 1,
) -> tr.SpeechTranslationConfig:
    """The SpeechTranslationConfig of the options of `speech` (see there)."""
    modalities = ([tr.MODALITY_TEXT] if text else []) + ([tr.MODALITY_SPEECH] if speech else [])
    if not modalities:
        raise ValueError("ask for text=True, speech=True or both")
    return tr.SpeechTranslationConfig(
        audio_format=audio_format(encoding, sample_rate, channels),
        model=model or "",
        source_language_code=source or "",
        target_language_code=to,
        output_modalities=modalities,
        enable_source_transcript=source_transcript,
        output_audio_config=output_config(format, output_sample_rate) if speech else None,
        voice=voice or "",
    )


def streaming_translation_config(
    *,
    request_id: str = "",
    endpoint_silence: float | None = None,
    vad_threshold: float | None = None,
    max_segment: float | None = None,
    **config,
) -> tr.StreamingTranslateSpeechRequest:
    """The first message of a speech translation stream; `config`: the options of `speech`."""
    return tr.StreamingTranslateSpeechRequest(
        streaming_config=tr.StreamingSpeechTranslationConfig(
            request_id=request_id,
            config=speech_translation_config(**config),
            endpoint_silence=duration(endpoint_silence),
            vad_threshold=vad_threshold or 0.0,
            max_segment_duration=duration(max_segment),
        )
    )


# -- TTS -------------------------------------------------------------------------------------


def synthesis_config(
    *,
    voice: str | None = None,
    preset_voice: str | None = None,
    reference_audio: bytes | None = None,
    reference_transcript: str | None = None,
    reference_language: str | None = None,
    language: str | None = None,
    model: str | None = None,
    format: str | None = None,
    sample_rate: int | None = None,
    speed: float = 0.0,
    temperature: float | None = None,
    seed: int = 0,
) -> tts_pb2.SynthesisConfig:
    """The SynthesisConfig of the options of `synthesize` (see there)."""
    chosen = [x for x in (voice, preset_voice, reference_audio) if x]
    if len(chosen) > 1:
        raise ValueError("give one of voice, preset_voice and reference_audio")
    config = tts_pb2.SynthesisConfig(
        model=model or "",
        language_code=language or "",
        output_audio_config=output_config(format, sample_rate),
        speed=speed or 0.0,
        seed=seed or 0,
    )
    if temperature is not None:
        config.temperature = temperature
    if voice:
        config.voice = voice_name(voice)
    elif preset_voice:
        config.preset_voice = preset_voice
    elif reference_audio:
        if not reference_transcript:
            raise ValueError("reference_audio needs reference_transcript: the words it speaks")
        config.reference_audio.CopyFrom(
            tts_pb2.ReferenceAudio(
                audio=reference_audio,
                transcript=reference_transcript,
                language_code=reference_language or "",
            )
        )
    return config


def text_messages(piece: Any) -> list[tts_pb2.StreamingSynthesizeRequest]:
    """The messages after the first of a synthesis stream for one item: a text piece (in
    pieces a message may carry), or the control that speaks the buffered text for FLUSH."""
    if piece is FLUSH:
        action = tts_pb2.StreamingControl.ACTION_FLUSH
        return [tts_pb2.StreamingSynthesizeRequest(control=tts_pb2.StreamingControl(action=action))]
    if not isinstance(piece, str):
        raise TypeError(f"text pieces must be str (or FLUSH), not {type(piece).__name__}")
    return [tts_pb2.StreamingSynthesizeRequest(text=part) for part in split_text(piece)]
