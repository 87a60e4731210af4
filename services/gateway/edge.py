"""The edge filters: the identity header, CORS, authentication (API keys or JWT) and the
per-client rate limit, with the per-route configs that switch them off for health checks.

Each function returns one HTTP filter (or None when its setting leaves it off); the listener
puts them in this order: strip identity, CORS, auth, rate limit, then transcoding and routing.
"""

from __future__ import annotations

from typing import Any

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_common import TYPE, TYPE_URL, duration
from speechmesh.runtime import identity

#: HTTP filter names (also the keys of per-route filter configs).
F_STRIP = "speechmesh.strip_identity"
F_CORS = "envoy.filters.http.cors"
F_API_KEY = "envoy.filters.http.api_key_auth"
F_JWT = "envoy.filters.http.jwt_authn"
F_RATE = "envoy.filters.http.local_ratelimit"
JWT_PROVIDER = "speechmesh"


def strip_identity_filter(settings: GatewaySettings) -> dict[str, Any]:
    """Removes the identity header and the hop proof from every request: only Envoy sets them
    (auth, below; the route table's request_headers_to_add)."""
    return {
        "name": F_STRIP,
        "typed_config": {
            TYPE: TYPE_URL + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": [
                    {"remove": settings.identity_header},
                    {"remove": identity.HOP_HEADER},
                ]
            },
        },
    }


def hop_proof_headers(settings: GatewaySettings) -> list[dict[str, Any]]:
    """The hop proof every upstream request carries (speechmesh.runtime.identity: services with
    SPEECHMESH_TRUSTED_HOPS=token believe the identity header only beside it); [] without a
    hop token."""
    token = settings.upstream_hop_token()
    if not token:
        return []
    return [
        {
            "header": {"key": identity.HOP_HEADER, "value": token},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]


def cors_filter() -> dict[str, Any]:
    """The CORS filter; it acts only where a route or virtual host carries a policy."""
    return {
        "name": F_CORS,
        "typed_config": {TYPE: TYPE_URL + "envoy.extensions.filters.http.cors.v3.Cors"},
    }


def cors_policy(settings: GatewaySettings, service_header: str) -> dict[str, Any]:
    """The virtual host's CORS policy for settings.cors_allowed_origins ('*': any origin)."""
    origins = [
        {"safe_regex": {"regex": ".*"}} if origin == "*" else {"exact": origin}
        for origin in settings.cors_allowed_origins
    ]
    return {
        TYPE: TYPE_URL + "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": origins,
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type, x-api-key, x-grpc-web,"
        " x-user-agent, grpc-timeout, x-request-id, " + service_header,
        "expose_headers": "grpc-status, grpc-message, grpc-status-details-bin,"
        " x-request-id, x-envoy-ratelimited",
        "max_age": "86400",
    }


def auth_filter(settings: GatewaySettings) -> dict[str, Any] | None:
    """api_key_auth or jwt_authn (settings.auth): 401 without valid credentials; the caller's
    identity goes upstream in the identity header. None when auth is off."""
    if settings.auth == "api_key":
        return {
            "name": F_API_KEY,
            "typed_config": {
                TYPE: TYPE_URL + "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
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
                TYPE: TYPE_URL + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {JWT_PROVIDER: provider},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": JWT_PROVIDER}}],
                "bypass_cors_preflight": True,
            },
        }
    return None


def rate_limit_filter(settings: GatewaySettings) -> dict[str, Any] | None:
    """local_ratelimit: a token bucket per client (its identity when auth is on, else its
    address); 429 for REST, RESOURCE_EXHAUSTED for gRPC. None when rate_limit_requests is 0."""
    if not settings.rate_limit_requests:
        return None
    bucket = {
        "max_tokens": settings.rate_limit_burst or settings.rate_limit_requests,
        "tokens_per_fill": settings.rate_limit_requests,
        "fill_interval": duration(settings.rate_limit_interval_s),
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
            TYPE: TYPE_URL + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
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


def edge_exempt(settings: GatewaySettings) -> dict[str, Any]:
    """Per-route filter configs that switch auth and rate limit off (health checks)."""
    disabled = {TYPE: TYPE_URL + "envoy.config.route.v3.FilterConfig", "disabled": True}
    exempt = {}
    if settings.auth == "api_key":
        exempt[F_API_KEY] = disabled
    if settings.auth == "jwt":
        exempt[F_JWT] = disabled
    if settings.rate_limit_requests:
        exempt[F_RATE] = disabled
    return exempt
