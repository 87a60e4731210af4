"""Several ASR models in one service, loaded and unloaded at run time (issue 16).

One service holds the tiny random Whisper as its default, the real whisper-tiny.en as "en", a
checkpoint that cannot load ("broken"), idle unloading after 1.5 s, a 100 MiB budget for model
weights, and one operator ("ops"). Requests pick a model by id; ListModels says each one's
state; LoadModel/UnloadModel are for the operator alone; an unloaded or idle model is loaded
again by the next request, which waits and answers; a stream holds its model against an unload;
a load that does not fit fails alone; health stays SERVING throughout.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from speechmesh.asr.v1 import asr_pb2
from speechmesh.common.v1 import common_pb2
from tests.asr_client import chunked, pcm16, stream_config, stub
from tests.conftest import AUDIO, TINY_EN, requires_shared, running_asr

pytestmark = requires_shared

GOFORWARD = AUDIO / "goforward.wav"  # "go forward ten meters"
OPERATOR = (("x-speechmesh-identity", "ops"),)
IDLE_S = 1.5
READY, UNLOADED, FAILED = (
    common_pb2.MODEL_STATE_READY,
    common_pb2.MODEL_STATE_UNLOADED,
    common_pb2.MODEL_STATE_FAILED,
)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A folder that looks like a checkpoint and is not one."""
    folder = tmp_path_factory.mktemp("broken")
    (folder / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    return folder


@pytest.fixture(scope="module")
async def served(tiny_whisper, broken):
    async with running_asr(
        tiny_whisper,
        extra_models=f"en={TINY_EN},broken={broken}",
        model_idle_unload_seconds=IDLE_S,
        model_memory_limit_mb=100,
        # read from SPEECHMESH_OPERATORS only (a validation alias), so given by that name
        **{"SPEECHMESH_OPERATORS": "ops"},
    ) as (host, channel):
        yield host, stub(channel), channel


async def models(asr) -> dict[str, asr_pb2.ModelInfo]:
    reply = await asr.ListModels(asr_pb2.ListModelsRequest(), timeout=10)
    return {m.name: m for m in reply.models}


async def recognize(asr, model: str) -> asr_pb2.RecognizeResponse:
    request = asr_pb2.RecognizeRequest(
        config=asr_pb2.RecognitionConfig(model=model), audio=GOFORWARD.read_bytes()
    )
    return await asr.Recognize(request, timeout=120)


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details()


async def test_list_models_says_each_ones_state_and_what_it_can_do(served, tiny_whisper):
    _, asr, channel = served
    await recognize(asr, "en")  # loaded now, whatever the idle timer did since start-up
    listed = await models(asr)
    assert list(listed) == [tiny_whisper.name, "en", "broken"]  # the default first
    default, en, broken = listed.values()
    assert default.default and not en.default
    assert en.state == READY and en.engine == "whisper" and en.memory_bytes > 0
    assert en.language_codes == ["en"] and en.supports_word_time_offsets
    assert not en.supports_emotion_recognition and not en.supports_audio_event_detection
    assert en.idle_unload_after.ToTimedelta().total_seconds() == IDLE_S
    assert not default.HasField("idle_unload_after")  # the default is never unloaded
    assert broken.state == FAILED and broken.error and broken.memory_bytes == 0
    # a failed model beside the default: the service still serves
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_requests_pick_a_model_by_id_and_bad_names_say_why(served, broken):
    _, asr, _ = served
    reply = await recognize(asr, "en")
    assert reply.model == "en"
    assert "forward" in reply.transcript.lower()
    code, message = await status_of(recognize(asr, "whisper-9"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "en" in message and "broken" in message  # lists the ids
    code, message = await status_of(recognize(asr, "broken"))
    assert code == grpc.StatusCode.UNAVAILABLE
    assert message.startswith("model broken failed to load: ")
    assert (
        message.removeprefix("model broken failed to load: ") == (await models(asr))["broken"].error
    )


async def test_admin_calls_are_for_operators_only(served):
    _, asr, _ = served
    for metadata in [(), (("x-speechmesh-identity", "bob"),)]:
        code, message = await status_of(
            asr.UnloadModel(asr_pb2.UnloadModelRequest(name="en"), metadata=metadata, timeout=10)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "operators only" in message and "SPEECHMESH_OPERATORS" in message
        code, _ = await status_of(
            asr.LoadModel(asr_pb2.LoadModelRequest(name="en"), metadata=metadata, timeout=10)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
    assert (await models(asr))["en"].state in (READY, UNLOADED)  # untouched by either


async def test_an_unloaded_model_is_loaded_again_by_the_next_request(served):
    _, asr, _ = served
    before = (await recognize(asr, "en")).transcript
    info = await asr.UnloadModel(
        asr_pb2.UnloadModelRequest(name="en"), metadata=OPERATOR, timeout=60
    )
    assert info.state == UNLOADED and info.memory_bytes == 0 and not info.device
    assert (await models(asr))["en"].state == UNLOADED
    assert (await recognize(asr, "en")).transcript == before  # waited for the load
    assert (await models(asr))["en"].state == READY
    # and an operator can load it ahead of the traffic
    await asr.UnloadModel(asr_pb2.UnloadModelRequest(name="en"), metadata=OPERATOR, timeout=60)
    info = await asr.LoadModel(asr_pb2.LoadModelRequest(name="en"), metadata=OPERATOR, timeout=120)
    assert info.state == READY and info.memory_bytes > 0


async def test_unloading_the_default_or_an_unknown_model_is_refused(served, tiny_whisper):
    _, asr, _ = served
    code, message = await status_of(
        asr.UnloadModel(
            asr_pb2.UnloadModelRequest(name=tiny_whisper.name), metadata=OPERATOR, timeout=10
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "default" in message
    code, _ = await status_of(
        asr.UnloadModel(asr_pb2.UnloadModelRequest(name="nope"), metadata=OPERATOR, timeout=10)
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await status_of(
        asr.UnloadModel(asr_pb2.UnloadModelRequest(), metadata=OPERATOR, timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_idle_model_is_unloaded_and_comes_back_on_demand(served):
    _, asr, _ = served
    before = (await recognize(asr, "en")).transcript
    for _ in range(100):
        if (await models(asr))["en"].state == UNLOADED:
            break
        await asyncio.sleep(0.1)
    assert (await models(asr))["en"].state == UNLOADED
    assert (await models(asr)).popitem()[1].name == "broken"  # still listed
    assert (await recognize(asr, "en")).transcript == before


async def test_a_stream_holds_its_model_against_an_unload(served):
    _, asr, _ = served
    data, rate = pcm16(GOFORWARD)
    config = asr_pb2.RecognitionConfig(model="en")
    call = asr.StreamingRecognize(
        chunked(stream_config(rate, config=config), data, rate, speed=4.0), timeout=120
    )
    first = asyncio.ensure_future(call.read())
    await asyncio.sleep(0.2)
    unloading = asyncio.ensure_future(
        asr.UnloadModel(asr_pb2.UnloadModelRequest(name="en"), metadata=OPERATOR, timeout=120)
    )
    await asyncio.sleep(0.3)
    assert not unloading.done()  # waits for the stream
    finals = []
    reply = await first
    while reply is not grpc.aio.EOF:
        if reply.result.is_final:
            finals.append(reply.result.transcript)
        reply = await call.read()
    assert "forward" in " ".join(finals).lower()
    assert (await unloading).state == UNLOADED


async def test_a_load_that_does_not_fit_fails_alone(served, tiny_whisper):
    _, asr, _ = served
    await recognize(asr, "en")  # loaded: with it, another copy of its 72 MiB passes 100 MiB
    code, message = await status_of(
        asr.LoadModel(
            asr_pb2.LoadModelRequest(name="big", source=str(TINY_EN)),
            metadata=OPERATOR,
            timeout=60,
        )
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "SPEECHMESH_ASR_MODEL_MEMORY_LIMIT_MB" in message and "100 MiB" in message
    listed = await models(asr)
    assert listed["big"].state == FAILED
    assert message == f"model big failed to load: {listed['big'].error}"
    assert "SPEECHMESH_ASR_MODEL_MEMORY_LIMIT_MB" in listed["big"].error
    # the others keep serving, and a new model that fits loads
    assert (await recognize(asr, "en")).model == "en"
    info = await asr.LoadModel(
        asr_pb2.LoadModelRequest(name="second", source=str(tiny_whisper)),
        metadata=OPERATOR,
        timeout=120,
    )
    assert info.state == READY
    assert (await recognize(asr, "second")).model == "second"
    code, _ = await status_of(
        asr.LoadModel(
            asr_pb2.LoadModelRequest(name="en", source=str(tiny_whisper)),
            metadata=OPERATOR,
            timeout=10,
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # "en" comes from somewhere else


async def test_speechmesh_health_shows_a_failed_model_as_degraded(served, capsys):
    from speechmesh.cli import main

    host, _, _ = served
    target = ["--target", f"127.0.0.1:{host.port}", "--service", "asr"]
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["health", *target])
    out, err = capsys.readouterr()
    assert code == 0, err  # degraded still serves
    row = next(line for line in out.splitlines() if line.startswith("asr "))
    assert row.split()[1] == "DEGRADED"
    assert "broken [failed]" in out
    broken = (await models(stub(served[2])))["broken"]
    assert f"asr: model broken failed to load: {broken.error}" in err
    code = await asyncio.to_thread(main, ["health", "--json", *target])
    # the in-process server logs to the same stdout: the report is the JSON line
    found = json.loads(next(x for x in capsys.readouterr().out.splitlines() if x[:1] == "{"))
    assert code == 0 and found["healthy"]
    (entry,) = found["services"]
    assert entry["status"] == "DEGRADED"
    assert {m["name"]: m["state"] for m in entry["models"]}["broken"] == "failed"
