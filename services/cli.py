"""The `speechmesh` command: run services, build offline test checkpoints."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys

from pydantic import ValidationError


def _serve(args: argparse.Namespace) -> int:
    from speechmesh.common.logging import configure_logging
    from speechmesh.common.server import ServiceHost

    if args.service != "asr":
        print(f"speechmesh: the {args.service} service is not available yet", file=sys.stderr)
        return 2
    from speechmesh.asr.app import build_app
    from speechmesh.asr.config import AsrSettings

    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in AsrSettings.model_fields and value is not None
    }
    try:
        settings = AsrSettings(**overrides)
    except ValidationError as error:
        print(f"speechmesh: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    host = ServiceHost(build_app(settings), settings)
    code = asyncio.run(host.run_until_signal())
    if host.failed is not None:
        print(f"speechmesh: {args.service} could not start: {host.failed}", file=sys.stderr)
    return code


def _tiny(args: argparse.Namespace) -> int:
    from speechmesh.common.tiny_models import TINY_ARCHS, build_tiny

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
    parser = argparse.ArgumentParser(prog="speechmesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run a service",
        description="Run a service. Every flag has a SPEECHMESH_<SERVICE>_<FLAG> variable too"
        " (SPEECHMESH_ASR_MODEL, SPEECHMESH_ASR_PORT, ...); flags win.",
    )
    serve.add_argument("service", choices=["asr", "translate", "tts"])
    serve.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="gRPC port (asr default 50051; 0 picks one)")
    serve.add_argument("--model", help="Hugging Face id or checkpoint folder")
    serve.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    serve.add_argument("--dtype", help="auto, float32, float16 or bfloat16 (default auto)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (asr default 9151)")
    serve.add_argument("--max-batch-size", type=int, help="jobs per forward pass (default 8)")
    serve.add_argument("--max-batch-wait-ms", type=float, help="batch fill wait (default 5)")
    serve.add_argument("--max-queue", type=int, help="queued jobs before RESOURCE_EXHAUSTED")
    serve.add_argument("--log-format", choices=["auto", "json", "console"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    models = commands.add_parser("models", help="model utilities")
    model_commands = models.add_subparsers(dest="models_command", required=True)
    tiny = model_commands.add_parser(
        "tiny", help="build a tiny random checkpoint of a real architecture (offline)"
    )
    tiny.add_argument("arch", help="architecture, e.g. whisper")
    tiny.add_argument("dest", help="folder to write")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
