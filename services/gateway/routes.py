"""The route table: gRPC paths to service clusters.

The streaming methods of each service (read from the descriptor set) have no timeout and no
retries; the other methods of a package (`/speechmesh.<area>.v1.`) have the unary timeout and
retry on UNAVAILABLE. Health and reflection go to the service named by the
`x-speechmesh-service` header (default: the first, asr). Any other gRPC path is 404; every
other path is REST, which the transcoder turns into a gRPC path routed again by this table.
"""

from __future__ import annotations

from typing import Any

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.edge import F_CORS, cors_policy, edge_exempt
from speechmesh.gateway.envoy_common import duration
from speechmesh.runtime.registry import SERVICE_HEADER

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."


def route_action(area: str, *, streaming: bool, settings: GatewaySettings) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": area,
        # A client's grpc-timeout is the route timeout when it sets one.
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
    }
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
