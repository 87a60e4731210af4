"""The generic model registry (speechmesh.inference.registry): ids and the default, loading off
the event loop with LOADING -> READY / FAILED and the error kept, what `get` answers in each
state, the batcher sized by the settings, and close."""

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


async def test_a_missing_checkpoint_names_the_setting_of_its_model(tmp_path, checkpoints):
    registry = Registry(settings(), str(checkpoints / "a"), str(tmp_path / "gone"))
    with pytest.raises(ModelNotFoundError, match="SPEECHMESH_TEST_EXTRA \\(or --extra\\)"):
        await registry.load()
    assert registry.models["gone"].state is ModelState.FAILED
    assert "SPEECHMESH_TEST_EXTRA" in registry.models["gone"].error
    # the one loaded before it serves (and is closed)
    assert registry.ready() == [registry.default]
    await registry.close()


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
