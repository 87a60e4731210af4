"""Assembles the TTS service for the shared server host."""

from __future__ import annotations

from speechmesh.operations.host import Jobs
from speechmesh.runtime.server import ServiceApp, model_service_app
from speechmesh.tts import realtime, servicer
from speechmesh.tts.batch import batch_synthesize_kind
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.models import TtsModels


def build_app(settings: TtsSettings) -> ServiceApp:
    models = TtsModels(settings)
    jobs = Jobs.for_service("tts", [batch_synthesize_kind(models, settings)], settings)
    tts = servicer.TtsServicer(models, settings, jobs)
    return model_service_app(
        "tts",
        servicer,
        tts,
        models,
        jobs=jobs,
        websocket_routes=realtime.route(tts.speaker, tts.streams),
    )
