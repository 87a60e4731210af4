"""Assembles the translate service for the shared server host."""

from __future__ import annotations

from speechmesh.runtime.server import ServiceApp
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.models import TranslateModels
from speechmesh.translate.servicer import TranslateServicer, register, service_name


def build_app(settings: TranslateSettings) -> ServiceApp:
    models = TranslateModels(settings)
    servicer = TranslateServicer(models, settings)
    return ServiceApp(
        name="translate",
        service_names=[service_name()],
        register=lambda server: register(servicer, server),
        load=models.load,
        close=models.close,
    )
