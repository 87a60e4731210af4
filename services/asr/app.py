"""Assembles the ASR service for the shared server host."""

from __future__ import annotations

from speechmesh.asr import realtime, servicer
from speechmesh.asr.batch import batch_recognize_kind
from speechmesh.asr.config import AsrSettings
from speechmesh.asr.models import AsrModels
from speechmesh.asr.openai import AsrOpenAi
from speechmesh.operations.host import Jobs
from speechmesh.runtime.peers import Peers
from speechmesh.runtime.server import ServiceApp, model_service_app


def build_app(settings: AsrSettings) -> ServiceApp:
    models = AsrModels(settings)
    peers = Peers(settings.peers)
    jobs = Jobs.for_service("asr", [batch_recognize_kind(models, settings)], settings)
    asr = servicer.AsrServicer(models, settings, AsrOpenAi(models, peers), jobs)
    return model_service_app(
        "asr",
        servicer,
        asr,
        models,
        peers,
        jobs=jobs,
        websocket_routes=realtime.route(models, asr.streams),
    )
