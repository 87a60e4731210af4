"""The Envoy bootstrap for containers (docker compose and Kubernetes).

    python -m speechmesh.gateway.container --out /etc/speechmesh/envoy.yaml [--check]

The same bootstrap as `speechmesh gateway config` (GatewaySettings and envoy_config stay the one
source of truth; every SPEECHMESH_GATEWAY_* variable still applies), with what a container
needs on top:

- Upstreams default to the service names, `asr:50051`, `translate:50052`, `tts:50053`, and
  for the realtime WebSocket ports `asr:50061` and `tts:50063`: compose service names, and in
  Kubernetes the headless Services of the same names. The clusters are STRICT_DNS, so every
  address a headless name resolves to (one per ready pod) becomes its own upstream host:
  LEAST_REQUEST spreads new streams (and WebSocket sessions) over the pods and a stream stays
  on the pod it started on. Envoy re-resolves the names every 5 s (its default), so scaled-up
  pods join within seconds and active health checks (gRPC health for the gRPC ports, TCP
  connects for the WebSocket ports) keep traffic off pods that are not serving.
- The admin interface stays on loopback (it can stop Envoy and dump secrets); a second
  listener, `--stats-port` (9902), exposes only its read-only `/stats/prometheus` and `/ready`,
  for Prometheus and for readiness probes.

gateway/envoy.yaml at the top of the repository is this module's output with no
SPEECHMESH_GATEWAY_* variable set (`make gateway` renders it; tests/gateway/test_rendered_config.py
keeps it current).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from speechmesh.gateway.config import REALTIME_PORTS, UPSTREAM_PORTS, GatewaySettings
from speechmesh.gateway.envoy_common import TYPE, TYPE_URL
from speechmesh.gateway.envoy_config import render_config

STATS_PORT = 9902
ADMIN_CLUSTER = "envoy_admin"
#: Admin paths the stats listener passes on; everything else there is 404.
STATS_PATHS = ("/stats/prometheus", "/ready")
CONTAINER_HEADER = """\
# Envoy bootstrap for the speechmesh gateway in a container, rendered by
# `python -m speechmesh.gateway.container` from SPEECHMESH_GATEWAY_* settings and the descriptor
# set (embedded below as proto_descriptor_bin). Do not edit: change the settings and render again.
# With the default settings this is gateway/envoy.yaml of the speechmesh repository, whose
# gateway/README.md says what each listener, route and filter does and which setting changes it.
"""


def default_upstreams() -> dict[str, str]:
    """Settings field -> "name:port" for every service (and every realtime WebSocket port),
    named as in compose and Kubernetes."""
    found = {f"{area}_upstream": f"{area}:{port}" for area, port in UPSTREAM_PORTS.items()}
    for area, port in REALTIME_PORTS.items():
        if f"{area}_websocket_upstream" in GatewaySettings.model_fields:
            found[f"{area}_websocket_upstream"] = f"{area}:{port}"
    return found


def container_settings(environ: Mapping[str, str] | None = None) -> GatewaySettings:
    """GatewaySettings with the container defaults; SPEECHMESH_GATEWAY_* variables win."""
    environ = os.environ if environ is None else environ
    given = {key.upper() for key in environ}
    defaults = {
        field: value
        for field, value in default_upstreams().items()
        if f"SPEECHMESH_GATEWAY_{field.upper()}" not in given
    }
    return GatewaySettings(**defaults)


def _stats_listener(settings: GatewaySettings, port: int) -> dict[str, Any]:
    routes = [
        {"match": {"path": path}, "route": {"cluster": ADMIN_CLUSTER}} for path in STATS_PATHS
    ]
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 404}})
    manager = {
        TYPE: TYPE_URL + "envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "stats",
        "codec_type": "HTTP1",
        "route_config": {
            "name": "stats",
            "virtual_hosts": [{"name": "stats", "domains": ["*"], "routes": routes}],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {TYPE: TYPE_URL + "envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "name": "stats",
        "address": {"socket_address": {"address": settings.host, "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def _admin_cluster(settings: GatewaySettings) -> dict[str, Any]:
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": settings.admin_host,
                                        "port_value": settings.admin_port,
                                    }
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def render_container_config(
    settings: GatewaySettings, stats_port: int = STATS_PORT
) -> dict[str, Any]:
    """The bootstrap of `render_config(settings)` plus the stats listener."""
    if stats_port in (settings.port, settings.admin_port):
        raise ValueError(f"stats port {stats_port} is already the gateway's or the admin port")
    config = render_config(settings)
    resources = config["static_resources"]
    resources["listeners"].append(_stats_listener(settings, stats_port))
    resources["clusters"].append(_admin_cluster(settings))
    return config


def render_container_yaml(settings: GatewaySettings, stats_port: int = STATS_PORT) -> str:
    body = yaml.safe_dump(render_container_config(settings, stats_port), sort_keys=False, width=100)
    return CONTAINER_HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmesh.gateway.container", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", help="file to write (default: standard output)")
    parser.add_argument(
        "--stats-port", type=int, default=STATS_PORT, help=f"metrics/readiness port ({STATS_PORT})"
    )
    parser.add_argument("--check", action="store_true", help="also run `envoy --mode validate`")
    args = parser.parse_args(argv)
    try:
        settings = container_settings()
        text = render_container_yaml(settings, args.stats_port)
    except (ValidationError, FileNotFoundError, ValueError) as error:
        print(f"speechmesh: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        out = pathlib.Path(args.out)
        # Written beside and renamed, so Envoy never reads a half-written file.
        partial = out.with_name(out.name + ".partial")
        partial.write_text(text)
        partial.replace(out)
        print(f"wrote the Envoy configuration to {out}", file=sys.stderr)
    if args.check:
        from speechmesh.gateway.envoy_process import validate_config

        if args.out is None:
            print("speechmesh: --check needs --out", file=sys.stderr)
            return 2
        ok, output = validate_config(settings, pathlib.Path(args.out))
        print("envoy --mode validate: " + ("OK" if ok else "FAILED\n" + output), file=sys.stderr)
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
