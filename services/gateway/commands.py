"""`speechmesh gateway config` and `speechmesh up`: the gateway's command-line entries."""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import sys

from pydantic import ValidationError


def _settings():
    from speechmesh.gateway.config import GatewaySettings

    try:
        return GatewaySettings()
    except ValidationError as error:
        print(f"speechmesh: invalid gateway settings:\n{error}", file=sys.stderr)
        return None


def _config(args: argparse.Namespace) -> int:
    from speechmesh.gateway.envoy_config import render_yaml
    from speechmesh.gateway.suite import validate_config

    settings = _settings()
    if settings is None:
        return 2
    try:
        text = render_yaml(settings)
    except (FileNotFoundError, ValueError) as error:
        print(f"speechmesh: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        pathlib.Path(args.out).write_text(text)
        print(f"wrote the Envoy configuration to {args.out}", file=sys.stderr)
    if args.check:
        path = pathlib.Path(args.out) if args.out else None
        if path is None:
            import tempfile

            with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
                handle.write(text)
            path = pathlib.Path(handle.name)
        try:
            ok, output = validate_config(settings, path)
        finally:
            if args.out is None:
                path.unlink()
        print("envoy --mode validate: " + ("OK" if ok else "FAILED\n" + output), file=sys.stderr)
        return 0 if ok else 1
    return 0


def _up(args: argparse.Namespace) -> int:
    from speechmesh.cli import SERVICES
    from speechmesh.gateway.suite import Suite, default_cache_dir, run_suite

    settings = _settings()
    if settings is None:
        return 2
    models = {}
    for item in args.model or []:
        name, sep, model = item.partition("=")
        if not sep or not model:
            print(f"speechmesh: --model takes SERVICE=MODEL, got {item!r}", file=sys.stderr)
            return 2
        models[name] = model
    services = args.services.split(",") if args.services else list(SERVICES)
    suite = Suite(
        services=[name.strip() for name in services if name.strip()],
        models=models,
        offline=args.offline,
        cache_dir=pathlib.Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        gateway=settings,
    )
    return asyncio.run(run_suite(suite, args.ready_timeout))


def add_commands(commands) -> None:
    """Adds `gateway` and `up` to the `speechmesh` command's subparsers."""
    gateway = commands.add_parser("gateway", help="the Envoy gateway")
    gateway_commands = gateway.add_subparsers(dest="gateway_command", required=True)
    config = gateway_commands.add_parser(
        "config",
        help="print or write the Envoy bootstrap",
        description="Render the Envoy bootstrap (YAML) from SPEECHMESH_GATEWAY_* settings and"
        " the descriptor set of `make protos`.",
    )
    config.add_argument("--out", help="file to write (default: standard output)")
    config.add_argument(
        "--check", action="store_true", help="also run `envoy --mode validate` on it"
    )
    config.set_defaults(func=_config)

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
        "--ready-timeout",
        type=float,
        default=900.0,
        help="seconds to wait for every service to be SERVING (default 900)",
    )
    up.set_defaults(func=_up)
