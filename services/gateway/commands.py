"""`speechmesh gateway config`: render (and check) the Envoy bootstrap."""

from __future__ import annotations

import argparse
import pathlib
import sys

from pydantic import ValidationError


def gateway_settings():
    from speechmesh.gateway.config import GatewaySettings

    try:
        return GatewaySettings()
    except ValidationError as error:
        print(f"speechmesh: invalid gateway settings:\n{error}", file=sys.stderr)
        return None


def _config(args: argparse.Namespace) -> int:
    from speechmesh.gateway.envoy_config import render_yaml
    from speechmesh.gateway.envoy_process import validate_config

    settings = gateway_settings()
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


def add_commands(commands) -> None:
    """Adds `gateway` to the `speechmesh` command's subparsers."""
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
