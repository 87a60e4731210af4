"""The SDK's methods are written once (speechmesh.client._services) and run by two transports:
these tests drive both with scripted stub methods, no server: the steps, the typed errors,
concurrent pieces, streams, and the classes `bind` makes."""

from __future__ import annotations

import asyncio
import inspect
import threading

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2

from speechmesh.asr.v1 import asr_pb2
from speechmesh.client import AsyncClient, AudioFileError, Client
from speechmesh.client import _operations as ops
from speechmesh.client._common import RequestGuard, duration
from speechmesh.client._requests import audio_message, text_messages
from speechmesh.client.aio import AsyncAsrClient
from speechmesh.client.errors import (
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SpeechmeshError,
    Unavailable,
    from_rpc_error,
)
from speechmesh.client.sync import AsrClient
from speechmesh.client.types import FLUSH, FORCE_ENDPOINT, Segment, Transcript, Word
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.tts.v1 import tts_pb2

TARGET = "127.0.0.1:1"  # never called: every call goes to a scripted stub method


class FakeRpcError(grpc.RpcError):
    """A failed call as grpc raises it: a code, details, and trailing metadata that may carry
    a google.rpc.Status."""

    def __init__(self, code: grpc.StatusCode, details: str, status=None):
        self._code, self._details = code, details
        self._trailers = (
            (("grpc-status-details-bin", status.SerializeToString()),) if status else ()
        )

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


def packed(message) -> any_pb2.Any:
    found = any_pb2.Any()
    found.Pack(message)
    return found


def recognize_reply(text: str, start: float, end: float, language: str = "en"):
    return asr_pb2.RecognizeResponse(
        transcript=text,
        language_code=language,
        language_probability=0.9,
        model="tiny",
        segments=[
            asr_pb2.SpeechSegment(
                text=text,
                start_offset=duration(start),
                end_offset=duration(end),
            )
        ],
    )


# -- steps -----------------------------------------------------------------------------------


def test_a_run_feeds_each_step_its_result_or_its_error():
    def steps():
        first = yield "one"
        try:
            yield "two"
        except KeyError as error:
            return first, str(error)

    run = ops.Run(steps())
    assert run.step == "one"
    run.give(1)
    assert run.step == "two"
    run.fail(KeyError("gone"))
    assert run.step is None and run.value == (1, "'gone'")


def test_bind_makes_a_named_class_per_transport_with_the_written_docs_and_signature():
    assert AsrClient.__name__ == "AsrClient" and AsrClient.__module__ == "speechmesh.client.sync"
    assert AsyncAsrClient.__name__ == "AsyncAsrClient"
    assert AsrClient.__doc__ == AsyncAsrClient.__doc__ == "Speech recognition: `client.asr`."
    written = inspect.signature(ops.Service.models)
    assert inspect.signature(AsrClient.models) == written
    assert AsrClient.recognize.__qualname__ == "AsrClient.recognize"
    assert "Transcribes a whole recording" in AsrClient.recognize.__doc__
    assert inspect.iscoroutinefunction(AsyncAsrClient.recognize)
    assert inspect.isgeneratorfunction(AsrClient.stream)
    assert inspect.isasyncgenfunction(AsyncAsrClient.stream)
    returns = inspect.signature(AsyncAsrClient.stream).return_annotation
    assert returns == "AsyncIterator[StreamingResult | SpeechEvent]"


def test_a_unary_call_gets_the_deadline_and_metadata_and_a_typed_error():
    seen = []

    def list_models(request, timeout, metadata):
        seen.append((timeout, metadata))
        if len(seen) == 1:
            return asr_pb2.ListModelsResponse(models=[asr_pb2.ModelInfo(name="m")])
        status = status_pb2.Status(
            code=code_pb2.RESOURCE_EXHAUSTED,
            message="queue full",
            details=[
                packed(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2)))
            ],
        )
        raise FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", status)

    with Client(TARGET, timeout=7, api_key="k") as client:
        client.asr.stub.ListModels = list_models
        assert [m.name for m in client.asr.models()] == ["m"]
        with pytest.raises(ResourceExhausted) as caught:
            client.asr.models(timeout=None)
    assert caught.value.retry_after == 2.0 and caught.value.message == "queue full"
    assert seen[0] == (7, (("x-api-key", "k"),)) and seen[1][0] is None


def test_a_blocking_step_that_fails_raises_before_any_call(tmp_path):
    with Client(TARGET) as client:
        client.asr.stub.Recognize = lambda *args, **kwargs: pytest.fail("called")
        with pytest.raises(AudioFileError, match="no such file"):
            client.asr.recognize(tmp_path / "missing.wav")


class FakeHealth:
    """Health Check answers by service: SERVING, or an error to raise."""

    def __init__(self, answers: dict[str, object]):
        self.answers = answers

    def reply(self, request, metadata):
        service = dict(metadata)["x-speechmesh-service"]
        answer = self.answers[service]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def Check(self, request, timeout, metadata):  # the stub method's name
        return self.reply(request, metadata)


class AsyncFakeHealth(FakeHealth):
    async def Check(self, request, timeout, metadata):  # the stub method's name
        await asyncio.sleep(0)
        return self.reply(request, metadata)


HEALTH_ANSWERS = {
    "asr": health_pb2.HealthCheckResponse(status=1),
    "translate": FakeRpcError(grpc.StatusCode.UNAVAILABLE, "upstream connect error"),
    "tts": FakeRpcError(grpc.StatusCode.NOT_FOUND, "unknown service"),
}


def expected_health(found) -> None:
    assert found["asr"].serving
    assert (found["translate"].status, found["translate"].error) == (
        "UNAVAILABLE",
        "upstream connect error",
    )
    assert found["tts"].status == "SERVICE_UNKNOWN"


def test_health_in_both_transports():
    with Client(TARGET) as client:
        client._health = FakeHealth(HEALTH_ANSWERS)
        expected_health(client.health())
        client._health = FakeHealth(
            {"asr": FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all")}
        )
        with pytest.raises(Unavailable) as caught:
            client.health(["asr"])
        assert caught.value.connect_failed

    async def run():
        async with AsyncClient(TARGET) as client:
            client._health = AsyncFakeHealth(HEALTH_ANSWERS)
            return await client.health()

    expected_health(asyncio.run(run()))


# -- pieces of a long recording, a few at a time -------------------------------------------------


class FakeFuture:
    """A grpc.Future of a unary call, finished from a thread."""

    def __init__(self, work):
        self.callbacks = []
        self.outcome = None
        self.cancelled = False
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(work,), daemon=True).start()

    def _run(self, work):
        try:
            self.outcome = (True, work())
        except Exception as error:
            self.outcome = (False, error)
        self.done.set()
        for callback in self.callbacks:
            callback(self)

    def add_done_callback(self, callback):
        self.callbacks.append(callback)
        if self.done.is_set():
            callback(self)

    def result(self):
        self.done.wait()
        ok, value = self.outcome
        if not ok:
            raise value
        return value

    def cancel(self):
        self.cancelled = True


def recognize_piece(request) -> asr_pb2.RecognizeResponse:
    """One piece: language "xx" is refused; else a transcript of the piece's length."""
    if request.config.language_code == "xx":
        raise FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "unknown language 'xx'")
    seconds = len(request.audio) / 2 / 16000
    return recognize_reply(f"piece of {seconds:.1f} s", 0.1, seconds - 0.1)


def long_recording() -> bytes:
    """3.5 s of WAV: tone, silence, tone, silence, tone (cut at the quiet points)."""
    import io

    import numpy as np
    import soundfile as sf

    rate = 16000
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate).astype(np.float32)
    quiet = np.zeros(rate // 4, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate([tone, quiet, tone, quiet, tone]), rate, format="WAV")
    return buffer.getvalue()


def test_recognize_file_in_pieces_in_both_transports():
    audio = long_recording()
    calls = []

    class Method:
        def __call__(self, request, timeout, metadata):  # the single-call path
            return recognize_piece(request)

        def future(self, request, timeout, metadata):
            calls.append(request)
            return FakeFuture(lambda: recognize_piece(request))

    progress = []
    with Client(TARGET) as client:
        client.asr.stub.Recognize = Method()
        transcript = client.asr.recognize_file(
            audio, piece_seconds=1.0, concurrency=2, progress=lambda d, t: progress.append(d)
        )
        assert len(calls) == len(transcript.proto) >= 3
        assert all(r.config.audio_format.sample_rate_hertz == 16000 for r in calls)
        starts = [s.start for s in transcript.segments]
        assert starts == sorted(starts) and starts[-1] > 2.0
        assert progress[0] == 0.0 and progress[-1] == pytest.approx(3.5, abs=0.01)
        with pytest.raises(InvalidArgument, match="unknown language"):
            client.asr.recognize_file(audio, piece_seconds=1.0, language="xx")

    async def run():
        async def recognize(request, timeout, metadata):
            await asyncio.sleep(0.01)
            return recognize_piece(request)

        async with AsyncClient(TARGET) as client:
            client.asr.stub.Recognize = recognize
            found = await client.asr.recognize_file(audio, piece_seconds=1.0)
            with pytest.raises(InvalidArgument):  # the first error, not an ExceptionGroup
                await client.asr.recognize_file(audio, piece_seconds=1.0, language="xx")
            return found

    assert [s.text for s in asyncio.run(run()).segments] == [s.text for s in transcript.segments]


# -- streams -------------------------------------------------------------------------------------


class FakeStreamCall:
    """A bidirectional call: reads every request, then answers one response per request after
    the first (a RecognizeResponse-like result, or a speech event for FORCE_ENDPOINT)."""

    def __init__(self, requests):
        self.requests = requests
        self.cancelled = False
        self.seen = []

    def cancel(self):
        self.cancelled = True

    def __iter__(self):
        for request in self.requests:
            self.seen.append(request)
            if self.cancelled:
                raise FakeRpcError(grpc.StatusCode.CANCELLED, "cancelled")
            if request.HasField("control"):
                event = asr_pb2.SpeechActivityEvent(
                    type=asr_pb2.SpeechActivityEvent.TYPE_SPEECH_END
                )
                yield asr_pb2.StreamingRecognizeResponse(speech_event=event)
            elif request.audio:
                result = asr_pb2.StreamingRecognitionResult(transcript=f"{len(request.audio)}")
                yield asr_pb2.StreamingRecognizeResponse(result=result)


def test_a_stream_is_lazy_yields_results_and_reraises_the_source_s_exception():
    started = []

    def method(requests, timeout, metadata):
        started.append(FakeStreamCall(requests))
        return started[-1]

    with Client(TARGET) as client:
        client.asr.stub.StreamingRecognize = method
        stream = client.asr.stream([b"\0" * 4, FORCE_ENDPOINT, b"\0" * 8], language="en")
        assert not started  # nothing happens before the first item is asked for
        events = list(stream)
        assert [type(e).__name__ for e in events] == [
            "StreamingResult",
            "SpeechEvent",
            "StreamingResult",
        ]
        assert [events[0].text, events[1].type, events[2].text] == ["4", "speech_end", "8"]
        first = started[0].seen[0].streaming_config
        assert first.config.language_code == "en" and first.interim_results
        assert started[0].cancelled  # the call is always cancelled (closed) at the end

        def broken():
            yield b"\0" * 4
            raise RuntimeError("the microphone fell off")

        with pytest.raises(RuntimeError, match="microphone fell off"):
            list(client.asr.stream(broken()))


def test_an_async_stream_takes_sync_and_async_sources():
    class AsyncCall:
        def __init__(self, requests):
            self.requests = requests

        def cancel(self):
            pass

        async def __aiter__(self):
            async for request in self.requests:
                if request.audio:
                    result = asr_pb2.StreamingRecognitionResult(transcript=f"{len(request.audio)}")
                    yield asr_pb2.StreamingRecognizeResponse(result=result)

    async def chunks():
        for size in (2, 6):
            yield b"\0" * size

    async def run():
        async with AsyncClient(TARGET) as client:
            client.asr.stub.StreamingRecognize = lambda requests, **_: AsyncCall(requests)
            from_async = [e.text async for e in client.asr.stream(chunks())]
            from_sync = [e.text async for e in client.asr.stream([b"\0" * 4])]
            return from_async, from_sync

    assert asyncio.run(run()) == (["2", "6"], ["4"])


def test_request_guard_reraises_the_source_s_error_else_the_typed_one():
    guard = RequestGuard("first", lambda item: item)
    with pytest.raises(NotFound):
        guard.reraise(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no"))
    guard.fail(ValueError("source"))
    with pytest.raises(ValueError, match="source"):
        guard.reraise(FakeRpcError(grpc.StatusCode.CANCELLED, "cancelled"))
    with pytest.raises(ValueError, match="source"):
        guard.raise_error()


# -- requests and results --------------------------------------------------------------------


def test_stream_messages_after_the_first():
    asr = audio_message(asr_pb2.StreamingRecognizeRequest, FORCE_ENDPOINT, "linear16")
    assert asr.control.action == asr_pb2.StreamingControl.ACTION_FORCE_ENDPOINT
    translate = audio_message(tr.StreamingTranslateSpeechRequest, FORCE_ENDPOINT, None)
    assert translate.control.action == tr.StreamingControl.ACTION_FORCE_ENDPOINT
    assert audio_message(tr.StreamingTranslateSpeechRequest, b"ab", None).audio == b"ab"
    assert text_messages(FLUSH)[0].control.action == tts_pb2.StreamingControl.ACTION_FLUSH
    assert [m.text for m in text_messages("x" * 12000)] == ["x" * 5000, "x" * 5000, "x" * 2000]
    with pytest.raises(TypeError, match="must be str"):
        text_messages(3)


def test_transcripts_of_pieces_join_into_one():
    def piece(text, start, end, language, probability):
        word = Word(text, start, end, 1.0)
        return Transcript(
            text, [Segment(text, start, end, 1.0, [word])], language, probability, end, "m"
        )

    joined = Transcript.joined(
        [(0.0, 10.0), (10.0, 12.0)],
        [piece("hello", 1.0, 2.0, "en", 0.8), piece("salut", 0.5, 1.0, "fr", 0.9)],
        12.0,
    )
    assert joined.text == "hello salut" and joined.duration == 12.0
    assert [(s.start, s.end) for s in joined.segments] == [(1.0, 2.0), (10.5, 11.0)]
    assert joined.words[1].start == 10.5
    assert (joined.language, joined.language_probability) == ("en", 0.8)  # spoken longest
    assert joined.model == "m" and len(joined.proto) == 2


def test_errors_are_typed_by_code_with_their_details():
    status = status_pb2.Status(
        code=code_pb2.NOT_FOUND,
        message="no voice named bob",
        details=[
            packed(
                error_details_pb2.ResourceInfo(resource_type="voice", resource_name="voices/bob")
            ),
            packed(error_details_pb2.ErrorInfo(reason="VOICE_NOT_FOUND")),
            packed(
                error_details_pb2.BadRequest(
                    field_violations=[{"field": "config.voice", "description": "unknown"}]
                )
            ),
        ],
    )
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "no voice named bob", status))
    assert isinstance(error, NotFound) and error.code == grpc.StatusCode.NOT_FOUND
    assert error.resource.resource_name == "voices/bob" and error.reason == "VOICE_NOT_FOUND"
    assert error.fields == ["config.voice"] and error.retry_after is None
    plain = from_rpc_error(FakeRpcError(grpc.StatusCode.DATA_LOSS, "lost"))
    assert type(plain) is SpeechmeshError and plain.code == grpc.StatusCode.DATA_LOSS
    assert str(plain) == "DATA_LOSS: lost"
