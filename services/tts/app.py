"""Assembles the TTS service for the shared server host."""

from __future__ import annotations

from speechmesh.runtime.server import ServiceApp
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.models import TtsModels
from speechmesh.tts.servicer import TtsServicer, register, service_name


def build_app(settings: TtsSettings) -> ServiceApp:
    models = TtsModels(settings)
    servicer = TtsServicer(models, settings)
    return ServiceApp(
        name="tts",
        service_names=[service_name()],
        register=lambda server: register(servicer, server),
        load=models.load,
        close=models.close,
    )
