"""`speechmesh health` (status, models, devices and memory of every service),
`speechmesh languages` (what every service knows, by language) and `speechmesh models
list|load|unload` (the ASR service's models)."""

from __future__ import annotations

import argparse
import json

from speechmesh.client.cli.failures import Context
from speechmesh.client.cli.output import FAILED, OK, err, memory, table
from speechmesh.client.errors import SpeechmeshError, Unavailable
from speechmesh.client.languages import name
from speechmesh.client.sync import Client
from speechmesh.client.types import ModelInfo
from speechmesh.runtime.registry import SERVICES

LANGUAGE_COLUMNS = ["asr", "text-in", "text-out", "speech-in", "speech-out", "tts"]


def _model_entry(model: ModelInfo) -> dict:
    return {
        "name": model.name,
        "engine": model.engine,
        "state": model.state,
        "device": model.device,
        "dtype": model.dtype,
        "memory_bytes": model.memory_bytes,
        "default": model.default,
        "random_weights": model.random_weights,
        "error": model.error,
    }


def health(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    report = []
    services = [args.service] if getattr(args, "service", None) else list(SERVICES)
    for service, status in client.health(services).items():
        entry = {"service": service, "status": status.status, "error": status.error}
        models = []
        if status.serving:
            try:
                models = getattr(client, service).models()
            except SpeechmeshError as error:
                entry["error"] = error.message
        entry["models"] = [_model_entry(m) for m in models]
        if status.serving and any(m.state == "failed" for m in models):
            # Serving on its default model, with another that failed to load.
            entry["status"] = "DEGRADED"
        report.append(entry)
    healthy = all(entry["status"] in ("SERVING", "DEGRADED") for entry in report)
    if args.json:
        print(json.dumps({"target": client.target, "healthy": healthy, "services": report}))
        return OK if healthy else FAILED
    rows = [["SERVICE", "STATUS", "MODEL", "ENGINE", "DEVICE", "MEMORY"]]
    for entry in report:
        if not entry["models"]:
            detail = entry["error"].splitlines()[0][:60] if entry["error"] else ""
            rows.append([entry["service"], entry["status"], detail, "", "", ""])
        for i, m in enumerate(entry["models"]):
            label = m["name"] + (" (random weights)" if m["random_weights"] else "")
            if m["state"] != "ready":
                label += f" [{m['state']}]"
            rows.append(
                [
                    entry["service"] if i == 0 else "",
                    entry["status"] if i == 0 else "",
                    label,
                    m["engine"],
                    f"{m['device']} {m['dtype']}".strip(),
                    memory(m["memory_bytes"]),
                ]
            )
    print(f"gateway {client.target}")
    table(rows)
    for entry in report:
        for m in entry["models"]:
            if m["state"] == "failed":
                err(f"{entry['service']}: model {m['name']} failed to load: {m['error']}")
    return OK if healthy else FAILED


def models_list(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    models = client.asr.models()
    if args.json:
        print(json.dumps([_model_entry(m) for m in models]))
        return OK
    rows = [["MODEL", "STATE", "ENGINE", "DEVICE", "MEMORY", "LANGUAGES"]]
    for m in models:
        label = m.name + (" (default)" if m.default else "")
        rows.append(
            [
                label,
                m.state,
                m.engine,
                f"{m.device} {m.dtype}".strip(),
                memory(m.memory_bytes),
                ",".join(m.languages[:6]) + ("..." if len(m.languages) > 6 else ""),
            ]
        )
    table(rows)
    for m in models:
        if m.state == "failed":
            err(f"model {m.name} failed to load: {m.error}")
    return OK


def model_load(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    model = client.asr.load_model(args.name, source=args.source)
    print(f"{model.name}: {model.state} ({model.engine} on {model.device}, {model.dtype})")
    return OK


def model_unload(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    model = client.asr.unload_model(args.name)
    print(f"{model.name}: {model.state}")
    return OK


def _service_languages(client: Client, service: str) -> list[tuple[list[str], str]]:
    """(codes, column) of one service's models."""
    if service == "asr":
        return [(model.languages, "asr") for model in client.asr.models()]
    if service == "tts":
        return [(model.languages, "tts") for model in client.tts.models()]
    found = []
    for entry in client.translate.languages():
        found += [
            (entry.text_input, "text-in"),
            (entry.text_output, "text-out"),
            (entry.speech_input, "speech-in"),
            (entry.speech_output, "speech-out"),
        ]
    return found


def languages(args: argparse.Namespace, client: Client, ctx: Context) -> int:
    found: dict[str, set[str]] = {}
    for service in [args.service] if args.service else list(SERVICES):
        ctx.service = service
        try:
            for codes, column in _service_languages(client, service):
                for code in codes:
                    found.setdefault(code, set()).add(column)
        except Unavailable as error:
            if error.connect_failed:
                raise
            err(f"{service}: not available ({error.message}); its languages are left out")
        except SpeechmeshError as error:
            err(f"{service}: {error.code.name} ({error.message}); its languages are left out")
    if args.json:
        print(
            json.dumps(
                [
                    {"code": code, "name": name(code), "supports": sorted(found[code])}
                    for code in sorted(found)
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return OK
    if not found:
        err("no service answered with languages")
        return FAILED
    rows = [["CODE", "NAME", *[c.upper() for c in LANGUAGE_COLUMNS]]]
    for code in sorted(found):
        marks = ["x" if column in found[code] else "" for column in LANGUAGE_COLUMNS]
        rows.append([code, name(code), *marks])
    table(rows)
    return OK
