"""Assembles the translate service for the shared server host."""

from __future__ import annotations

from speechmesh.operations.host import Jobs
from speechmesh.runtime.server import ServiceApp, model_service_app
from speechmesh.translate import servicer
from speechmesh.translate.batch import batch_translate_speech_kind
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.models import TranslateModels


def build_app(settings: TranslateSettings) -> ServiceApp:
    models = TranslateModels(settings)
    kinds = [batch_translate_speech_kind(models, settings)]
    jobs = Jobs.for_service("translate", kinds, settings)
    translate = servicer.TranslateServicer(models, settings, jobs)
    return model_service_app("translate", servicer, translate, models, jobs=jobs)
