"""The container health probe (`python -m speechmesh.runtime.healthcheck`) against a real
in-process server: unhealthy while the model loads, healthy once SERVING, unhealthy when gone."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from speechmesh.runtime.healthcheck import check, main, service_port
from speechmesh.runtime.server import ServiceApp, ServiceHost
from speechmesh.runtime.settings import ServiceSettings
from tests.deploy.conftest import SERVICES, settings_class

ASR = "speechmesh.asr.v1.AsrService"


async def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The probe as Docker runs it: a separate process; (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "speechmesh.runtime.healthcheck",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, output.decode()


def _gated_app(loaded: asyncio.Event) -> ServiceApp:
    async def load() -> None:
        await loaded.wait()

    async def close() -> None:
        return None

    return ServiceApp(
        name="probe", service_names=[ASR], register=lambda server: None, load=load, close=close
    )


async def test_probe_follows_the_server_from_loading_to_serving_to_gone():
    loaded = asyncio.Event()
    settings = ServiceSettings(host="127.0.0.1", port=0, metrics=False, grace_period_s=0)
    host = ServiceHost(_gated_app(loaded), settings)
    await host.start()
    port = str(host.port)
    try:
        # Loading: the port answers, but NOT_SERVING is not healthy.
        serving, seen = await asyncio.to_thread(check, "127.0.0.1", host.port)
        assert not serving and seen.endswith("NOT_SERVING")
        code, output = await probe("--port", port)
        assert code == 1 and "NOT_SERVING" in output

        loaded.set()
        await asyncio.wait_for(host.ready.wait(), 5)
        code, output = await probe("--port", port)
        assert code == 0 and output.strip() == f"127.0.0.1:{port}: SERVING"
        code, _ = await probe("--port", port, "--name", ASR)
        assert code == 0
        code, output = await probe("--port", port, "--name", "no.such.Service")
        assert code == 1 and "NOT_FOUND" in output
        # --service reads the port the service itself would: its settings, env included.
        code, _ = await probe("--service", "asr", env={"SPEECHMESH_ASR_PORT": port})
        assert code == 0
    finally:
        await host.stop(0)
    code, output = await probe("--port", port, "--timeout", "1")
    assert code == 1 and "no answer" in output


@pytest.mark.parametrize("service", SERVICES)
def test_service_port_is_the_settings_default(service, monkeypatch):
    monkeypatch.delenv(f"SPEECHMESH_{service.upper()}_PORT", raising=False)
    assert service_port(service) == settings_class(service)().port


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exit_:
        main(["--service", "nope"])
    assert exit_.value.code == 2
