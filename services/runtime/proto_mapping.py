"""Mapping every servicer shares between shared proto types and the domain."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from speechmesh.audio.v1 import audio_pb2
from speechmesh.dsp.audio import AudioError, RawFormat, content_type, encode_audio
from speechmesh.inference.model_state import state_proto
from speechmesh.runtime import errors
from speechmesh.runtime.interceptor import call_stats

MAX_REQUEST_ID = 128

_RAW_ENCODINGS = {
    audio_pb2.AUDIO_ENCODING_LINEAR16: "linear16",
    audio_pb2.AUDIO_ENCODING_FLOAT32: "float32",
    audio_pb2.AUDIO_ENCODING_MULAW: "mulaw",
    audio_pb2.AUDIO_ENCODING_ALAW: "alaw",
}


_OUTPUT_ENCODINGS = {
    audio_pb2.OUTPUT_ENCODING_UNSPECIFIED: "wav",
    audio_pb2.OUTPUT_ENCODING_WAV: "wav",
    audio_pb2.OUTPUT_ENCODING_FLAC: "flac",
    audio_pb2.OUTPUT_ENCODING_OGG_OPUS: "ogg_opus",
    audio_pb2.OUTPUT_ENCODING_MP3: "mp3",
    audio_pb2.OUTPUT_ENCODING_PCM: "pcm",
}


def check_request_id(request_id: str, field: str = "request_id") -> None:
    if len(request_id) > MAX_REQUEST_ID:
        raise errors.invalid_argument(
            field, f"is {len(request_id)} characters; at most {MAX_REQUEST_ID}"
        )


def start_call(request_id: str, field: str = "request_id") -> None:
    """Checks a request's `request_id` and records it for the call's log event."""
    check_request_id(request_id, field)
    call_stats().request_id = request_id


def raw_format(fmt: audio_pb2.AudioFormat, field: str) -> RawFormat | None:
    """The raw format an AudioFormat describes; None when a container is to be detected."""
    if fmt.encoding == audio_pb2.AUDIO_ENCODING_UNSPECIFIED:
        return None
    if fmt.encoding not in _RAW_ENCODINGS:
        raise errors.invalid_argument(f"{field}.encoding", f"unknown value {fmt.encoding}")
    if fmt.sample_rate_hertz == 0:
        raise errors.invalid_argument(
            f"{field}.sample_rate_hertz", "is required for raw audio (8000 to 192000)"
        )
    raw = RawFormat(_RAW_ENCODINGS[fmt.encoding], fmt.sample_rate_hertz, fmt.channel_count or 1)
    try:
        raw.validate()
    except ValueError as error:
        name = "channel_count" if "channel" in str(error) else "sample_rate_hertz"
        raise errors.invalid_argument(f"{field}.{name}", str(error)) from None
    return raw


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """POSIX seconds as a Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds as a Duration, to the millisecond (finer digits are noise here)."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1000) * 1_000_000)
    return value


def seconds_option(
    value: duration_pb2.Duration, default: float, low: float, high: float, field: str
) -> float:
    """A Duration option in seconds: `default` when unset, INVALID_ARGUMENT outside [low, high]."""
    if value.seconds == 0 and value.nanos == 0:
        return default
    seconds = value.ToNanoseconds() / 1e9
    if not low <= seconds <= high:
        raise errors.invalid_argument(field, f"is {seconds:g} s; use {low:g} to {high:g} s")
    return seconds


def output_format(config: audio_pb2.OutputAudioConfig, field: str) -> tuple[str, int | None]:
    """(encoding, sample rate or None for the model's own) an OutputAudioConfig asks for."""
    if config.encoding not in _OUTPUT_ENCODINGS:
        raise errors.invalid_argument(f"{field}.encoding", f"unknown value {config.encoding}")
    rate = config.sample_rate_hertz
    if rate and not 8000 <= rate <= 192000:
        raise errors.invalid_argument(
            f"{field}.sample_rate_hertz", f"is {rate}; use 8000 to 192000, or 0 for the model's"
        )
    return _OUTPUT_ENCODINGS[config.encoding], rate or None


def encode_output(
    samples, rate: int, encoding: str, output_rate: int | None, field: str
) -> tuple[bytes, int]:
    """Encoded audio and its sample rate; an encoding that cannot take the rate is
    INVALID_ARGUMENT naming `field`.sample_rate_hertz."""
    try:
        data = encode_audio(samples, rate, encoding, output_rate)
    except AudioError as error:
        raise errors.invalid_argument(f"{field}.sample_rate_hertz", str(error)) from None
    return data, 48000 if encoding == "ogg_opus" else output_rate or rate


def body_content_type(encoding: str, rate: int) -> str:
    """HttpBody content type of audio: raw PCM carries its rate, as the contracts say."""
    return f"audio/pcm;rate={rate}" if encoding == "pcm" else content_type(encoding)


def model_info(info_class, model, default):
    """A service's ModelInfo (`info_class`) with the fields every service's has alike (1-10):
    name, source, state, error and whether `model` is the `default`; once its engine is loaded,
    the engine family, random_weights, device, dtype and memory_bytes too."""
    info = info_class(
        name=model.name,
        source=model.source,
        state=state_proto(model.state),
        default=model is default,
        error=model.error,
    )
    engine = model.engine
    if engine is not None:
        info.engine = engine.family
        info.random_weights = engine.random_weights
        info.device = engine.device
        info.dtype = engine.dtype
        info.memory_bytes = engine.memory_bytes
    return info
