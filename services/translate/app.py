"""Assembles the translate service for the shared server host."""

from __future__ import annotations

from speechmesh.operations.host import Jobs
from speechmesh.runtime.identity import HopTrust
from speechmesh.runtime.peers import Peers
from speechmesh.runtime.server import ServiceApp, model_service_app
from speechmesh.translate import servicer
from speechmesh.translate.batch import batch_translate_speech_kind
from speechmesh.translate.cascade.peers import CascadePeers
from speechmesh.translate.cascade.pipeline import Cascade
from speechmesh.translate.config import TranslateSettings
from speechmesh.translate.models import TranslateModels


def build_app(settings: TranslateSettings) -> ServiceApp:
    models = TranslateModels(settings)
    kinds = [batch_translate_speech_kind(models, settings)]
    jobs = Jobs.for_service("translate", kinds, settings)
    peers = Peers(settings.peers)
    cascade_peers = CascadePeers(peers, settings.identity_header, HopTrust.from_settings(settings))
    cascade = Cascade(cascade_peers, lambda: models.vad)
    translate = servicer.TranslateServicer(models, settings, jobs, cascade)
    return model_service_app("translate", servicer, translate, models, peers, jobs=jobs)
