"""`speechmesh up`: every service and the gateway as local processes."""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sys

#: The default of `up --models-dir` (used with --offline only).
MODELS_DIR_ENV = "SPEECHMESH_UP_MODELS_DIR"


def _up(args: argparse.Namespace) -> int:
    from speechmesh.gateway.commands import gateway_settings
    from speechmesh.runtime.registry import SERVICES
    from speechmesh.suite.supervisor import Suite, default_cache_dir, run_suite

    settings = gateway_settings()
    if settings is None:
        return 2
    models = {}
    for item in args.model or []:
        name, sep, model = item.partition("=")
        if not sep or not model:
            print(f"speechmesh: --model takes SERVICE=MODEL, got {item!r}", file=sys.stderr)
            return 2
        models[name] = model
    if args.models_dir and not args.offline:
        print("speechmesh: --models-dir goes with --offline", file=sys.stderr)
        return 2
    models_dir = args.models_dir or os.environ.get(MODELS_DIR_ENV)
    services = args.services.split(",") if args.services else list(SERVICES)
    suite = Suite(
        services=[name.strip() for name in services if name.strip()],
        models=models,
        offline=args.offline,
        cache_dir=pathlib.Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        gateway=settings,
        models_dir=pathlib.Path(models_dir) if models_dir and args.offline else None,
    )
    return asyncio.run(run_suite(suite, args.ready_timeout))


def add_commands(commands) -> None:
    """Adds `up` to the `speechmesh` command's subparsers."""
    up = commands.add_parser(
        "up",
        help="run every service and the gateway",
        description="Start every service and Envoy in front of them as local processes, wait"
        " until each is SERVING through the gateway, and stop them all on Ctrl-C. Services take"
        " their SPEECHMESH_<SERVICE>_* settings, the gateway SPEECHMESH_GATEWAY_*.",
    )
    up.add_argument(
        "--offline",
        action="store_true",
        help="serve tiny random checkpoints (built once into --cache-dir) to every service"
        " whose model is not chosen by --model or SPEECHMESH_<SERVICE>_MODEL",
    )
    up.add_argument(
        "--model",
        action="append",
        metavar="SERVICE=MODEL",
        help="a service's model (Hugging Face id or folder); repeatable",
    )
    up.add_argument("--services", help="comma-separated subset to run (default: all)")
    up.add_argument("--cache-dir", help="where --offline keeps its checkpoints")
    up.add_argument(
        "--models-dir",
        help="a folder of real checkpoints for --offline: a service whose model is not chosen"
        " serves the one it knows from there instead of a tiny random one (asr:"
        " whisper-tiny.en, tts: vits-en-joe, with a tiny csm beside it for cloning); default"
        f" ${MODELS_DIR_ENV}",
    )
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=900.0,
        help="seconds to wait for every service to be SERVING (default 900)",
    )
    up.set_defaults(func=_up)
