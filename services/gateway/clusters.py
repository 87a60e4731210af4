"""One upstream cluster per service: HTTP/2 to the service's gRPC port, active gRPC health
checks, outlier detection, and no panic routing (no healthy host answers UNAVAILABLE).

Services with realtime sessions get a second cluster, `<area>_realtime`: HTTP/1.1 to the
service's WebSocket port, where the gateway's upgraded `/v1/realtime...` connections go. Its
hosts are checked by TCP connects (the port speaks neither gRPC nor a health path; a connect
that sends nothing costs the service nothing and logs nothing), so a host whose process is gone
is taken out at once, like a gRPC host that stops answering. A host that is up but still loading
its models answers the upgrade itself, 503 with a reason; that, its 401 for a call without an
identity and its busy closes (1013) are the service speaking, so this cluster has no outlier
detection: they must not eject the only host.
"""

from __future__ import annotations

from typing import Any

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_common import TYPE, TYPE_URL, duration


def cluster(
    settings: GatewaySettings, area: str, host: str, port: int, health_service: str
) -> dict[str, Any]:
    """The cluster named `area`: `host:port` (STRICT_DNS, so every address the name resolves
    to is a host), health-checked with grpc.health.v1 on `health_service`."""
    return {
        "name": area,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": duration(settings.connect_timeout_s),
        "lb_policy": "LEAST_REQUEST",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                TYPE: TYPE_URL + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "10s"},
                    }
                },
            }
        },
        "load_assignment": {
            "cluster_name": area,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
        "health_checks": [
            {
                "timeout": "2s",
                "interval": duration(settings.health_check_interval_s),
                "no_traffic_interval": duration(settings.health_check_interval_s),
                "no_traffic_healthy_interval": duration(settings.health_check_interval_s),
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": health_service},
            }
        ],
        # No healthy host: answer UNAVAILABLE at once instead of trying unhealthy ones.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "circuit_breakers": {
            "thresholds": [
                {"max_connections": 10000, "max_pending_requests": 10000, "max_requests": 10000}
            ]
        },
    } | (
        {
            "outlier_detection": {
                "consecutive_5xx": 5,
                "consecutive_gateway_failure": 3,
                "interval": "5s",
                "base_ejection_time": "10s",
                "max_ejection_percent": 100,
            }
        }
        if settings.outlier_detection
        else {}
    )


def realtime_cluster(settings: GatewaySettings, area: str, host: str, port: int) -> dict[str, Any]:
    """The cluster `<area>_realtime`: `host:port` (the service's WebSocket port, STRICT_DNS),
    HTTP/1.1, TCP health checks, no outlier detection (see the module's doc)."""
    name = realtime_cluster_name(area)
    return {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": duration(settings.connect_timeout_s),
        "lb_policy": "LEAST_REQUEST",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                TYPE: TYPE_URL + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                # WebSocket upgrades are HTTP/1.1 (the service's port speaks nothing else).
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
        "health_checks": [
            {
                "timeout": "2s",
                "interval": duration(settings.health_check_interval_s),
                "no_traffic_interval": duration(settings.health_check_interval_s),
                "no_traffic_healthy_interval": duration(settings.health_check_interval_s),
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                # Connect only: nothing sent, nothing expected.
                "tcp_health_check": {},
            }
        ],
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "circuit_breakers": {
            "thresholds": [
                {"max_connections": 10000, "max_pending_requests": 10000, "max_requests": 10000}
            ]
        },
    }


def realtime_cluster_name(area: str) -> str:
    return f"{area}_realtime"


#: The cluster of the trace collector (only when tracing is on).
COLLECTOR_CLUSTER = "otlp_collector"


def collector_cluster(settings: GatewaySettings) -> dict[str, Any] | None:
    """The cluster Envoy's OpenTelemetry tracer exports spans to over OTLP/gRPC (HTTP/2, TLS
    for an https:// endpoint), or None when settings.otlp_endpoint is empty. No health checks:
    a collector that is down costs dropped spans, never a request."""
    collector = settings.otlp_collector()
    if collector is None:
        return None
    host, port, tls = collector
    found: dict[str, Any] = {
        "name": COLLECTOR_CLUSTER,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": duration(settings.connect_timeout_s),
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                TYPE: TYPE_URL + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": COLLECTOR_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": port}}
                            }
                        }
                    ]
                }
            ],
        },
    }
    if tls:
        found["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                TYPE: TYPE_URL + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                "common_tls_context": {"alpn_protocols": ["h2"]},
            },
        }
    return found
