"""The blocking client: `Client(...)` with `.asr`, `.translate` and `.tts`."""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.client import _requests as req
from speechmesh.client._common import (
    DEFAULT,
    PIECE_SECONDS,
    RequestGuard,
    merge_transcripts,
    split_text,
)
from speechmesh.client._connection import SERVICE_HEADER, SERVICES, Connection
from speechmesh.client.audio import (
    CHUNK_SECONDS,
    STREAM_RATE,
    decode,
    file_chunks,
    quiet_cuts,
    read_bytes,
    to_linear16,
)
from speechmesh.client.errors import SpeechmeshError, Unavailable, from_rpc_error
from speechmesh.client.types import (
    AudioChunk,
    Health,
    ModelInfo,
    ModelLanguages,
    Speech,
    SpeechEvent,
    SpeechTranslation,
    SpeechTranslationEvent,
    StreamingResult,
    SynthesisSummary,
    Transcript,
    Translation,
    Voice,
    seconds,
)
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

__all__ = ["AsrClient", "Client", "SynthesisStream", "TranslateClient", "TtsClient"]

ProgressCallback = Callable[[float, float], None]


class Client:
    """A blocking client of speechmesh over one channel, to the gateway or to one service.

    Args:
        target: "host:port" (or http:// / https:// URL) of the gateway or a service. Default:
            $SPEECHMESH_TARGET, else localhost:8080 (the gateway of `make run`).
        tls: use TLS (implied by an https:// target or `ca_cert`).
        api_key: sent as `x-api-key` (default $SPEECHMESH_API_KEY).
        token: a bearer token (JWT), sent as `authorization: Bearer ...` (default
            $SPEECHMESH_TOKEN).
        timeout: deadline of unary calls in seconds (None: none). Per-call `timeout=` wins.
        stream_timeout: deadline of streaming calls (default None: none).
        retries: times a unary call is retried when the service answers UNAVAILABLE (gRPC
            retry policy with backoff; streams are never retried). 0: off.
        ca_cert: PEM root certificate(s) (path or bytes) to trust, e.g. a self-signed one.
        tls_server_name: the name to check the server's certificate against, when it differs
            from the target's host.
        keepalive: seconds between HTTP/2 keepalive pings on a busy connection.
        metadata: extra metadata sent with every call.
        options: extra gRPC channel options.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        tls: bool | None = None,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float | None = 300.0,
        stream_timeout: float | None = None,
        retries: int = 2,
        ca_cert: str | os.PathLike | bytes | None = None,
        tls_server_name: str | None = None,
        keepalive: float = 30.0,
        metadata: dict[str, str] | None = None,
        options: list[tuple[str, Any]] | None = None,
    ):
        self.connection = Connection.build(
            target,
            tls=tls,
            api_key=api_key,
            token=token,
            retries=retries,
            ca_cert=ca_cert,
            tls_server_name=tls_server_name,
            keepalive_s=keepalive,
            metadata=metadata,
            options=options,
        )
        self.target = self.connection.target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.channel = self.connection.sync_channel()
        self.asr = AsrClient(self)
        self.translate = TranslateClient(self)
        self.tts = TtsClient(self)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    # -- calls -----------------------------------------------------------------------------

    def _metadata(self, extra=()) -> tuple:
        return (*self.connection.metadata, *extra)

    def _unary(self, method, request, timeout=DEFAULT, extra_metadata=()):
        try:
            return method(
                request,
                timeout=self.timeout if timeout is DEFAULT else timeout,
                metadata=self._metadata(extra_metadata),
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    def _stream(self, method, guard: RequestGuard, items: Iterable, timeout=DEFAULT) -> Iterator:
        call = method(
            guard.sync(items),
            timeout=self.stream_timeout if timeout is DEFAULT else timeout,
            metadata=self._metadata(),
        )
        guard.call = call
        try:
            yield from call
        except grpc.RpcError as error:
            if guard.error is not None:
                raise guard.error from None
            raise from_rpc_error(error) from error
        finally:
            call.cancel()
        if guard.error is not None:
            raise guard.error

    # -- every service ---------------------------------------------------------------------

    def health(self, services: Iterable[str] = tuple(SERVICES), timeout: float = 5.0):
        """{service: Health} for "asr", "translate", "tts" (grpc.health.v1 through the
        gateway, which routes each check by the x-speechmesh-service header). Raises
        Unavailable when nothing answers at the target at all."""
        found: dict[str, Health] = {}
        for name in services:
            request = health_pb2.HealthCheckRequest(service=SERVICES[name].full_name)
            try:
                reply = self._unary(self._health.Check, request, timeout, ((SERVICE_HEADER, name),))
            except Unavailable as error:
                if error.connect_failed:
                    raise
                found[name] = Health(name, "UNAVAILABLE", error.message)
            except SpeechmeshError as error:
                status = "SERVICE_UNKNOWN" if error.code.name == "NOT_FOUND" else error.code.name
                found[name] = Health(name, status, error.message)
            else:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                found[name] = Health(name, status)
        return found

    def models(self) -> list[ModelInfo]:
        """The models of every service, ASR then translate then TTS."""
        return [*self.asr.models(), *self.translate.models(), *self.tts.models()]


class AsrClient:
    """Speech recognition: `client.asr`."""

    def __init__(self, client: Client):
        self._client = client
        self.stub = asr_pb2_grpc.AsrServiceStub(client.channel)

    def recognize(
        self,
        audio,
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
        request_id: str = "",
        timeout: float | None = DEFAULT,
    ) -> Transcript:
        """Transcribes a whole recording in one call: `audio` is bytes, a path, or a binary
        file (any container; raw samples with `encoding` and `sample_rate`)."""
        config = req.recognition_config(
            language=language,
            model=model,
            translate=translate,
            words=words,
            prompt=prompt,
            hotwords=hotwords,
            beam_size=beam_size,
            temperature=temperature,
            encoding=encoding,
            sample_rate=sample_rate,
            channels=channels,
        )
        request = asr_pb2.RecognizeRequest(
            request_id=request_id, config=config, audio=read_bytes(audio)
        )
        return Transcript.from_proto(self._client._unary(self.stub.Recognize, request, timeout))

    def recognize_file(
        self,
        audio,
        *,
        progress: ProgressCallback | None = None,
        piece_seconds: float = PIECE_SECONDS,
        concurrency: int = 2,
        **options,
    ) -> Transcript:
        """Transcribes a recording of any length with progress: short audio goes in one call;
        longer audio is decoded here, cut at quiet points into pieces of about
        `piece_seconds`, and the pieces go `concurrency` at a time (the service batches them).
        `progress(done_seconds, total_seconds)` is called as pieces finish. Times in the
        result are from the start of the recording."""
        timeout = options.pop("timeout", DEFAULT)
        request_id = options.pop("request_id", "")
        data = read_bytes(audio)
        samples = decode(data, str(audio) if isinstance(audio, (str, os.PathLike)) else "audio")
        total = len(samples) / STREAM_RATE
        cuts = quiet_cuts(samples, STREAM_RATE, piece_seconds)
        if progress:
            progress(0.0, total)
        if len(cuts) == 1:
            result = self.recognize(data, request_id=request_id, timeout=timeout, **options)
            if progress:
                progress(total, total)
            return result

        # Up to `concurrency` pieces in flight as gRPC futures (no threads), so that an
        # interruption (Ctrl-C) cancels the calls instead of waiting for them.
        finished: queue.Queue[int] = queue.Queue()
        waiting = list(range(len(cuts)))
        running: dict[int, grpc.Future] = {}
        results: dict[int, Transcript] = {}
        done = 0.0
        try:
            while waiting or running:
                while waiting and len(running) < max(1, concurrency):
                    index = waiting.pop(0)
                    start, end = (int(t * STREAM_RATE) for t in cuts[index])
                    request = asr_pb2.RecognizeRequest(
                        request_id=request_id,
                        config=req.recognition_config(
                            encoding="linear16", sample_rate=STREAM_RATE, **options
                        ),
                        audio=to_linear16(samples[start:end]),
                    )
                    call = self.stub.Recognize.future(
                        request,
                        timeout=self._client.timeout if timeout is DEFAULT else timeout,
                        metadata=self._client._metadata(),
                    )
                    call.add_done_callback(lambda _call, index=index: finished.put(index))
                    running[index] = call
                index = finished.get()
                try:
                    results[index] = Transcript.from_proto(running.pop(index).result())
                except grpc.RpcError as error:
                    raise from_rpc_error(error) from error
                done += cuts[index][1] - cuts[index][0]
                if progress:
                    progress(min(done, total), total)
        finally:
            for call in running.values():
                call.cancel()
        return merge_transcripts(cuts, [results[i] for i in range(len(cuts))], total)

    def stream(
        self,
        chunks: Iterable,
        *,
        encoding: str | None = "linear16",
        sample_rate: int | None = STREAM_RATE,
        channels: int = 1,
        interim_results: bool = True,
        timeout: float | None = DEFAULT,
        **options,
    ) -> Iterator[StreamingResult | SpeechEvent]:
        """Recognizes live audio from any iterable of chunks (bytes in `encoding`, numpy
        arrays, or FORCE_ENDPOINT). `encoding=None` streams a WAV file, header first. Yields
        StreamingResult (interim and final) and SpeechEvent (with `vad_events=True`).

        Options: language, model, translate, words, prompt, hotwords, single_utterance,
        vad_events, endpoint_silence, vad_threshold, max_utterance, interim_interval,
        request_id.
        """
        first = req.streaming_recognition_config(
            encoding=encoding,
            sample_rate=sample_rate if encoding else None,
            channels=channels,
            interim_results=interim_results,
            **options,
        )
        guard = RequestGuard(first, lambda chunk: req.asr_audio_message(chunk, encoding))
        for response in self._client._stream(self.stub.StreamingRecognize, guard, chunks, timeout):
            if response.HasField("speech_event"):
                yield SpeechEvent.from_proto(response)
            else:
                yield StreamingResult.from_proto(response)

    def stream_file(
        self,
        audio,
        *,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        **options,
    ) -> Iterator[StreamingResult | SpeechEvent]:
        """Streams a recording (any container; decoded here to 16 kHz) in chunks of
        `chunk_seconds`, in real time as a microphone would, or as fast as possible."""
        pieces = file_chunks(audio, realtime=realtime, chunk_seconds=chunk_seconds)
        return self.stream(pieces, encoding="linear16", sample_rate=STREAM_RATE, **options)

    def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        reply = self._client._unary(self.stub.ListModels, asr_pb2.ListModelsRequest(), timeout)
        return [ModelInfo.from_proto("asr", m) for m in reply.models]


class TranslateClient:
    """Translation of text and speech: `client.translate`."""

    def __init__(self, client: Client):
        self._client = client
        self.stub = translate_pb2_grpc.TranslateServiceStub(client.channel)

    def text(
        self,
        texts: str | list[str],
        *,
        to: str,
        source: str | None = None,
        model: str | None = None,
        request_id: str = "",
        timeout: float | None = DEFAULT,
    ) -> Translation | list[Translation]:
        """Translates a text (returns a Translation) or a list of texts (returns a list)."""
        many = not isinstance(texts, str)
        request = tr.TranslateTextRequest(
            request_id=request_id,
            texts=list(texts) if many else [texts],
            source_language_code=source or "",
            target_language_code=to,
            model=model or "",
        )
        reply = self._client._unary(self.stub.TranslateText, request, timeout)
        found = [
            Translation(
                t.translated_text,
                t.source_language_code,
                t.source_language_probability,
                reply.model,
                t,
            )
            for t in reply.translations
        ]
        return found if many else found[0]

    def speech(
        self,
        audio,
        *,
        to: str,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> SpeechTranslation:
        """Translates a whole recording. Options: source, text (default True), speech
        (translated audio), source_transcript, format, output_sample_rate, voice, model,
        encoding/sample_rate/channels for raw input."""
        config = req.speech_translation_config(to=to, **options)
        request = tr.TranslateSpeechRequest(
            request_id=request_id, config=config, audio=read_bytes(audio)
        )
        reply = self._client._unary(self.stub.TranslateSpeech, request, timeout)
        return SpeechTranslation.from_proto(reply, req.normalized_format(options.get("format")))

    def text_to_speech(
        self,
        text: str,
        *,
        to: str,
        source: str | None = None,
        voice: str | None = None,
        format: str | None = None,
        sample_rate: int | None = None,
        model: str | None = None,
        request_id: str = "",
        timeout: float | None = DEFAULT,
    ) -> Speech:
        """Translates text and speaks the translation; `.text` holds the translated text."""
        request = tr.TranslateTextToSpeechRequest(
            request_id=request_id,
            text=text,
            config=tr.TextToSpeechTranslationConfig(
                model=model or "",
                source_language_code=source or "",
                target_language_code=to,
                output_audio_config=req.output_config(format, sample_rate),
                voice=voice or "",
            ),
        )
        r = self._client._unary(self.stub.TranslateTextToSpeech, request, timeout)
        return Speech(
            r.audio,
            r.sample_rate_hertz,
            seconds(r.audio_duration),
            req.normalized_format(format),
            r.model,
            voice=r.voice,
            text=r.translated_text,
            proto=r,
        )

    def stream_speech(
        self,
        chunks: Iterable,
        *,
        to: str,
        encoding: str | None = "linear16",
        sample_rate: int | None = STREAM_RATE,
        timeout: float | None = DEFAULT,
        **options,
    ) -> Iterator[SpeechTranslationEvent]:
        """Translates live audio segment by segment. Yields SpeechTranslationEvent: per
        segment "transcript" (with source_transcript=True), "translation", "audio" pieces
        (with speech=True) and "segment_end"."""
        first = req.streaming_translation_config(
            to=to, encoding=encoding, sample_rate=sample_rate if encoding else None, **options
        )
        guard = RequestGuard(first, lambda chunk: req.translate_audio_message(chunk, encoding))
        for response in self._client._stream(
            self.stub.StreamingTranslateSpeech, guard, chunks, timeout
        ):
            yield SpeechTranslationEvent.from_proto(response)

    def stream_speech_file(
        self,
        audio,
        *,
        to: str,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        **options,
    ) -> Iterator[SpeechTranslationEvent]:
        pieces = file_chunks(audio, realtime=realtime, chunk_seconds=chunk_seconds)
        return self.stream_speech(pieces, to=to, **options)

    def languages(self, model: str | None = None, timeout=DEFAULT) -> list[ModelLanguages]:
        request = tr.ListLanguagesRequest(model=model or "")
        reply = self._client._unary(self.stub.ListLanguages, request, timeout)
        return [ModelLanguages.from_proto(m) for m in reply.models]

    def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        reply = self._client._unary(self.stub.ListModels, tr.ListModelsRequest(), timeout)
        return [ModelInfo.from_proto("translate", m) for m in reply.models]


class SynthesisStream:
    """The audio of a synthesis stream: iterate it for AudioChunk objects as they arrive;
    `summary` is set once the stream has ended."""

    def __init__(self, responses: Iterator):
        self._responses = responses
        self.summary: SynthesisSummary | None = None

    def __iter__(self) -> Iterator[AudioChunk]:
        for response in self._responses:
            if response.HasField("audio_chunk"):
                yield AudioChunk.from_proto(response)
            elif response.HasField("summary"):
                self.summary = SynthesisSummary.from_proto(response)

    def cancel(self) -> None:
        self._responses.close()

    def audio(self) -> bytes:
        """Reads the whole stream: the continuous recording."""
        return b"".join(chunk.audio for chunk in self)


class TtsClient:
    """Speech synthesis and stored voices: `client.tts`."""

    def __init__(self, client: Client):
        self._client = client
        self.stub = tts_pb2_grpc.TtsServiceStub(client.channel)

    def synthesize(
        self,
        text: str,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> Speech:
        """Speaks a text. Options: voice (a stored voice), preset_voice, reference_audio with
        reference_transcript (clone for this call only), language, model, format (wav, flac,
        ogg, mp3, pcm), sample_rate, speed, temperature, seed."""
        if "reference_audio" in options and options["reference_audio"] is not None:
            options["reference_audio"] = read_bytes(options["reference_audio"])
        request = tts_pb2.SynthesizeRequest(
            request_id=request_id, text=text, config=req.synthesis_config(**options)
        )
        r = self._client._unary(self.stub.Synthesize, request, timeout)
        return Speech(
            r.audio,
            r.sample_rate_hertz,
            seconds(r.audio_duration),
            req.normalized_format(options.get("format")),
            r.model,
            r.seed,
            options.get("voice") or options.get("preset_voice") or "",
            text,
            [(s.text, seconds(s.start_offset), seconds(s.end_offset)) for s in r.sentences],
            r,
        )

    def stream(
        self,
        pieces: Iterable[str] | str,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> SynthesisStream:
        """Speaks text arriving in pieces (any iterable of str, or FLUSH); audio for each
        sentence comes as soon as it is synthesized. Same options as `synthesize`."""
        if isinstance(pieces, str):
            pieces = [pieces]
        if "reference_audio" in options and options["reference_audio"] is not None:
            options["reference_audio"] = read_bytes(options["reference_audio"])
        first = tts_pb2.StreamingSynthesizeRequest(
            streaming_config=tts_pb2.StreamingSynthesisConfig(
                request_id=request_id, config=req.synthesis_config(**options)
            )
        )
        guard = RequestGuard(
            first,
            lambda piece: (
                [req.tts_text_message(p) for p in split_text(piece)]
                if isinstance(piece, str)
                else req.tts_text_message(piece)
            ),
        )
        return SynthesisStream(
            self._client._stream(self.stub.StreamingSynthesize, guard, pieces, timeout)
        )

    def create_voice(
        self,
        voice_id: str,
        audio,
        transcript: str,
        *,
        language: str | None = None,
        display_name: str | None = None,
        model: str | None = None,
        encoding: str | None = None,
        sample_rate: int | None = None,
        timeout: float | None = DEFAULT,
    ) -> Voice:
        """Stores a voice cloned from a reference recording (3 to 30 s of one speaker) and
        the exact words it speaks; use it as `voice=voice_id` afterwards."""
        request = tts_pb2.CreateVoiceRequest(
            voice_id=voice_id.removeprefix("voices/"),
            voice=tts_pb2.Voice(
                transcript=transcript,
                language_code=language or "",
                display_name=display_name or "",
                model=model or "",
            ),
            reference_audio=read_bytes(audio),
            reference_audio_format=req.audio_format(encoding, sample_rate),
        )
        return Voice.from_proto(self._client._unary(self.stub.CreateVoice, request, timeout))

    def get_voice(self, name: str, timeout: float | None = DEFAULT) -> Voice:
        request = tts_pb2.GetVoiceRequest(name=req.voice_name(name))
        return Voice.from_proto(self._client._unary(self.stub.GetVoice, request, timeout))

    def list_voices(self, page_size: int = 0, timeout: float | None = DEFAULT) -> list[Voice]:
        """Every stored voice, oldest first (all pages)."""
        voices: list[Voice] = []
        token = ""
        while True:
            request = tts_pb2.ListVoicesRequest(page_size=page_size, page_token=token)
            reply = self._client._unary(self.stub.ListVoices, request, timeout)
            voices += [Voice.from_proto(v) for v in reply.voices]
            token = reply.next_page_token
            if not token:
                return voices

    def delete_voice(self, name: str, timeout: float | None = DEFAULT) -> None:
        request = tts_pb2.DeleteVoiceRequest(name=req.voice_name(name))
        self._client._unary(self.stub.DeleteVoice, request, timeout)

    def models(self, timeout: float | None = DEFAULT) -> list[ModelInfo]:
        reply = self._client._unary(self.stub.ListModels, tts_pb2.ListModelsRequest(), timeout)
        return [ModelInfo.from_proto("tts", m) for m in reply.models]
