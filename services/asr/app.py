"""Assembles the ASR service for the shared server host."""

from __future__ import annotations

from speechmesh.asr.config import AsrSettings
from speechmesh.asr.models import AsrModels
from speechmesh.asr.openai import AsrOpenAi
from speechmesh.asr.servicer import AsrServicer, register, service_name
from speechmesh.runtime.peers import Peers
from speechmesh.runtime.server import ServiceApp


def build_app(settings: AsrSettings) -> ServiceApp:
    models = AsrModels(settings)
    peers = Peers(settings.peers)
    servicer = AsrServicer(models, settings, AsrOpenAi(models, peers))

    async def close() -> None:
        await models.close()
        await peers.close()

    return ServiceApp(
        name="asr",
        service_names=[service_name()],
        register=lambda server: register(servicer, server),
        load=models.load,
        close=close,
    )
