"""The methods of `client.asr`, `client.translate` and `client.tts`, written once for the
blocking and the asyncio client (see _operations.py): the request each builds (from
_requests.py), the calls it makes, and the results it returns."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc
from speechmesh.client._common import DEFAULT, PIECE_SECONDS, RequestGuard, seconds
from speechmesh.client._operations import (
    Blocking,
    Concurrently,
    Service,
    Stream,
    Unary,
    operation,
    source_name,
    streaming,
)
from speechmesh.client._requests import (
    audio_format,
    audio_message,
    normalized_format,
    output_config,
    recognition_config,
    speech_translation_config,
    streaming_recognition_config,
    streaming_translation_config,
    synthesis_config,
    text_messages,
    voice_name,
)
from speechmesh.client.audio import (
    CHUNK_SECONDS,
    STREAM_RATE,
    decode,
    quiet_cuts,
    read_bytes,
    to_linear16,
)
from speechmesh.client.transcripts import (
    SpeechEvent,
    StreamingResult,
    Transcript,
    recognition_event,
)
from speechmesh.client.types import (
    ModelInfo,
    ModelLanguages,
    Speech,
    SpeechTranslation,
    SpeechTranslationEvent,
    Translation,
    Voice,
    synthesis_event,
)
from speechmesh.translate.v1 import translate_pb2 as tr
from speechmesh.translate.v1 import translate_pb2_grpc
from speechmesh.tts.v1 import tts_pb2, tts_pb2_grpc

ProgressCallback = Callable[[float, float], None]


class AsrOperations(Service):
    """Speech recognition: `client.asr`."""

    name = "asr"
    stub_type = asr_pb2_grpc.AsrServiceStub
    models_request = asr_pb2.ListModelsRequest

    @operation
    def load_model(
        self, name: str, *, source: str = "", timeout: float | None = DEFAULT
    ) -> ModelInfo:
        """Loads model `name` (one the service knows, or a new one from `source`: a folder on
        the service's machine or a Hugging Face id) and returns it once ready. Operators
        only (PermissionDenied otherwise)."""
        request = asr_pb2.LoadModelRequest(name=name, source=source)
        reply = yield Unary(self.stub.LoadModel, request, timeout)
        return ModelInfo.from_proto(self.name, reply)

    @operation
    def unload_model(self, name: str, *, timeout: float | None = DEFAULT) -> ModelInfo:
        """Frees model `name`'s memory (not the default model's); the next request that names
        it loads it again. Operators only."""
        reply = yield Unary(self.stub.UnloadModel, asr_pb2.UnloadModelRequest(name=name), timeout)
        return ModelInfo.from_proto(self.name, reply)

    def _recognize(self, audio: bytes, request_id: str, timeout, options: dict) -> Unary:
        request = asr_pb2.RecognizeRequest(
            request_id=request_id, config=recognition_config(**options), audio=audio
        )
        return Unary(self.stub.Recognize, request, timeout)

    @operation
    def recognize(
        self,
        audio,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> Transcript:
        """Transcribes a whole recording in one call: `audio` is bytes, a path, or a binary
        file (any container; raw samples with `encoding` and `sample_rate`).

        Options: language (BCP-47; default: detected), model, translate (to English), words
        (word times), prompt (text that conditions the decoder), hotwords, beam_size,
        temperature; for raw samples encoding ("linear16", "float32", "mulaw", "alaw"),
        sample_rate and channels.
        """
        data = yield Blocking(read_bytes, (audio,))
        reply = yield self._recognize(data, request_id, timeout, options)
        return Transcript.from_proto(reply)

    @operation
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
        result are from the start of the recording. The options are those of `recognize`."""
        timeout = options.pop("timeout", DEFAULT)
        request_id = options.pop("request_id", "")
        data = yield Blocking(read_bytes, (audio,))
        samples = yield Blocking(decode, (data, source_name(audio)))
        total = len(samples) / STREAM_RATE
        cuts = quiet_cuts(samples, STREAM_RATE, piece_seconds)
        if progress:
            progress(0.0, total)
        if len(cuts) == 1:
            reply = yield self._recognize(data, request_id, timeout, options)
            result = Transcript.from_proto(reply)
            if progress:
                progress(total, total)
            return result
        raw = dict(options, encoding="linear16", sample_rate=STREAM_RATE)
        pieces = [
            self._recognize(
                to_linear16(samples[int(start * STREAM_RATE) : int(end * STREAM_RATE)]),
                request_id,
                timeout,
                raw,
            )
            for start, end in cuts
        ]
        done = 0.0

        def finished(index: int) -> None:
            nonlocal done
            done += cuts[index][1] - cuts[index][0]
            if progress:
                progress(min(done, total), total)

        replies = yield Concurrently(pieces, max(1, concurrency), finished)
        return Transcript.joined(cuts, [Transcript.from_proto(r) for r in replies], total)

    @streaming
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
        arrays, or FORCE_ENDPOINT); with AsyncClient, an async iterable too. `encoding=None`
        streams a WAV file, header first. Yields StreamingResult (interim and final) and
        SpeechEvent (with `vad_events=True`).

        Options: language, model, translate, words, prompt, hotwords, single_utterance,
        vad_events, endpoint_silence, vad_threshold, max_utterance, interim_interval,
        request_id.
        """
        first = streaming_recognition_config(
            encoding=encoding,
            sample_rate=sample_rate if encoding else None,
            channels=channels,
            interim_results=interim_results,
            **options,
        )
        convert = functools.partial(
            audio_message, asr_pb2.StreamingRecognizeRequest, encoding=encoding
        )
        guard = RequestGuard(first, convert)
        return Stream(self.stub.StreamingRecognize, guard, chunks, timeout, recognition_event)

    def stream_file(
        self,
        audio,
        *,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        **options,
    ) -> Iterator[StreamingResult | SpeechEvent]:
        """Streams a recording (any container; decoded here to 16 kHz) in chunks of
        `chunk_seconds`, in real time as a microphone would, or as fast as possible. The
        options are those of `stream`."""
        pieces = self._client._file_chunks(audio, realtime, chunk_seconds)
        return self.stream(pieces, encoding="linear16", sample_rate=STREAM_RATE, **options)


class TranslateOperations(Service):
    """Translation of text and speech: `client.translate`."""

    name = "translate"
    stub_type = translate_pb2_grpc.TranslateServiceStub
    models_request = tr.ListModelsRequest

    @operation
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
        reply = yield Unary(self.stub.TranslateText, request, timeout)
        found = [Translation.from_proto(t, reply.model) for t in reply.translations]
        return found if many else found[0]

    @operation
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
        config = speech_translation_config(to=to, **options)
        data = yield Blocking(read_bytes, (audio,))
        request = tr.TranslateSpeechRequest(request_id=request_id, config=config, audio=data)
        reply = yield Unary(self.stub.TranslateSpeech, request, timeout)
        return SpeechTranslation.from_proto(reply, normalized_format(options.get("format")))

    @operation
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
                output_audio_config=output_config(format, sample_rate),
                voice=voice or "",
            ),
        )
        reply = yield Unary(self.stub.TranslateTextToSpeech, request, timeout)
        return Speech.from_proto(
            reply, normalized_format(format), voice=reply.voice, text=reply.translated_text
        )

    @streaming
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
        """Translates live audio segment by segment (`chunks` as for `client.asr.stream`).
        Yields SpeechTranslationEvent: per segment "transcript" (with
        source_transcript=True), "translation", "audio" pieces (with speech=True) and
        "segment_end". Options: those of `speech`, and endpoint_silence, vad_threshold,
        max_segment, request_id."""
        first = streaming_translation_config(
            to=to, encoding=encoding, sample_rate=sample_rate if encoding else None, **options
        )
        convert = functools.partial(
            audio_message, tr.StreamingTranslateSpeechRequest, encoding=encoding
        )
        guard = RequestGuard(first, convert)
        return Stream(
            self.stub.StreamingTranslateSpeech,
            guard,
            chunks,
            timeout,
            SpeechTranslationEvent.from_proto,
        )

    def stream_speech_file(
        self,
        audio,
        *,
        to: str,
        realtime: bool = False,
        chunk_seconds: float = CHUNK_SECONDS,
        **options,
    ) -> Iterator[SpeechTranslationEvent]:
        """Translates a recording as a stream (see `client.asr.stream_file`)."""
        pieces = self._client._file_chunks(audio, realtime, chunk_seconds)
        return self.stream_speech(pieces, to=to, **options)

    @operation
    def languages(
        self, model: str | None = None, timeout: float | None = DEFAULT
    ) -> list[ModelLanguages]:
        """What each translation model (or `model`) takes and produces."""
        request = tr.ListLanguagesRequest(model=model or "")
        reply = yield Unary(self.stub.ListLanguages, request, timeout)
        return [ModelLanguages.from_proto(m) for m in reply.models]


class TtsOperations(Service):
    """Speech synthesis and stored voices: `client.tts`."""

    name = "tts"
    stub_type = tts_pb2_grpc.TtsServiceStub
    models_request = tts_pb2.ListModelsRequest
    #: What `stream` returns in this transport: SynthesisStream or AsyncSynthesisStream.
    synthesis_stream_type: type

    @operation
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
        if options.get("reference_audio") is not None:
            options["reference_audio"] = yield Blocking(read_bytes, (options["reference_audio"],))
        request = tts_pb2.SynthesizeRequest(
            request_id=request_id, text=text, config=synthesis_config(**options)
        )
        reply = yield Unary(self.stub.Synthesize, request, timeout)
        return Speech.from_proto(
            reply,
            normalized_format(options.get("format")),
            seed=reply.seed,
            voice=options.get("voice") or options.get("preset_voice") or "",
            text=text,
            sentences=[
                (s.text, seconds(s.start_offset), seconds(s.end_offset)) for s in reply.sentences
            ],
        )

    def stream(
        self,
        pieces: Iterable[str] | str,
        *,
        request_id: str = "",
        timeout: float | None = DEFAULT,
        **options,
    ) -> Any:
        """Speaks text arriving in pieces (any iterable of str, or FLUSH; with AsyncClient an
        async iterable too); audio for each sentence comes as soon as it is synthesized.
        Same options as `synthesize`. Returns a SynthesisStream (AsyncSynthesisStream): the
        audio chunks as they come, then its `summary`."""
        if isinstance(pieces, str):
            pieces = [pieces]
        if options.get("reference_audio") is not None:
            options["reference_audio"] = read_bytes(options["reference_audio"])
        first = tts_pb2.StreamingSynthesizeRequest(
            streaming_config=tts_pb2.StreamingSynthesisConfig(
                request_id=request_id, config=synthesis_config(**options)
            )
        )
        call = Stream(
            self.stub.StreamingSynthesize,
            RequestGuard(first, text_messages),
            pieces,
            timeout,
            synthesis_event,
        )
        return self.synthesis_stream_type(self._client._stream(call))

    @operation
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
        data = yield Blocking(read_bytes, (audio,))
        request = tts_pb2.CreateVoiceRequest(
            voice_id=voice_id.removeprefix("voices/"),
            voice=tts_pb2.Voice(
                transcript=transcript,
                language_code=language or "",
                display_name=display_name or "",
                model=model or "",
            ),
            reference_audio=data,
            reference_audio_format=audio_format(encoding, sample_rate),
        )
        return Voice.from_proto((yield Unary(self.stub.CreateVoice, request, timeout)))

    @operation
    def get_voice(self, name: str, timeout: float | None = DEFAULT) -> Voice:
        """A stored voice by its id or resource name ("alice" or "voices/alice")."""
        request = tts_pb2.GetVoiceRequest(name=voice_name(name))
        return Voice.from_proto((yield Unary(self.stub.GetVoice, request, timeout)))

    @operation
    def list_voices(self, page_size: int = 0, timeout: float | None = DEFAULT) -> list[Voice]:
        """Every stored voice, oldest first (all pages)."""
        voices: list[Voice] = []
        token = ""
        while True:
            request = tts_pb2.ListVoicesRequest(page_size=page_size, page_token=token)
            reply = yield Unary(self.stub.ListVoices, request, timeout)
            voices += [Voice.from_proto(v) for v in reply.voices]
            token = reply.next_page_token
            if not token:
                return voices

    @operation
    def delete_voice(self, name: str, timeout: float | None = DEFAULT) -> None:
        """Deletes a stored voice."""
        request = tts_pb2.DeleteVoiceRequest(name=voice_name(name))
        yield Unary(self.stub.DeleteVoice, request, timeout)
