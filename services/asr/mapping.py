"""RecognitionConfig -> DecodeOptions and Transcript -> RecognizeResponse: the mapping between
the ASR protos and the domain that the servicer and the BatchRecognize jobs share."""

from __future__ import annotations

from speechmesh.asr.engines.base import DecodeOptions, InvalidOptionError, Segment, Word
from speechmesh.asr.models import AsrModel
from speechmesh.asr.recognizer import Transcript
from speechmesh.asr.streaming import StreamSettings
from speechmesh.asr.v1 import asr_pb2
from speechmesh.runtime import errors
from speechmesh.runtime.proto_mapping import duration, raw_format, seconds_option

TASKS = {
    asr_pb2.RECOGNITION_TASK_UNSPECIFIED: "transcribe",
    asr_pb2.RECOGNITION_TASK_TRANSCRIBE: "transcribe",
    asr_pb2.RECOGNITION_TASK_TRANSLATE: "translate",
}
#: Engine option (InvalidOptionError.option) -> its field in a RecognitionConfig.
OPTION_FIELDS = {
    "language": "language_code",
    "task": "task",
    "word_timestamps": "enable_word_time_offsets",
    "prompt": "prompt",
    "beam_size": "beam_size",
    "temperature": "temperature",
    "text_normalization": "disable_text_normalization",
}
EMOTIONS = {
    "": asr_pb2.EMOTION_UNSPECIFIED,
    "neutral": asr_pb2.EMOTION_NEUTRAL,
    "happy": asr_pb2.EMOTION_HAPPY,
    "sad": asr_pb2.EMOTION_SAD,
    "angry": asr_pb2.EMOTION_ANGRY,
    "fearful": asr_pb2.EMOTION_FEARFUL,
    "disgusted": asr_pb2.EMOTION_DISGUSTED,
    "surprised": asr_pb2.EMOTION_SURPRISED,
}
AUDIO_EVENTS = {
    "music": asr_pb2.AUDIO_EVENT_TYPE_MUSIC,
    "applause": asr_pb2.AUDIO_EVENT_TYPE_APPLAUSE,
    "laughter": asr_pb2.AUDIO_EVENT_TYPE_LAUGHTER,
    "crying": asr_pb2.AUDIO_EVENT_TYPE_CRYING,
    "coughing": asr_pb2.AUDIO_EVENT_TYPE_COUGHING,
    "sneezing": asr_pb2.AUDIO_EVENT_TYPE_SNEEZING,
    "breathing": asr_pb2.AUDIO_EVENT_TYPE_BREATHING,
}
MAX_HOTWORDS = 50
MAX_HOTWORD_CHARS = 50


def decode_options(model: AsrModel, config, field: str = "config") -> DecodeOptions:
    """Validates a RecognitionConfig; `field` is its path in the request, for error details."""
    beam_size = config.beam_size or 1
    if not 1 <= beam_size <= 8:
        raise errors.invalid_argument(f"{field}.beam_size", f"is {config.beam_size}; use 1 to 8")
    if not 0.0 <= config.temperature <= 1.0:
        raise errors.invalid_argument(
            f"{field}.temperature", f"is {config.temperature}; use 0.0 to 1.0"
        )
    if config.task not in TASKS:
        raise errors.invalid_argument(f"{field}.task", f"unknown value {config.task}")
    if len(config.hotwords) > MAX_HOTWORDS:
        raise errors.invalid_argument(
            f"{field}.hotwords", f"has {len(config.hotwords)} entries; at most {MAX_HOTWORDS}"
        )
    for word in config.hotwords:
        if len(word) > MAX_HOTWORD_CHARS:
            raise errors.invalid_argument(
                f"{field}.hotwords",
                f"{word[:20]!r}... is longer than {MAX_HOTWORD_CHARS} characters",
            )
    prompt = " ".join(p for p in (config.prompt.strip(), ", ".join(config.hotwords)) if p)
    try:
        return model.engine.options(
            language=config.language_code,
            task=TASKS[config.task],
            word_timestamps=config.enable_word_time_offsets,
            prompt=prompt,
            beam_size=beam_size,
            temperature=config.temperature,
            # OpenAI's form has no such field: the written form.
            text_normalization=not getattr(config, "disable_text_normalization", False),
        )
    except InvalidOptionError as error:
        raise errors.invalid_argument(
            f"{field}.{OPTION_FIELDS[error.option]}", str(error)
        ) from None


def word_protos(words: list[Word]) -> list[asr_pb2.WordInfo]:
    return [
        asr_pb2.WordInfo(
            word=w.text,
            start_offset=duration(w.start),
            end_offset=duration(w.end),
            confidence=w.probability,
        )
        for w in words
    ]


def segment_proto(segment: Segment) -> asr_pb2.SpeechSegment:
    return asr_pb2.SpeechSegment(
        text=segment.text,
        start_offset=duration(segment.start),
        end_offset=duration(segment.end),
        words=word_protos(segment.words),
        confidence=segment.probability,
        emotion=EMOTIONS.get(segment.emotion, asr_pb2.EMOTION_UNSPECIFIED),
    )


def audio_event_protos(spans: list[tuple[str, float, float]]) -> list[asr_pb2.AudioEvent]:
    """(event, start, end) spans as AudioEvents, in time order; one event heard in adjacent
    spans is one AudioEvent over them."""
    merged: list[list] = []
    for event, start, end in sorted(spans, key=lambda span: (span[1], span[0])):
        last = next((m for m in reversed(merged) if m[0] == event), None)
        if last is not None and start <= last[2] + 0.01:
            last[2] = max(last[2], end)
        else:
            merged.append([event, start, end])
    return [
        asr_pb2.AudioEvent(
            type=AUDIO_EVENTS[event], start_offset=duration(start), end_offset=duration(end)
        )
        for event, start, end in merged
        if event in AUDIO_EVENTS
    ]


def recognize_response(
    request_id: str, model: AsrModel, transcript: Transcript
) -> asr_pb2.RecognizeResponse:
    return asr_pb2.RecognizeResponse(
        request_id=request_id,
        segments=[segment_proto(s) for s in transcript.segments],
        transcript=transcript.text,
        language_code=transcript.language,
        language_probability=transcript.language_probability,
        audio_duration=duration(transcript.duration),
        model=model.name,
        audio_events=audio_event_protos(transcript.events),
    )


def stream_settings(model: AsrModel, cfg) -> StreamSettings:
    """A StreamingRecognitionConfig checked into a stream's settings (StreamingRecognize and
    the realtime WebSocket sessions both start from one); errors name its fields."""
    window = model.engine.window_seconds
    threshold = cfg.vad_threshold or 0.5
    if not 0.05 <= threshold <= 0.95:
        raise errors.invalid_argument(
            "streaming_config.vad_threshold", f"is {cfg.vad_threshold}; use 0.05 to 0.95"
        )
    return StreamSettings(
        options=decode_options(model, cfg.config, "streaming_config.config"),
        raw=raw_format(cfg.config.audio_format, "streaming_config.config.audio_format"),
        interim_results=cfg.interim_results,
        single_utterance=cfg.single_utterance,
        voice_activity_events=cfg.enable_voice_activity_events,
        endpoint_silence=seconds_option(
            cfg.endpoint_silence, 0.5, 0.1, 5.0, "streaming_config.endpoint_silence"
        ),
        vad_threshold=threshold,
        max_utterance=seconds_option(
            cfg.max_utterance_duration,
            window,
            1.0,
            window,
            "streaming_config.max_utterance_duration",
        ),
        interim_interval=seconds_option(
            cfg.interim_interval, 0.5, 0.2, 5.0, "streaming_config.interim_interval"
        ),
        sentence_pause=seconds_option(
            cfg.sentence_pause, 1.5, 0.0, 5.0, "streaming_config.sentence_pause"
        ),
    )


# -- domain -> responses ---------------------------------------------------
