"""The ASR services bench.asr serves, and its live streams on them.

`Served` is one ASR service served in this process with one engine setting, called over gRPC
(Recognize) or in-process (the same recognizer and batcher). `Streams` are live
StreamingRecognize streams on one: each sends a clip as LINEAR16 in CHUNK_S chunks, each when a
microphone would have captured it, then TRAILING_SILENCE_S of silence and a half-close, interim
results on; over gRPC (`grpc_stream`) or through `StreamingSession` in-process, as the servicer
builds it (`direct_stream`). `figures` turns measured blocks of streams into the figures
bench.asr reports.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from bench.common import Block, Clip, costs, pooled, summary, timed_block, word_error_rate
from bench.served import ServedBench, service_settings

CHUNK_S = 0.1
TRAILING_SILENCE_S = 1.0


class Served(ServedBench):
    """One ASR service served in this process with one engine setting, plus direct handles on
    the model it loaded."""

    def __init__(self, args: argparse.Namespace, engine: str, **fields):
        self.args = args
        self.engine_setting = engine
        #: More AsrSettings fields (e.g. bench.jobs's `jobs`), the same for the whole run.
        self.fields = fields

    async def start(self) -> None:
        from speechmesh.asr.app import build_app
        from speechmesh.asr.config import AsrSettings
        from speechmesh.asr.mapping import decode_options
        from speechmesh.asr.models import AsrModels
        from speechmesh.asr.v1 import asr_pb2, asr_pb2_grpc

        settings = service_settings(
            AsrSettings,
            self.args,
            model=str(self.args.model),
            engine=self.engine_setting,
            **self.fields,
        )
        await self.serve(build_app, settings, AsrModels)
        self.recognizer = self.model.recognizer
        self.record(self.recognizer.batcher)
        self.stub = asr_pb2_grpc.AsrServiceStub(self.channel)
        self.pb = asr_pb2
        # Both paths decode with the very options the servicer derives from this config.
        self.config = asr_pb2.RecognitionConfig(language_code="en")
        self.options = decode_options(self.model, self.config)

    def describe(self) -> dict:
        engine = self.engine
        ct2 = engine.runtime == "ctranslate2"
        return {
            "setting": self.engine_setting,
            "runtime": engine.runtime,
            "device": str(engine.device),
            "dtype": str(engine.dtype),
            "workers": getattr(engine, "workers", 1),
            # as the loader resolves SPEECHMESH_ASR_THREADS (0: every core)
            "threads_per_worker": (self.settings.threads or os.cpu_count()) if ct2 else None,
            "weights_mib": round(engine.memory_bytes / (1 << 20), 1),
            "load_s": self.load_s,
        }

    async def grpc_recognize(self, index: int, clip: Clip) -> str:
        request = self.pb.RecognizeRequest(
            request_id=f"bench-{index}", config=self.config, audio=clip.data
        )
        return (await self.stub.Recognize(request)).transcript

    async def direct_recognize(self, index: int, clip: Clip) -> str:
        return (await self.recognizer.recognize(clip.samples, self.options)).text


class Streams:
    """Live streams on `served` (the default engine's service), of `clips`."""

    def __init__(self, served: Served, clips: list[Clip]):
        from speechmesh.asr.mapping import stream_settings
        from speechmesh.audio.v1 import audio_pb2

        self.served = served
        self.clips = clips
        config = served.pb.RecognitionConfig()
        config.CopyFrom(served.config)
        config.audio_format.CopyFrom(
            audio_pb2.AudioFormat(
                encoding=audio_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=served.engine.sample_rate,
            )
        )
        self.config = served.pb.StreamingRecognitionConfig(config=config, interim_results=True)
        # As the servicer derives them from this config.
        self.settings = stream_settings(served.model, self.config)

    async def paced(self, clip: Clip, marks: dict) -> AsyncIterator[bytes]:
        """The clip, then silence, as LINEAR16 chunks, each sent once its audio is 'captured'.

        Chunk k covering audio [a, b) goes out at start + b, like a microphone's; the last chunk
        of speech ends exactly where the clip ends. marks: start, speech_end, max_lag_s.
        """
        rate = clip.sample_rate
        step = int(rate * CHUNK_S)
        speech = len(clip.pcm16) // 2
        silence = int(rate * TRAILING_SILENCE_S)
        edges = [*range(0, speech, step), speech, *range(speech + step, speech + silence, step)]
        edges.append(speech + silence)
        pcm = clip.pcm16 + bytes(2 * silence)
        start = marks["start"] = time.perf_counter()
        marks["max_lag_s"] = 0.0
        for a, b in itertools.pairwise(edges):
            due = start + b / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            marks["max_lag_s"] = max(marks["max_lag_s"], now - due)
            if b == speech:
                marks["speech_end"] = now
            yield pcm[2 * a : 2 * b]

    async def grpc_stream(self, index: int, clip: Clip, record: dict) -> None:
        pb = self.served.pb

        async def requests():
            first = pb.StreamingRecognizeRequest(streaming_config=self.config)
            first.streaming_config.request_id = f"bench-stream-{index}"
            yield first
            async for chunk in self.paced(clip, record):
                yield pb.StreamingRecognizeRequest(audio=chunk)

        async for response in self.served.stub.StreamingRecognize(requests()):
            if response.WhichOneof("streaming_response") == "result":
                r = response.result
                _result(
                    record,
                    r.is_final,
                    r.transcript,
                    r.start_offset.ToNanoseconds() / 1e9,
                    r.end_offset.ToNanoseconds() / 1e9,
                )

    async def direct_stream(self, index: int, clip: Clip, record: dict) -> None:
        from speechmesh.asr.streaming import StreamingSession, UtteranceResult

        # As the servicer builds it for a stream with this config.
        s = self.served
        session = StreamingSession(s.recognizer, s.models.vad, self.settings)
        async for event in session.run(self.paced(clip, record)):
            if isinstance(event, UtteranceResult):
                _result(record, event.is_final, event.transcript, event.start, event.end)

    async def block(
        self,
        run: Callable[[int, Clip, dict], Awaitable[None]],
        concurrency: int,
        total: int,
        first: int,
    ) -> Block:
        """`total` live streams, `concurrency` at a time; workers start staggered within a chunk."""
        counter = itertools.count(first)
        records: list[dict] = []

        async def worker(w: int) -> None:
            await asyncio.sleep(w * CHUNK_S / concurrency)
            while (index := next(counter)) < first + total:
                clip = self.clips[index % len(self.clips)]
                record = {"clip": clip, "finals": [], "first_interim": None, "error": None}
                records.append(record)
                try:
                    await run(index, clip, record)
                except grpc.aio.AioRpcError as error:
                    record["error"] = f"{error.code().name}: {error.details()}"
                except Exception as error:
                    record["error"] = repr(error)
                record["end"] = time.perf_counter()

        return await timed_block(worker, concurrency, records, self.served.recorder)

    def figures(self, blocks: list[Block], concurrency: int) -> dict:
        records, wall = pooled(blocks)
        endpoint = self.settings.endpoint_silence
        per_stream = [_stream_figures(r, endpoint, self.clips.index(r["clip"])) for r in records]
        completed = [s for s in per_stream if s["completed"]]
        speech = sum(r["clip"].seconds for r in records)
        sent = speech + TRAILING_SILENCE_S * len(records)
        eos = [s["end_of_speech_to_final_s"] for s in completed]
        return {
            "concurrency": concurrency,
            "streams": len(records),
            "blocks": [len(b.items) for b in blocks],
            "completed": len(completed),
            "all_completed": len(completed) == len(records),
            "errors": [s["error"] for s in per_stream if s["error"]],
            "wall_s": wall,
            "speech_s": speech,
            "audio_sent_s": sent,
            "audio_s_per_s": speech / wall,
            "audio_sent_s_per_s": sent / wall,
            "end_of_speech_to_final_s": summary(eos),
            "end_of_speech_to_final_minus_endpoint_s": summary([x - endpoint for x in eos]),
            "endpoint_to_final_s": summary([s["endpoint_to_final_s"] for s in completed]),
            "first_interim_s": summary(
                [s["first_interim_s"] for s in per_stream if s["first_interim_s"] is not None]
            ),
            "first_interim_after_onset_s": summary(
                [
                    s["first_interim_after_onset_s"]
                    for s in per_stream
                    if s["first_interim_after_onset_s"] is not None
                ]
            ),
            "max_send_lag_s": max((s["max_send_lag_s"] or 0.0 for s in per_stream), default=None),
            "wer": word_error_rate([(r["clip"].reference, _final_text(r)) for r in records]),
            **costs(blocks, wall),
            "per_stream": per_stream,
        }


def _result(record: dict, is_final: bool, text: str, start: float, end: float) -> None:
    now = time.perf_counter()
    if is_final:
        record["finals"].append({"at": now, "text": text, "start": start, "end": end})
    elif record["first_interim"] is None:
        record["first_interim"] = {"at": now, "start": start}


def _final_text(record: dict) -> str:
    return " ".join(f["text"] for f in record["finals"])


def _stream_figures(record: dict, endpoint: float, clip_index: int) -> dict:
    start = record.get("start")
    speech_end = record.get("speech_end")
    finals = record["finals"]
    completed = record["error"] is None and bool(finals) and speech_end is not None
    figures = {
        "clip": clip_index,
        "speech_s": record["clip"].seconds,
        "completed": completed,
        "error": record["error"],
        "finals": len(finals),
        "end_of_speech_to_final_s": None,
        "endpoint_to_final_s": None,
        "first_interim_s": None,
        "first_interim_after_onset_s": None,
        "max_send_lag_s": record.get("max_lag_s"),
        "transcript": _final_text(record),
    }
    if completed:
        last = finals[-1]
        figures["end_of_speech_to_final_s"] = last["at"] - speech_end
        # Audio at offset x reaches the server at start + x: the endpoint can be declared once
        # the utterance's last speech plus the endpoint silence has arrived.
        figures["endpoint_to_final_s"] = last["at"] - (start + last["end"] + endpoint)
    interim = record["first_interim"]
    if interim is not None and start is not None:
        figures["first_interim_s"] = interim["at"] - start
        figures["first_interim_after_onset_s"] = interim["at"] - (start + interim["start"])
    return figures
