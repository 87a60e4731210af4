"""The route table: gRPC paths to service clusters.

The streaming methods of each service (read from the descriptor set) have no timeout and no
retries; the other methods of a package (`/speechmesh.<area>.v1.`) have the unary timeout and
retry on UNAVAILABLE. Health and reflection go to the service named by the
`x-speechmesh-service` header (default: the first, asr). Any other gRPC path is 404.

The realtime paths (`/v1/realtime` to ASR, `/v1/realtime/speech` to TTS; any query string goes
along) are WebSocket upgrades to the service's WebSocket port (its `<area>_realtime` cluster):
upgrades are allowed on these routes only, with no timeout (a session lasts as long as its
client wants), and the transcoder is off there (it would answer 404 to a path that is not a
`google.api.http` route). Every other edge filter runs as on any route. When CORS origins are
configured (and are not '*'), an upgrade whose Origin is not one of them is 403: browsers do
not apply CORS to WebSockets, so the gateway does; a request with no Origin (not a browser)
passes. Every other path is REST, which the transcoder turns into a gRPC path routed again by
this table.
"""

from __future__ import annotations

import re
from typing import Any

from speechmesh.gateway.clusters import realtime_cluster_name
from speechmesh.gateway.config import REALTIME_PATHS, GatewaySettings
from speechmesh.gateway.edge import F_CORS, cors_policy, edge_exempt
from speechmesh.gateway.envoy_common import TYPE, TYPE_URL, duration
from speechmesh.gateway.transcoding import F_TRANSCODER
from speechmesh.runtime.registry import SERVICE_HEADER

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."


def route_action(area: str, *, streaming: bool, settings: GatewaySettings) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": area,
        # A client's grpc-timeout is the route timeout when it sets one.
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
    }
    if settings.upstream_host_rewrite:
        action["auto_host_rewrite"] = True  # the cluster's DNS name: the service's
    if streaming:
        action["timeout"] = "0s"
    else:
        action["timeout"] = duration(settings.unary_timeout_s)
        action["retry_policy"] = {
            # Only where no work can have been done twice: the service said UNAVAILABLE, or
            # the request never reached it.
            "retry_on": "unavailable,connect-failure,refused-stream,reset-before-request",
            "num_retries": 2,
            "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"},
        }
    return action


def routes(
    settings: GatewaySettings, services: dict[str, list[tuple[str, list[str]]]]
) -> list[dict[str, Any]]:
    """Every route, in match order (first match wins)."""
    table: list[dict[str, Any]] = []
    areas = list(services)
    for area, area_services in services.items():
        for service, streaming in area_services:
            for method in streaming:
                table.append(
                    {
                        "name": f"{area}.{method}",
                        "match": {"path": f"/{service}/{method}", "grpc": {}},
                        "route": route_action(area, streaming=True, settings=settings),
                    }
                )
        table.append(
            {
                "name": f"{area}.unary",
                "match": {"prefix": f"/speechmesh.{area}.v1.", "grpc": {}},
                "route": route_action(area, streaming=False, settings=settings),
            }
        )
    exempt = edge_exempt(settings)
    for prefix, kind in ((HEALTH_PREFIX, "health"), (REFLECTION_PREFIX, "reflection")):
        for area in areas:
            route: dict[str, Any] = {
                "name": f"{kind}.{area}",
                "match": {
                    "prefix": prefix,
                    "grpc": {},
                    "headers": [{"name": SERVICE_HEADER, "string_match": {"exact": area}}],
                },
                "route": route_action(area, streaming=True, settings=settings),
            }
            if kind == "health" and exempt:
                route["typed_per_filter_config"] = exempt
            table.append(route)
        default: dict[str, Any] = {
            "name": f"{kind}.default",
            "match": {"prefix": prefix, "grpc": {}},
            "route": route_action(areas[0], streaming=True, settings=settings),
        }
        if kind == "health" and exempt:
            default["typed_per_filter_config"] = exempt
        table.append(default)
    # Unknown gRPC methods: 404 (UNIMPLEMENTED to a gRPC client).
    table.append(
        {
            "name": "grpc_not_found",
            "match": {"prefix": "/", "grpc": {}},
            "direct_response": {
                "status": 404,
                "body": {"inline_string": "no such gRPC service: see /speechmesh.<area>.v1.*"},
            },
        }
    )
    table.extend(realtime_routes(settings))
    # Everything else is REST. The transcoder maps a known route to its gRPC method, which is
    # routed again above, and answers any other path 404 itself; this route only gives CORS
    # (and per-route filter configs) a route to read, it never reaches its cluster.
    table.append(
        {
            "name": "rest",
            "match": {"prefix": "/"},
            "route": route_action(areas[0], streaming=True, settings=settings),
        }
    )
    return table


def realtime_routes(settings: GatewaySettings) -> list[dict[str, Any]]:
    """The WebSocket routes of the services with realtime sessions (see the module's doc)."""

    def no_transcoding() -> dict[str, Any]:
        """Not a REST call: the transcoder stays out of the way (a new dict for each route, so
        the YAML holds no anchors)."""
        disabled = {TYPE: TYPE_URL + "envoy.config.route.v3.FilterConfig", "disabled": True}
        return {F_TRANSCODER: disabled}

    origins = settings.cors_allowed_origins
    check_origin = bool(origins) and "*" not in origins
    table: list[dict[str, Any]] = []
    for area in settings.realtime_upstreams():
        path = REALTIME_PATHS[area]
        if check_origin:
            allowed = "|".join(re.escape(origin) for origin in origins)
            table.append(
                {
                    "name": f"{area}.realtime.origin_not_allowed",
                    "match": {
                        "path": path,
                        "headers": [
                            {
                                # Present and none of the allowed origins (an absent header
                                # does not match an inverted pattern).
                                "name": "origin",
                                "string_match": {"safe_regex": {"regex": f"^(?:{allowed})$"}},
                                "invert_match": True,
                            }
                        ],
                    },
                    "direct_response": {
                        "status": 403,
                        "body": {
                            "inline_string": "origin not allowed: see"
                            " SPEECHMESH_GATEWAY_CORS_ALLOWED_ORIGINS"
                        },
                    },
                    "typed_per_filter_config": no_transcoding(),
                }
            )
        table.append(
            {
                "name": f"{area}.realtime",
                "match": {"path": path},
                "route": {
                    "cluster": realtime_cluster_name(area),
                    "timeout": "0s",
                    "upgrade_configs": [{"upgrade_type": "websocket"}],
                }
                | ({"auto_host_rewrite": True} if settings.upstream_host_rewrite else {}),
                "typed_per_filter_config": no_transcoding(),
            }
        )
    return table


def virtual_host(settings: GatewaySettings, services) -> dict[str, Any]:
    """The one virtual host: every domain, the route table, the CORS policy when origins are
    configured."""
    host: dict[str, Any] = {
        "name": "speechmesh",
        "domains": ["*"],
        "routes": routes(settings, services),
    }
    if settings.cors_allowed_origins:
        host["typed_per_filter_config"] = {F_CORS: cors_policy(settings, SERVICE_HEADER)}
    return host
