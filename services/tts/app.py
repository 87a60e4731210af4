"""Assembles the TTS service for the shared server host."""

from __future__ import annotations

from speechmesh.runtime.server import ServiceApp, model_service_app
from speechmesh.tts import servicer
from speechmesh.tts.config import TtsSettings
from speechmesh.tts.models import TtsModels


def build_app(settings: TtsSettings) -> ServiceApp:
    models = TtsModels(settings)
    return model_service_app("tts", servicer, servicer.TtsServicer(models, settings), models)
