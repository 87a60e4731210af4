"""The Envoy bootstrap, rendered from GatewaySettings and the descriptor set.

One listener takes gRPC (HTTP/2) and REST (HTTP/1.1 or h2c; h2 and HTTP/1.1 over TLS when a
certificate is set). Its HTTP filters, in order:

1. header_mutation: strips the identity header and the hop proof (x-speechmesh-hop) from
   clients (only Envoy sets them; with a hop token, the route table adds the proof to every
   upstream request: speechmesh.runtime.identity).
2. cors: the policy sits on the virtual host when origins are configured.
3. api_key_auth or jwt_authn (auth=api_key|jwt): 401 without valid credentials; the caller's
   identity goes upstream in the identity header.
4. local_ratelimit (rate_limit_requests > 0): a token bucket per client (its identity when auth
   is on, else its address); 429 for REST, RESOURCE_EXHAUSTED for gRPC.
5. grpc_json_transcoder: every `google.api.http` route of every service in the descriptor set,
   the OpenAI-compatible routes included; gRPC errors become google.rpc.Status JSON. Off on
   the realtime WebSocket routes.
6. router.

Tracing (settings.otlp_endpoint, off when empty): the connection manager's OpenTelemetry tracer
(`envoy.tracers.opentelemetry`, service.name settings.tracing_service_name) makes a span per
request, the child of the client's `traceparent` when it sent one, and a CLIENT span per upstream
request (spawn_upstream_span), whose `traceparent` goes to the service; spans go over OTLP/gRPC
to the cluster `otlp_collector`. The access log then carries the trace id.

WebSocket upgrades are allowed on the realtime routes only (`/v1/realtime` to ASR,
`/v1/realtime/speech` to TTS), and go through filters 1-4 like any request.

The pieces live by job: descriptors.py (the descriptor set and the services in it), edge.py
(filters 1-4), transcoding.py (filter 5 and Envoy's own replies as JSON), routes.py (the route
table), clusters.py (one upstream cluster per service, and one per realtime WebSocket port).
This module assembles them.
gateway/envoy.yaml at the top of the repository is the container default, rendered.
"""

from __future__ import annotations

from typing import Any

import yaml
from google.protobuf import descriptor_pb2

from speechmesh.gateway.clusters import (
    COLLECTOR_CLUSTER,
    cluster,
    collector_cluster,
    realtime_cluster,
)
from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.descriptors import (
    gateway_descriptor_set,
    read_descriptor_set,
    services_by_area,
)
from speechmesh.gateway.edge import (
    auth_filter,
    cors_filter,
    hop_proof_headers,
    rate_limit_filter,
    strip_identity_filter,
)
from speechmesh.gateway.envoy_common import TYPE, TYPE_URL, duration
from speechmesh.gateway.routes import virtual_host
from speechmesh.gateway.transcoding import local_reply_config, transcoder_filter

__all__ = ["HEADER", "render_config", "render_yaml"]

F_ROUTER = "envoy.filters.http.router"
#: Open client connections Envoy accepts at once.
MAX_CONNECTIONS = 50000


def _http_filters(settings: GatewaySettings, descriptor: bytes, services) -> list[dict[str, Any]]:
    http_filters: list[dict[str, Any]] = [strip_identity_filter(settings), cors_filter()]
    for extra in (auth_filter(settings), rate_limit_filter(settings)):
        if extra is not None:
            http_filters.append(extra)
    http_filters.append(transcoder_filter(settings, descriptor, services))
    http_filters.append(
        {
            "name": F_ROUTER,
            "typed_config": {TYPE: TYPE_URL + "envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    return http_filters


def _access_log(settings: GatewaySettings) -> list[dict[str, Any]]:
    """One JSON line per request on stdout."""
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                TYPE: TYPE_URL + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {
                    "json_format": {
                        "time": "%START_TIME%",
                        "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
                        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
                        "upstream_path": "%REQ(:PATH)%",
                        "protocol": "%PROTOCOL%",
                        "status": "%RESPONSE_CODE%",
                        "grpc_status": "%GRPC_STATUS(NUMBER)%",
                        "flags": "%RESPONSE_FLAGS%",
                        "details": "%RESPONSE_CODE_DETAILS%",
                        "upstream": "%UPSTREAM_CLUSTER%",
                        "duration_ms": "%DURATION%",
                        "bytes_in": "%BYTES_RECEIVED%",
                        "bytes_out": "%BYTES_SENT%",
                        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                        "identity": f"%REQ({settings.identity_header})%",
                        "request_id": "%REQ(X-REQUEST-ID)%",
                        **({"trace_id": "%TRACE_ID%"} if settings.otlp_endpoint else {}),
                    }
                },
            },
        }
    ]


def _tracing(settings: GatewaySettings) -> dict[str, Any]:
    """The connection manager's tracing: OpenTelemetry over OTLP/gRPC to the collector."""
    collector = settings.otlp_collector()
    assert collector is not None  # only rendered with an endpoint
    host, port, _ = collector
    return {
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                TYPE: TYPE_URL + "envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {
                    # The collector's own name as :authority, so a mesh sidecar routes the
                    # export to it (Envoy would otherwise send the cluster's name).
                    "envoy_grpc": {
                        "cluster_name": COLLECTOR_CLUSTER,
                        "authority": f"{host}:{port}",
                    },
                    "timeout": "1s",
                },
                "service_name": settings.tracing_service_name,
            },
        },
        "random_sampling": {"value": settings.tracing_sampling_percent},
        # A CLIENT span per upstream request, the parent of the service's span.
        "spawn_upstream_span": True,
    }


def _tls_socket(settings: GatewaySettings) -> dict[str, Any]:
    """TLS on the listener: h2 or HTTP/1.1 by ALPN."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            TYPE: TYPE_URL + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(settings.tls_cert_file)},
                        "private_key": {"filename": str(settings.tls_key_file)},
                    }
                ],
            },
        },
    }


def _listener(settings: GatewaySettings, descriptor: bytes, services) -> dict[str, Any]:
    manager: dict[str, Any] = {
        TYPE: TYPE_URL + "envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "gateway",
        # HTTP/1.1, HTTP/2 with prior knowledge (h2c) and, over TLS, h2 by ALPN.
        "codec_type": "AUTO",
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        "server_name": "speechmesh-gateway",
        "stream_idle_timeout": duration(settings.stream_idle_timeout_s),
        "request_timeout": "0s",
        "http2_protocol_options": {
            "max_concurrent_streams": 1000,
            "initial_stream_window_size": 1 << 20,
            "initial_connection_window_size": 4 << 20,
        },
        "route_config": {
            "name": "speechmesh",
            "virtual_hosts": [virtual_host(settings, services)],
            **({"request_headers_to_add": hop} if (hop := hop_proof_headers(settings)) else {}),
        },
        "local_reply_config": local_reply_config(settings),
        "http_filters": _http_filters(settings, descriptor, services),
    }
    if settings.access_log:
        manager["access_log"] = _access_log(settings)
    if settings.otlp_endpoint:
        manager["tracing"] = _tracing(settings)
    chain: dict[str, Any] = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if settings.tls:
        chain["transport_socket"] = _tls_socket(settings)
    return {
        "name": "speechmesh",
        "address": {"socket_address": {"address": settings.host, "port_value": settings.port}},
        "filter_chains": [chain],
    }


# -- the bootstrap ---------------------------------------------------------------------------


def render_config(settings: GatewaySettings) -> dict[str, Any]:
    """The Envoy bootstrap for `settings`, as a dict."""
    data = read_descriptor_set(settings.descriptor_set)
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    upstreams = settings.upstreams()
    services = services_by_area(files, list(upstreams))
    missing = [area for area, found in services.items() if not found]
    if len(missing) == len(services):
        raise ValueError(f"{settings.descriptor_set} holds no speechmesh.<area>.v1 service")
    descriptor = gateway_descriptor_set(data)
    clusters = []
    for area, (host, port) in upstreams.items():
        health = services[area][0][0] if services[area] else ""
        clusters.append(cluster(settings, area, host, port, health))
    for area, (host, port) in settings.realtime_upstreams().items():
        clusters.append(realtime_cluster(settings, area, host, port))
    collector = collector_cluster(settings)
    if collector is not None:
        clusters.append(collector)
    return {
        "node": {"id": "speechmesh-gateway", "cluster": "speechmesh"},
        "admin": {
            "address": {
                "socket_address": {
                    "address": settings.admin_host,
                    "port_value": settings.admin_port,
                }
            }
        },
        "static_resources": {
            "listeners": [_listener(settings, descriptor, services)],
            "clusters": clusters,
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        TYPE: TYPE_URL
                        + "envoy.extensions.resource_monitors.downstream_connections.v3"
                        ".DownstreamConnectionsConfig",
                        "max_active_downstream_connections": MAX_CONNECTIONS,
                    },
                }
            ]
        },
    }


HEADER = """\
# Envoy bootstrap for the speechmesh gateway, rendered by `speechmesh gateway config`
# from SPEECHMESH_GATEWAY_* settings and the descriptor set of `make protos`
# (embedded below as proto_descriptor_bin). Do not edit: change the settings and render again.
"""


def render_yaml(settings: GatewaySettings) -> str:
    """The Envoy bootstrap for `settings`, as YAML."""
    body = yaml.safe_dump(render_config(settings), sort_keys=False, width=100)
    return HEADER + body
