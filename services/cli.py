"""The `speechmesh` command: run services, build offline test checkpoints."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys

from pydantic import ValidationError

#: Flags that only some services take: flag -> its settings field.
_SERVICE_FLAGS = {
    "text_model": "--text-model",
    "extra_models": "--extra-models",
    "voices_dir": "--voices-dir",
    "engine": "--engine",
    "compute_type": "--compute-type",
    "workers": "--workers",
    "websocket_port": "--websocket-port",
}


def _serve(args: argparse.Namespace) -> int:
    from speechmesh.runtime import tracing
    from speechmesh.runtime.logging import configure_logging
    from speechmesh.runtime.registry import SERVICES
    from speechmesh.runtime.server import ServiceHost

    if args.service not in SERVICES:
        print(f"speechmesh: the {args.service} service is not available yet", file=sys.stderr)
        return 2
    settings_class = SERVICES[args.service].settings_class()
    build_app = SERVICES[args.service].build_app()
    for key, flag in _SERVICE_FLAGS.items():
        if getattr(args, key, None) is not None and key not in settings_class.model_fields:
            print(
                f"speechmesh: {flag} does not apply to the {args.service} service", file=sys.stderr
            )
            return 2

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in settings_class.model_fields and value is not None
    }
    try:
        settings = settings_class(**overrides)
    except ValidationError as error:
        print(f"speechmesh: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # Traces only with an OTLP endpoint set (OTEL_EXPORTER_OTLP_*ENDPOINT); else nothing loads.
    tracing.configure(args.service)
    host = ServiceHost(build_app(settings), settings)
    try:
        code = asyncio.run(host.run_until_signal())
    finally:
        tracing.shutdown()  # exports the spans still buffered
    if host.failed is not None:
        print(f"speechmesh: {args.service} could not start: {host.failed}", file=sys.stderr)
    return code


def _tiny(args: argparse.Namespace) -> int:
    from speechmesh.tiny.models import TINY_ARCHS, build_tiny

    if args.arch not in TINY_ARCHS:
        print(
            f"speechmesh: unknown arch {args.arch!r}; known: {', '.join(TINY_ARCHS)}",
            file=sys.stderr,
        )
        return 2
    path = build_tiny(args.arch, pathlib.Path(args.dest), seed=args.seed)
    print(f"built a tiny random {args.arch} checkpoint in {path} (random weights: for tests)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from speechmesh.inference.batcher import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_WAIT_MS
    from speechmesh.runtime.registry import SERVICES

    ports = ", ".join(f"{spec.name} {spec.port}" for spec in SERVICES.values())
    metrics_ports = ", ".join(f"{spec.name} {spec.metrics_port}" for spec in SERVICES.values())
    parser = argparse.ArgumentParser(prog="speechmesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run a service",
        description="Run a service. Every flag has a SPEECHMESH_<SERVICE>_<FLAG> variable too"
        " (SPEECHMESH_ASR_MODEL, SPEECHMESH_TRANSLATE_PORT, ...); flags win.",
    )
    serve.add_argument("service", choices=list(SERVICES))
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument(
        "--port",
        type=int,
        help=f"gRPC port ({ports}; 0 picks one)",
    )
    serve.add_argument("--model", help="Hugging Face id or checkpoint folder")
    serve.add_argument(
        "--text-model",
        help="translate: a second, lighter text-to-text model (NLLB, M2M100, Marian)",
    )
    serve.add_argument(
        "--extra-models",
        help="asr, tts: more models beside --model, comma-separated (asr: e.g. SenseVoice;"
        " tts: e.g. VITS)",
    )
    serve.add_argument("--voices-dir", help="tts: where stored voices live")
    serve.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    serve.add_argument("--dtype", help="auto, float32, float16 or bfloat16 (default auto)")
    serve.add_argument(
        "--metrics-port",
        type=int,
        help=f"Prometheus port ({metrics_ports})",
    )
    serve.add_argument(
        "--websocket-port",
        type=int,
        help="asr, tts: realtime WebSocket port (asr 50061, tts 50063; 0 picks a free one)",
    )
    serve.add_argument(
        "--max-batch-size",
        type=int,
        help=f"jobs per forward pass (default {DEFAULT_MAX_BATCH_SIZE})",
    )
    serve.add_argument(
        "--max-batch-wait-ms", type=float, help=f"batch fill wait (default {DEFAULT_MAX_WAIT_MS:g})"
    )
    serve.add_argument(
        "--engine",
        choices=["auto", "ctranslate2", "transformers"],
        help="asr: inference runtime (default auto: CTranslate2 when it can convert the model)",
    )
    serve.add_argument(
        "--compute-type", help="asr: CTranslate2 compute type (default auto: int8 on CPU)"
    )
    serve.add_argument(
        "--workers", type=int, help="asr: batches decoded side by side (default 0: auto)"
    )
    serve.add_argument("--max-queue", type=int, help="queued jobs before RESOURCE_EXHAUSTED")
    serve.add_argument(
        "--peers",
        help="the other services this one calls, NAME=HOST:PORT,... (asr lists their models"
        " in /v1/models; translate's cascade calls asr and tts)",
    )
    serve.add_argument("--log-format", choices=["auto", "json", "console"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    models = commands.add_parser(
        "models", help="the ASR models (list, load, unload) and offline test checkpoints"
    )
    model_commands = models.add_subparsers(dest="models_command", required=True)
    tiny = model_commands.add_parser(
        "tiny", help="build a tiny random checkpoint of a real architecture (offline)"
    )
    tiny.add_argument("arch", help="architecture, e.g. whisper")
    tiny.add_argument("dest", help="folder to write")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny)

    from speechmesh.client.cli import add_model_commands  # `models list|load|unload`

    add_model_commands(model_commands)

    from speechmesh.gateway.commands import add_commands  # `gateway config`

    add_commands(commands)

    from speechmesh.suite.commands import add_commands as add_suite_commands  # `up`

    add_suite_commands(commands)

    from speechmesh.client.cli import add_commands as add_client_commands  # transcribe, speak, ...

    add_client_commands(commands)

    from speechmesh.ui import add_commands as add_ui_commands  # `ui`: the demo web page

    add_ui_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
