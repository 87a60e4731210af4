"""The Envoy bootstrap, rendered from GatewaySettings and the descriptor set.

One listener takes gRPC (HTTP/2) and REST (HTTP/1.1 or h2c; h2 and HTTP/1.1 over TLS when a
certificate is set). Its HTTP filters, in order:

1. header_mutation: strips the identity header from clients (only Envoy sets it).
2. cors: the policy sits on the virtual host when origins are configured.
3. api_key_auth or jwt_authn (auth=api_key|jwt): 401 without valid credentials; the caller's
   identity goes upstream in the identity header.
4. local_ratelimit (rate_limit_requests > 0): a token bucket per client (its identity when auth
   is on, else its address); 429 for REST, RESOURCE_EXHAUSTED for gRPC.
5. grpc_json_transcoder: every `google.api.http` route of every service in the descriptor set;
   gRPC errors become google.rpc.Status JSON with the matching HTTP status; streamed results
   are server-sent events. The transcoded request is routed again on its gRPC path. The
   OpenAI-compatible routes (`/v1/audio/transcriptions`, `/v1/audio/translations`, `/v1/models`)
   are such routes too: an RPC whose request is google.api.HttpBody gets the whole body as it
   came (a multipart upload, which Envoy cannot parse, within max_request_body_size), and any
   query parameter on it is 400 (reject_unknown_query_parameters; OpenAI clients send none).
6. router.

Routes are gRPC paths: the streaming methods of each service (read from the descriptor set)
have no timeout and no retries; the other methods of a package (`/speechmesh.<area>.v1.`) have
the unary timeout and retry on UNAVAILABLE. Health and reflection go to the service named by
the `x-speechmesh-service` header (default: the first, asr). Anything else is 404.
"""

from __future__ import annotations

import base64
import pathlib
from typing import Any

import yaml
from google.protobuf import descriptor_pb2

from speechmesh.gateway.config import GatewaySettings

#: Request header that picks the service for health checks and reflection through the gateway.
SERVICE_HEADER = "x-speechmesh-service"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
#: HTTP filter names (also the keys of per-route filter configs).
F_STRIP = "speechmesh.strip_identity"
F_CORS = "envoy.filters.http.cors"
F_API_KEY = "envoy.filters.http.api_key_auth"
F_JWT = "envoy.filters.http.jwt_authn"
F_RATE = "envoy.filters.http.local_ratelimit"
F_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
F_ROUTER = "envoy.filters.http.router"
JWT_PROVIDER = "speechmesh"
#: Local replies (Envoy's own answers) to REST callers, as google.rpc.Status JSON:
#: HTTP status -> gRPC code.
LOCAL_REPLY_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 3, 429: 8, 502: 14, 503: 14, 504: 4}
#: Open client connections Envoy accepts at once.
MAX_CONNECTIONS = 50000
_TYPE = "@type"
_T = "type.googleapis.com/"


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


# -- descriptors ---------------------------------------------------------------------------


def load_descriptor_set(path: pathlib.Path) -> descriptor_pb2.FileDescriptorSet:
    if not path.is_file():
        raise FileNotFoundError(
            f"descriptor set {path} not found: run `make protos` (python tools/gen_protos.py)"
            " or set SPEECHMESH_GATEWAY_DESCRIPTOR_SET"
        )
    files = descriptor_pb2.FileDescriptorSet()
    files.ParseFromString(path.read_bytes())
    return files


def gateway_descriptor_set(files: descriptor_pb2.FileDescriptorSet) -> bytes:
    """The descriptor set Envoy transcodes with: the services' files without their comments,
    plus google.rpc.Status and its error details, so errors print as JSON with details."""
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    out = descriptor_pb2.FileDescriptorSet()
    out.CopyFrom(files)
    for file in out.file:
        file.ClearField("source_code_info")
    names = {file.name for file in out.file}
    for module in (any_pb2, duration_pb2, status_pb2, error_details_pb2):
        if module.DESCRIPTOR.name not in names:
            module.DESCRIPTOR.CopyToProto(out.file.add())
            names.add(module.DESCRIPTOR.name)
    return out.SerializeToString(deterministic=True)


def services_by_area(
    files: descriptor_pb2.FileDescriptorSet, areas: list[str]
) -> dict[str, list[tuple[str, list[str]]]]:
    """area -> [(full service name, [streaming method names])] for `speechmesh.<area>.v1`."""
    result: dict[str, list[tuple[str, list[str]]]] = {area: [] for area in areas}
    for file in files.file:
        parts = file.package.split(".")
        if len(parts) != 3 or parts[0] != "speechmesh" or parts[1] not in result:
            continue
        for service in file.service:
            streaming = [m.name for m in service.method if m.client_streaming or m.server_streaming]
            result[parts[1]].append((f"{file.package}.{service.name}", streaming))
    return result


# -- pieces ----------------------------------------------------------------------------------


def _cluster(settings: GatewaySettings, area: str, host: str, port: int, health_service: str):
    cluster: dict[str, Any] = {
        "name": area,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": _duration(settings.connect_timeout_s),
        "lb_policy": "LEAST_REQUEST",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                _TYPE: _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
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
                "interval": _duration(settings.health_check_interval_s),
                "no_traffic_interval": _duration(settings.health_check_interval_s),
                "no_traffic_healthy_interval": _duration(settings.health_check_interval_s),
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": health_service},
            }
        ],
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 3,
            "interval": "5s",
            "base_ejection_time": "10s",
            "max_ejection_percent": 100,
        },
        # No healthy host: answer UNAVAILABLE at once instead of trying unhealthy ones.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "circuit_breakers": {
            "thresholds": [
                {"max_connections": 10000, "max_pending_requests": 10000, "max_requests": 10000}
            ]
        },
    }
    return cluster


def _route_action(area: str, *, streaming: bool, settings: GatewaySettings) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": area,
        # A client's grpc-timeout is the route timeout when it sets one.
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
    }
    if streaming:
        action["timeout"] = "0s"
    else:
        action["timeout"] = _duration(settings.unary_timeout_s)
        action["retry_policy"] = {
            # Only where no work can have been done twice: the service said UNAVAILABLE, or
            # the request never reached it.
            "retry_on": "unavailable,connect-failure,refused-stream,reset-before-request",
            "num_retries": 2,
            "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"},
        }
    return action


def _edge_exempt(settings: GatewaySettings) -> dict[str, Any]:
    """Per-route filter configs that switch auth and rate limit off (health checks)."""
    disabled = {_TYPE: _T + "envoy.config.route.v3.FilterConfig", "disabled": True}
    exempt = {}
    if settings.auth == "api_key":
        exempt[F_API_KEY] = disabled
    if settings.auth == "jwt":
        exempt[F_JWT] = disabled
    if settings.rate_limit_requests:
        exempt[F_RATE] = disabled
    return exempt


def _routes(settings: GatewaySettings, services: dict[str, list[tuple[str, list[str]]]]):
    routes: list[dict[str, Any]] = []
    areas = list(services)
    for area, area_services in services.items():
        for service, streaming in area_services:
            for method in streaming:
                routes.append(
                    {
                        "name": f"{area}.{method}",
                        "match": {"path": f"/{service}/{method}", "grpc": {}},
                        "route": _route_action(area, streaming=True, settings=settings),
                    }
                )
        routes.append(
            {
                "name": f"{area}.unary",
                "match": {"prefix": f"/speechmesh.{area}.v1.", "grpc": {}},
                "route": _route_action(area, streaming=False, settings=settings),
            }
        )
    exempt = _edge_exempt(settings)
    for prefix, kind in ((HEALTH_PREFIX, "health"), (REFLECTION_PREFIX, "reflection")):
        for area in areas:
            route: dict[str, Any] = {
                "name": f"{kind}.{area}",
                "match": {
                    "prefix": prefix,
                    "grpc": {},
                    "headers": [{"name": SERVICE_HEADER, "string_match": {"exact": area}}],
                },
                "route": _route_action(area, streaming=True, settings=settings),
            }
            if kind == "health" and exempt:
                route["typed_per_filter_config"] = exempt
            routes.append(route)
        default: dict[str, Any] = {
            "name": f"{kind}.default",
            "match": {"prefix": prefix, "grpc": {}},
            "route": _route_action(areas[0], streaming=True, settings=settings),
        }
        if kind == "health" and exempt:
            default["typed_per_filter_config"] = exempt
        routes.append(default)
    # Unknown gRPC methods: 404 (UNIMPLEMENTED to a gRPC client).
    routes.append(
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
    routes.append(
        {
            "name": "rest",
            "match": {"prefix": "/"},
            "route": _route_action(areas[0], streaming=True, settings=settings),
        }
    )
    return routes


def _virtual_host(settings: GatewaySettings, services) -> dict[str, Any]:
    host: dict[str, Any] = {
        "name": "speechmesh",
        "domains": ["*"],
        "routes": _routes(settings, services),
    }
    if settings.cors_allowed_origins:
        origins = [
            {"safe_regex": {"regex": ".*"}} if origin == "*" else {"exact": origin}
            for origin in settings.cors_allowed_origins
        ]
        host["typed_per_filter_config"] = {
            F_CORS: {
                _TYPE: _T + "envoy.extensions.filters.http.cors.v3.CorsPolicy",
                "allow_origin_string_match": origins,
                "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
                "allow_headers": "authorization, content-type, x-api-key, x-grpc-web,"
                " x-user-agent, grpc-timeout, x-request-id, " + SERVICE_HEADER,
                "expose_headers": "grpc-status, grpc-message, grpc-status-details-bin,"
                " x-request-id, x-envoy-ratelimited",
                "max_age": "86400",
            }
        }
    return host


def _auth_filter(settings: GatewaySettings) -> dict[str, Any] | None:
    if settings.auth == "api_key":
        return {
            "name": F_API_KEY,
            "typed_config": {
                _TYPE: _T + "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
                "credentials": [
                    {"key": key, "client": identity} for identity, key in settings.api_keys()
                ],
                # `Authorization: Bearer KEY` (what OpenAI clients send) or `x-api-key: KEY`.
                "key_sources": [{"header": "x-api-key"}, {"header": "authorization"}],
                "forwarding": {"header": settings.identity_header, "hide_credentials": True},
            },
        }
    if settings.auth == "jwt":
        assert settings.jwks_file is not None
        provider: dict[str, Any] = {
            "local_jwks": {"inline_string": settings.jwks_file.read_text()},
            "forward": False,
            "claim_to_headers": [
                {"header_name": settings.identity_header, "claim_name": settings.jwt_identity_claim}
            ],
        }
        if settings.jwt_issuer:
            provider["issuer"] = settings.jwt_issuer
        if settings.jwt_audiences:
            provider["audiences"] = list(settings.jwt_audiences)
        return {
            "name": F_JWT,
            "typed_config": {
                _TYPE: _T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {JWT_PROVIDER: provider},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}}],
                "bypass_cors_preflight": True,
            },
        }
    return None


def _rate_limit_filter(settings: GatewaySettings) -> dict[str, Any] | None:
    if not settings.rate_limit_requests:
        return None
    bucket = {
        "max_tokens": settings.rate_limit_burst or settings.rate_limit_requests,
        "tokens_per_fill": settings.rate_limit_requests,
        "fill_interval": _duration(settings.rate_limit_interval_s),
    }
    if settings.auth == "none":
        action: dict[str, Any] = {"remote_address": {}}
        key = "remote_address"
    else:
        key = "client"
        action = {
            "request_headers": {"header_name": settings.identity_header, "descriptor_key": key}
        }
    enabled = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    return {
        "name": F_RATE,
        "typed_config": {
            _TYPE: _T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "per_client",
            "token_bucket": bucket,
            "filter_enabled": {**enabled, "runtime_key": "speechmesh_rate_limit_enabled"},
            "filter_enforced": {**enabled, "runtime_key": "speechmesh_rate_limit_enforced"},
            "rate_limits": [{"actions": [action]}],
            # One bucket per distinct value (an empty value matches any).
            "descriptors": [{"entries": [{"key": key}], "token_bucket": bucket}],
            "max_dynamic_descriptors": 10000,
            "always_consume_default_token_bucket": False,
            "rate_limited_as_resource_exhausted": True,
            "response_headers_to_add": [
                {
                    "header": {
                        "key": "retry-after",
                        "value": str(max(1, round(settings.rate_limit_interval_s))),
                    },
                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                }
            ],
        },
    }


def _transcoder(settings: GatewaySettings, descriptor: bytes, services) -> dict[str, Any]:
    return {
        "name": F_TRANSCODER,
        "typed_config": {
            _TYPE: _T + "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor_bin": base64.b64encode(descriptor).decode(),
            "services": [name for area in services.values() for name, _ in area],
            "print_options": {
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": True,
                "stream_sse_style_delimited": True,
            },
            # Route the transcoded request on its gRPC path, like a gRPC call.
            "match_incoming_request_route": False,
            "auto_mapping": False,
            "convert_grpc_status": True,
            "case_insensitive_enum_parsing": True,
            "query_param_unescape_plus": True,
            "request_validation_options": {
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
            "max_request_body_size": settings.max_request_bytes,
            "max_response_body_size": settings.max_response_bytes,
        },
    }


def _local_reply_config(settings: GatewaySettings) -> dict[str, Any]:
    """Envoy's own answers (404, 401, 413, 429, 503, ...) as google.rpc.Status JSON to REST
    callers; gRPC callers get them as grpc-status and grpc-message as usual."""
    body = "%LOCAL_REPLY_BODY%"
    messages = {
        413: f"request body over the gateway's limit of {settings.max_request_bytes} bytes"
        f" (SPEECHMESH_GATEWAY_MAX_REQUEST_BYTES): {body}",
    }
    # A REST call: not gRPC, or transcoded (the transcoder keeps the REST path in
    # x-envoy-original-path; Envoy answers it as plain HTTP).
    rest = {
        "or_filter": {
            "filters": [
                {
                    "header_filter": {
                        "header": {
                            "name": "content-type",
                            "string_match": {"prefix": "application/grpc"},
                            "invert_match": True,
                            "treat_missing_header_as_empty": True,
                        }
                    }
                },
                {
                    "header_filter": {
                        "header": {"name": "x-envoy-original-path", "present_match": True}
                    }
                },
            ]
        }
    }
    mappers = []
    for status, code in LOCAL_REPLY_CODES.items():
        mappers.append(
            {
                "filter": {
                    "and_filter": {
                        "filters": [
                            {
                                "status_code_filter": {
                                    "comparison": {
                                        "op": "EQ",
                                        "value": {
                                            "default_value": status,
                                            "runtime_key": f"speechmesh_local_reply_{status}",
                                        },
                                    }
                                }
                            },
                            rest,
                        ]
                    }
                },
                "body_format_override": {
                    "json_format": {
                        "code": code,
                        "message": messages.get(status, body),
                        "details": [],
                    },
                    "content_type": "application/json",
                },
            }
        )
    return {"mappers": mappers}


def _listener(settings: GatewaySettings, descriptor: bytes, services) -> dict[str, Any]:
    http_filters: list[dict[str, Any]] = [
        {
            "name": F_STRIP,
            "typed_config": {
                _TYPE: _T + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                "mutations": {"request_mutations": [{"remove": settings.identity_header}]},
            },
        },
        {
            "name": F_CORS,
            "typed_config": {_TYPE: _T + "envoy.extensions.filters.http.cors.v3.Cors"},
        },
    ]
    for extra in (_auth_filter(settings), _rate_limit_filter(settings)):
        if extra is not None:
            http_filters.append(extra)
    http_filters.append(_transcoder(settings, descriptor, services))
    http_filters.append(
        {
            "name": F_ROUTER,
            "typed_config": {_TYPE: _T + "envoy.extensions.filters.http.router.v3.Router"},
        }
    )
    manager: dict[str, Any] = {
        _TYPE: _T + "envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "gateway",
        # HTTP/1.1, HTTP/2 with prior knowledge (h2c) and, over TLS, h2 by ALPN.
        "codec_type": "AUTO",
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        "server_name": "speechmesh-gateway",
        "stream_idle_timeout": _duration(settings.stream_idle_timeout_s),
        "request_timeout": "0s",
        "http2_protocol_options": {
            "max_concurrent_streams": 1000,
            "initial_stream_window_size": 1 << 20,
            "initial_connection_window_size": 4 << 20,
        },
        "route_config": {
            "name": "speechmesh",
            "virtual_hosts": [_virtual_host(settings, services)],
        },
        "local_reply_config": _local_reply_config(settings),
        "http_filters": http_filters,
    }
    if settings.access_log:
        manager["access_log"] = [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    _TYPE: _T + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
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
                        }
                    },
                },
            }
        ]
    chain: dict[str, Any] = {
        "filters": [
            {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
        ]
    }
    if settings.tls:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                _TYPE: _T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
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
    return {
        "name": "speechmesh",
        "address": {"socket_address": {"address": settings.host, "port_value": settings.port}},
        "filter_chains": [chain],
    }


# -- the bootstrap ---------------------------------------------------------------------------


def render_config(settings: GatewaySettings) -> dict[str, Any]:
    """The Envoy bootstrap for `settings`, as a dict."""
    files = load_descriptor_set(settings.descriptor_set)
    upstreams = settings.upstreams()
    services = services_by_area(files, list(upstreams))
    missing = [area for area, found in services.items() if not found]
    if len(missing) == len(services):
        raise ValueError(f"{settings.descriptor_set} holds no speechmesh.<area>.v1 service")
    descriptor = gateway_descriptor_set(files)
    clusters = []
    for area, (host, port) in upstreams.items():
        health = services[area][0][0] if services[area] else ""
        clusters.append(_cluster(settings, area, host, port, health))
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
                        _TYPE: _T + "envoy.extensions.resource_monitors.downstream_connections.v3"
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
