"""The generic model registry (speechmesh.inference.registry): ids and the default, loading off
the event loop with LOADING -> READY / FAILED and the error kept, what `get` answers in each
state, the batcher sized by the settings, and close; at run time: unloading (never the default,
after the requests using it), idle unloading, reloading on the next request (one load for many
waiters), LoadModel's adding and refusals, and the memory budget."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from speechmesh.inference.model_source import ModelNotFoundError
from speechmesh.inference.model_state import ModelState
from speechmesh.inference.registry import ModelRegistry, ServedModel
from speechmesh.runtime.errors import ApiError
from speechmesh.runtime.settings import ServiceSettings


class Engine:
    device, dtype, random_weights = "cpu", "float32", True

    def __init__(self, name: str):
        self.name = name
        self.thread = threading.current_thread()
        self.warm = False

    def warmup(self) -> None:
        self.warm = True

    def run_batch(self, jobs):
        return [f"{self.name}:{job}" for job in jobs]


class Model(ServedModel[Engine]):
    pass


class Registry(ModelRegistry[Model]):
    """Opens an Engine per model; `gate` (when set) holds the loading thread until it is set,
    `broken` names the models whose checkpoint fails to open."""

    def __init__(self, settings: ServiceSettings, *settings_of_models: str):
        super().__init__(settings, Model(settings_of_models[0], "SPEECHMESH_TEST_MODEL"), _Log())
        for setting in settings_of_models[1:]:
            self.add(Model(setting, "SPEECHMESH_TEST_EXTRA", "--extra"))
        self.gate: threading.Event | None = None
        self.broken: set[str] = set()

    def open_engine(self, model: Model, path) -> Engine:
        if self.gate is not None:
            self.gate.wait(10)
        if model.name in self.broken:
            raise ValueError(f"{path.name} is not a checkpoint this service runs")
        return Engine(model.name)

    def serve(self, model: Model, engine: Engine) -> None:
        model.batcher = self.batcher(model, engine.run_batch, key=lambda job: None)


class _Log:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def info(self, event: str, **fields) -> None:
        self.events.append((event, fields))

    warning = info


@pytest.fixture
def checkpoints(tmp_path):
    """Three checkpoint folders: a/, b/ and c/ (a config.json each)."""
    for name in "abc":
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    return tmp_path


def settings(**values) -> ServiceSettings:
    return ServiceSettings(**values)


def code_of(registry: Registry, name: str) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(ApiError) as raised:
        registry.get(name)
    return raised.value.code, raised.value.message


async def test_models_are_held_by_id_with_the_first_as_default(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), f"bee={checkpoints / 'b'}")
    assert list(registry.models) == ["a", "bee"]
    assert registry.default is registry.models["a"]
    assert (registry.models["bee"].env_var, registry.models["bee"].flag) == (
        "SPEECHMESH_TEST_EXTRA",
        "--extra",
    )
    # the same source twice is one model; another source under a taken id says how to alias it
    registry.add(Model(str(checkpoints / "a"), "SPEECHMESH_TEST_EXTRA"))
    assert list(registry.models) == ["a", "bee"]
    with pytest.raises(ValueError, match=f"ID={checkpoints / 'c'}"):
        registry.add(Model(f"a={checkpoints / 'c'}", "SPEECHMESH_TEST_EXTRA"))


async def test_load_makes_every_model_ready_off_the_event_loop(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    assert [m.state for m in registry.models.values()] == [ModelState.LOADING] * 2
    assert registry.ready() == []
    await registry.load()
    for model in registry.models.values():
        assert (model.state, model.error) == (ModelState.READY, "")
        assert model.engine is not None and model.engine.warm
        assert model.engine.thread is not threading.main_thread()
        assert await model.batcher.submit("x") == f"{model.name}:x"
    assert registry.ready() == list(registry.models.values())
    assert [fields["model"] for _, fields in registry.log.events] == ["a", "b"]
    assert registry.log.events[0] == (
        "model.ready",
        {"model": "a", "engine": "", "device": "cpu", "dtype": "float32", "random_weights": True},
    )
    await registry.close()


async def test_warmup_is_skipped_when_the_settings_say_so(checkpoints):
    registry = Registry(settings(warmup=False), str(checkpoints / "a"))
    await registry.load()
    assert not registry.default.engine.warm
    await registry.close()


async def test_get_names_the_default_a_model_by_id_or_source_and_not_found(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), f"bee={checkpoints / 'b'}")
    await registry.load()
    bee = registry.models["bee"]
    assert registry.get("") is registry.default
    assert registry.get("bee") is bee
    assert registry.get(str(checkpoints / "b")) is bee
    code, message = code_of(registry, "whisper")
    assert code == grpc.StatusCode.NOT_FOUND
    assert message == (
        "model 'whisper' is not served here; ListModels lists the models (a, bee; default a)"
    )
    await registry.close()


async def test_a_loading_model_is_unavailable_until_ready(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"))
    registry.gate = threading.Event()
    loading = asyncio.create_task(registry.load())
    await asyncio.sleep(0.05)
    # the event loop is free while the engine loads, and requests hear it is loading
    assert registry.default.state is ModelState.LOADING
    assert code_of(registry, "") == (
        grpc.StatusCode.UNAVAILABLE,
        "model a is still loading; retry shortly",
    )
    registry.gate.set()
    await loading
    assert registry.get("a").state is ModelState.READY
    await registry.close()


async def test_a_failed_load_is_raised_and_kept(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    registry.broken = {"a"}
    with pytest.raises(ValueError, match="a is not a checkpoint"):
        await registry.load()
    model = registry.default
    assert model.state is ModelState.FAILED
    assert model.error == "a is not a checkpoint this service runs"
    assert model.engine is None and model.batcher is None
    assert code_of(registry, "a") == (
        grpc.StatusCode.UNAVAILABLE,
        "model a failed to load: a is not a checkpoint this service runs",
    )
    # start-up stops at the first failure: the next model was never loaded
    assert registry.models["b"].state is ModelState.LOADING
    assert registry.ready() == []


async def test_a_model_beside_the_default_that_fails_is_kept_failed_while_the_rest_serve(
    tmp_path, checkpoints
):
    registry = Registry(
        settings(), str(checkpoints / "a"), str(tmp_path / "gone"), str(checkpoints / "b")
    )
    await registry.load()  # start-up goes on: only the default's failure stops it
    gone = registry.models["gone"]
    assert gone.state is ModelState.FAILED
    assert "SPEECHMESH_TEST_EXTRA (or --extra)" in gone.error
    assert registry.ready() == [registry.default, registry.models["b"]]
    assert ("model.failed", {"model": "gone", "error": gone.error}) in registry.log.events
    # a request for it hears why, and the default's failure still stops start-up
    code, message = code_of(registry, "gone")
    assert code == grpc.StatusCode.UNAVAILABLE and message.startswith("model gone failed to load")
    with pytest.raises(ApiError) as raised:
        await registry.acquire("gone")
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    await registry.close()
    broken = Registry(settings(), str(tmp_path / "gone"), str(checkpoints / "b"))
    with pytest.raises(ModelNotFoundError, match="SPEECHMESH_TEST_MODEL"):
        await broken.load()


async def test_a_model_loads_by_itself_and_a_failed_one_can_load_again(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"))
    registry.broken = {"a"}
    with pytest.raises(ValueError):
        await registry.load_model(registry.default)
    registry.broken = set()
    await registry.load_model(registry.default)
    assert (registry.default.state, registry.default.error) == (ModelState.READY, "")
    await registry.close()


async def test_the_batcher_is_sized_by_the_settings(checkpoints):
    registry = Registry(
        settings(max_batch_size=3, max_batch_wait_ms=7, max_queue=11), str(checkpoints / "a")
    )
    batcher = registry.batcher(registry.default, Engine("a").run_batch, key=len, workers=2)
    assert (batcher.name, batcher.max_batch_size, batcher.max_wait_s) == ("a", 3, 0.007)
    assert (batcher.max_queue, batcher.workers) == (11, 2)
    await batcher.close()


async def test_close_stops_every_batcher(checkpoints):
    closed: list[str] = []

    class Batcher:
        def __init__(self, name):
            self.name = name

        async def close(self):
            closed.append(self.name)

    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    registry.serve = lambda model, engine: setattr(model, "batcher", Batcher(model.name))
    await registry.load()
    await registry.close()
    assert closed == ["a", "b"]


# -- loading and unloading at run time -------------------------------------------------------


async def test_unloading_frees_a_model_and_the_next_request_loads_it_again(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    await registry.load()
    b = registry.models["b"]
    first_engine = b.engine
    await registry.unload_model(b)
    assert (b.state, b.engine, b.batcher) == (ModelState.UNLOADED, None, None)
    # the synchronous lookup says so; a request that may load it loads it and waits
    code, message = code_of(registry, "b")
    assert code == grpc.StatusCode.UNAVAILABLE and "unloaded" in message
    async with registry.use("b") as model:
        assert model is b and model.state is ModelState.READY
        assert model.engine is not first_engine
        assert await model.batcher.submit("x") == "b:x"
    assert ("model.unloaded", {"model": "b", "reason": "operator"}) in registry.log.events
    await registry.close()


async def test_the_default_model_cannot_be_unloaded(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"))
    await registry.load()
    with pytest.raises(ApiError) as raised:
        await registry.unload_model(registry.default)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "default" in raised.value.message
    assert registry.default.state is ModelState.READY
    await registry.close()


async def test_an_unload_waits_for_the_requests_using_the_model(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    await registry.load()
    b = registry.models["b"]
    release = asyncio.Event()
    results = []

    async def request():
        async with registry.use("b") as model:
            await release.wait()
            results.append(await model.batcher.submit("late"))

    using = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    unloading = asyncio.create_task(registry.unload_model(b))
    await asyncio.sleep(0.05)
    assert not unloading.done() and b.state is ModelState.READY and b.draining
    # a request arriving meanwhile waits for the unload, then loads the model again
    arriving = asyncio.create_task(registry.acquire("b"))
    await asyncio.sleep(0.05)
    assert not arriving.done()
    release.set()
    await using
    await unloading
    assert results == ["b:late"]
    assert await arriving is b and b.state is ModelState.READY
    await registry.close()


async def test_idle_models_other_than_the_default_are_unloaded(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    registry.idle_unload_s = 0.2
    await registry.load()
    b = registry.models["b"]
    async with registry.use("b"):
        await asyncio.sleep(0.4)  # in use: never idle
        assert b.state is ModelState.READY
    unloaded = ("model.unloaded", {"model": "b", "reason": "idle"})
    for _ in range(200):
        if unloaded in registry.log.events:
            break
        await asyncio.sleep(0.02)
    assert b.state is ModelState.UNLOADED
    assert registry.default.state is ModelState.READY  # the default stays
    assert unloaded in registry.log.events
    # concurrent requests for it share one load
    loads = []
    opened = registry.open_engine
    registry.open_engine = lambda model, path: loads.append(model.name) or opened(model, path)
    got = await asyncio.gather(*(registry.acquire("b") for _ in range(5)))
    assert got == [b] * 5 and loads == ["b"]
    await registry.close()
    assert registry._reaper is None


async def test_load_named_adds_loads_and_refuses_what_it_should(checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"))
    registry.new_model = lambda name, source: Model(f"{name}={source}", "LoadModelRequest.source")
    await registry.load()
    added = await registry.load_named("cee", str(checkpoints / "c"))
    assert added is registry.models["cee"] and added.state is ModelState.READY
    assert await registry.load_named("cee") is added  # already ready: as it is
    for name, source, code in [
        ("", "", grpc.StatusCode.INVALID_ARGUMENT),
        ("nope", "", grpc.StatusCode.NOT_FOUND),
        ("bad/id", str(checkpoints / "b"), grpc.StatusCode.INVALID_ARGUMENT),
        ("cee", str(checkpoints / "b"), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(ApiError) as raised:
            await registry.load_named(name, source)
        assert raised.value.code == code, (name, source)
    # a source that cannot be loaded: the model stays listed, failed, with its error
    with pytest.raises(ApiError) as raised:
        await registry.load_named("gone", str(checkpoints / "missing"))
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert registry.models["gone"].state is ModelState.FAILED
    assert "does not exist" in registry.models["gone"].error
    await registry.close()


async def test_a_load_past_the_memory_budget_fails_alone(checkpoints):
    (checkpoints / "a" / "model.safetensors").write_bytes(b"\0" * 3000)
    (checkpoints / "b" / "model.safetensors").write_bytes(b"\0" * 5000)
    registry = Registry(settings(), str(checkpoints / "a"), str(checkpoints / "b"))
    registry.memory_limit_bytes = 6000
    registry.memory_limit_setting = "SPEECHMESH_TEST_MODEL_MEMORY_LIMIT_MB"
    registry.open_engine = lambda model, path: _Sized(model.name, path)
    await registry.load()
    b = registry.models["b"]
    assert b.state is ModelState.FAILED
    assert b.error_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "needs about 5000 bytes" in b.error and "a (3000 bytes)" in b.error
    assert "SPEECHMESH_TEST_MODEL_MEMORY_LIMIT_MB" in b.error
    with pytest.raises(ApiError) as raised:
        await registry.acquire("b")
    assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # the default still serves, and with the budget raised the same load succeeds
    assert await registry.default.batcher.submit("x") == "a:x"
    registry.memory_limit_bytes = 10_000
    assert (await registry.load_named("b")).state is ModelState.READY
    await registry.close()


class _Sized(Engine):
    def __init__(self, name, path):
        super().__init__(name)
        self.memory_bytes = (path / "model.safetensors").stat().st_size
