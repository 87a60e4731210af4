"""Start-up, readiness and shutdown: health transitions in-process, signals on the real CLI."""

from __future__ import annotations

import asyncio
import io
import pathlib
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import soundfile as sf
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.asr.v1 import asr_pb2
from speechmesh.runtime.server import ServiceApp, ServiceHost
from speechmesh.runtime.settings import ServiceSettings
from tests.asr_client import stream_config, stub
from tests.conftest import AUDIO, ROOT, requires_shared
from tests.servers import AsrProcess

ASR = "speechmesh.asr.v1.AsrService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CLI = pathlib.Path(sys.executable).parent / "speechmesh"
GRACE_S = 10.0
GRACE_ENV = {"SPEECHMESH_ASR_GRACE_PERIOD_S": str(GRACE_S)}
GOFORWARD = AUDIO / "goforward.wav"


# -- (a) health follows the model load, in-process -----------------------------


def _settings() -> ServiceSettings:
    return ServiceSettings(host="127.0.0.1", port=0, metrics=False, grace_period_s=1)


async def _check(channel, service: str) -> int:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


def _gated_app(loaded: asyncio.Event, closed: list[bool]) -> ServiceApp:
    """A service with nothing registered whose load() waits for `loaded`."""

    async def load() -> None:
        await loaded.wait()

    async def close() -> None:
        closed.append(True)

    return ServiceApp(
        name="lifecycle", service_names=[ASR], register=lambda server: None, load=load, close=close
    )


async def test_health_check_not_serving_until_loaded_then_serving_then_stopped():
    loaded, closed = asyncio.Event(), []
    host = ServiceHost(_gated_app(loaded, closed), _settings())
    await host.start()
    assert host.port > 0
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        for service in ("", ASR):
            assert await _check(channel, service) == NOT_SERVING, service
        await asyncio.sleep(0.2)
        assert not host.ready.is_set(), "ready before load() returned"
        for service in ("", ASR):
            assert await _check(channel, service) == NOT_SERVING, service

        loaded.set()
        await asyncio.wait_for(host.ready.wait(), 5)
        assert host.failed is None
        for service in ("", ASR):
            assert await _check(channel, service) == SERVING, service

        await asyncio.wait_for(host.stop(grace=0.5), 10)
        assert closed == [True], "app.close() runs once on stop"
        for service in ("", ASR):
            try:
                status = await _check(channel, service)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            else:
                assert status == NOT_SERVING
    finally:
        await channel.close()


async def test_health_watch_sees_the_transitions():
    loaded, closed = asyncio.Event(), []
    host = ServiceHost(_gated_app(loaded, closed), _settings())
    await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=ASR), timeout=30
        )
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        loaded.set()
        assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING
        stopping = asyncio.create_task(host.stop(grace=0.5))
        # the watcher hears NOT_SERVING before the server goes away
        seen = []
        try:
            while (reply := await asyncio.wait_for(watch.read(), 5)) is not grpc.aio.EOF:
                seen.append(reply.status)
        except grpc.aio.AioRpcError as error:
            assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), error
        assert seen[:1] == [NOT_SERVING], seen
        await asyncio.wait_for(stopping, 10)
    finally:
        await channel.close()
        if not closed:
            await host.stop(0)


async def test_failed_load_keeps_health_not_serving():
    async def load() -> None:
        raise RuntimeError("weights are corrupt")

    async def close() -> None:
        pass

    app = ServiceApp("lifecycle", [ASR], lambda server: None, load, close)
    host = ServiceHost(app, _settings())
    await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        await asyncio.wait_for(host.ready.wait(), 5)
        assert isinstance(host.failed, RuntimeError)
        for service in ("", ASR):
            assert await _check(channel, service) == NOT_SERVING, service
    finally:
        await channel.close()
        await host.stop(0)


# -- (b)-(d) the real command ----------------------------------------------------


@pytest.fixture(scope="module")
def cli_checkpoint(tmp_path_factory) -> pathlib.Path:
    """(d) `speechmesh models tiny whisper DIR` builds a checkpoint the server then loads."""
    dest = tmp_path_factory.mktemp("cli-tiny") / "whisper"
    done = subprocess.run(
        [str(CLI), "models", "tiny", "whisper", str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert str(dest) in done.stdout
    assert (dest / "config.json").is_file()
    assert list(dest.glob("*.safetensors")), list(dest.iterdir())
    return dest


def _speech_pcm() -> bytes:
    samples, rate = sf.read(GOFORWARD, dtype="int16")
    assert rate == 16000
    return np.ascontiguousarray(samples).tobytes()


@requires_shared
@pytest.mark.skipif(not GOFORWARD.is_file(), reason=f"{GOFORWARD} not found")
async def test_sigterm_lets_an_open_stream_finish_and_exits_zero(cli_checkpoint, tmp_path):
    server = AsrProcess(tmp_path, str(cli_checkpoint), "term", GRACE_ENV)
    try:
        await server.wait_serving()
        async with grpc.aio.insecure_channel(server.address) as channel:
            models = await stub(channel).ListModels(asr_pb2.ListModelsRequest(), timeout=10)
            assert models.models[0].name == cli_checkpoint.name
            assert models.models[0].random_weights

            pcm = _speech_pcm()
            first_part, second_part = pcm[: 1 * 32000], pcm[1 * 32000 : int(1.9 * 32000)]
            call = stub(channel).StreamingRecognize(timeout=60)
            await call.write(
                stream_config(16000, request_id="draining", enable_voice_activity_events=True)
            )
            for offset in range(0, len(first_part), 3200):
                await call.write(
                    asr_pb2.StreamingRecognizeRequest(audio=first_part[offset:][:3200])
                )
            begin = await asyncio.wait_for(call.read(), 20)
            assert begin.speech_event.type == asr_pb2.SpeechActivityEvent.TYPE_SPEECH_BEGIN

            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            # the server stops taking work: health says so, or nobody answers
            async with grpc.aio.insecure_channel(server.address) as probe:
                deadline = time.monotonic() + 5
                while True:
                    try:
                        status = await _check(probe, ASR)
                    except grpc.aio.AioRpcError as error:
                        # a call racing the start of the shutdown may be cancelled
                        refused = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                        assert error.code() in refused, error
                        break
                    if status == NOT_SERVING:
                        break
                    assert time.monotonic() < deadline, "still SERVING 5 s after SIGTERM"
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            async with grpc.aio.insecure_channel(server.address) as late:
                request = asr_pb2.RecognizeRequest(audio=_wav(0.5))
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub(late).Recognize(request, timeout=5)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            # the open stream goes on: more audio, then half-close, then its final
            for offset in range(0, len(second_part), 3200):
                await call.write(
                    asr_pb2.StreamingRecognizeRequest(audio=second_part[offset:][:3200])
                )
                await asyncio.sleep(0.02)
            await call.done_writing()
            rest = []
            transport_closed = False
            try:
                while (response := await asyncio.wait_for(call.read(), 20)) is not grpc.aio.EOF:
                    rest.append(response)
                assert await call.code() == grpc.StatusCode.OK, await call.details()
            except grpc.aio.AioRpcError as error:
                # The process exits as soon as its last call ends; now and then the socket
                # closes (TCP reset) before this client has read the trailers it was sent.
                # The server's own log, checked below, says how the stream ended.
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                transport_closed = True
            results = [r.result for r in rest if r.HasField("result") and r.result.is_final]
            if not transport_closed:
                assert len(results) == 1, rest
            for result in results:
                assert result.end_offset.ToNanoseconds() >= 1_800_000_000
            assert all(r.request_id == "draining" for r in rest)

        code = await server.wait_exit(GRACE_S + 10)
        assert code == 0, server.output()[-3000:]
        assert time.monotonic() - signalled < GRACE_S, "exit within the grace period"
        events = [e.get("event") for e in server.logs()]
        assert "server.stopping" in events and "server.stopped" in events, events
        rpcs = [
            e
            for e in server.logs()
            if e.get("event") == "rpc" and e.get("method") == "StreamingRecognize"
        ]
        assert [(e["code"], e["request_id"]) for e in rpcs] == [("OK", "draining")]
    finally:
        server.kill()


def _wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(16000 * seconds), dtype=np.float32), 16000, format="WAV")
    return buf.getvalue()


async def test_sigint_exits_zero(cli_checkpoint, tmp_path):
    server = AsrProcess(tmp_path, str(cli_checkpoint), "int", GRACE_ENV)
    try:
        await server.wait_serving()
        server.process.send_signal(signal.SIGINT)
        code = await server.wait_exit(GRACE_S + 10)
        assert code == 0, server.output()[-3000:]
        assert "Traceback" not in server.output()
    finally:
        server.kill()


async def test_missing_model_fails_start_up_naming_the_setting(tmp_path):
    server = AsrProcess(tmp_path, "/nonexistent/path", "missing", GRACE_ENV)
    try:
        code = await server.wait_exit(60)
        assert code != 0
        stderr = server.stderr.read_text()
        assert "/nonexistent/path" in stderr, stderr
        assert "SPEECHMESH_ASR_MODEL" in stderr, stderr
        assert "--model" in stderr, stderr
    finally:
        server.kill()
