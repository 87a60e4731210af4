"""Assembles the translate service for the shared server host."""

from __future__ import annotations

from speechmesh.runtime.server import ServiceApp, model_service_app
from speechmesh.translate import servicer
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.models import TranslateModels


def build_app(settings: TranslateSettings) -> ServiceApp:
    models = TranslateModels(settings)
    translate = servicer.TranslateServicer(models, settings)
    return model_service_app("translate", servicer, translate, models)
