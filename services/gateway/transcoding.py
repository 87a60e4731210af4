"""The REST face: gRPC-JSON transcoding, and Envoy's own answers as google.rpc.Status JSON.

The transcoder serves every `google.api.http` route of every service in the descriptor set;
gRPC errors become google.rpc.Status JSON with the matching HTTP status; streamed results are
server-sent events. The transcoded request is routed again on its gRPC path. The
OpenAI-compatible routes (`/v1/audio/transcriptions`, `/v1/audio/translations`, `/v1/models`)
are such routes too: an RPC whose request is google.api.HttpBody gets the whole body as it came
(a multipart upload, which Envoy cannot parse, within max_request_body_size), and any query
parameter on it is 400 (reject_unknown_query_parameters; OpenAI clients send none).
"""

from __future__ import annotations

import base64
from typing import Any

from speechmesh.gateway.config import GatewaySettings
from speechmesh.gateway.envoy_common import TYPE, TYPE_URL

F_TRANSCODER = "envoy.filters.http.grpc_json_transcoder"
#: Local replies (Envoy's own answers) to REST callers, as google.rpc.Status JSON:
#: HTTP status -> gRPC code.
LOCAL_REPLY_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 3, 429: 8, 502: 14, 503: 14, 504: 4}


def transcoder_filter(settings: GatewaySettings, descriptor: bytes, services) -> dict[str, Any]:
    """grpc_json_transcoder for the services of `services` (area -> [(name, streaming)])
    with the descriptor set `descriptor` (gateway_descriptor_set's bytes)."""
    return {
        "name": F_TRANSCODER,
        "typed_config": {
            TYPE: TYPE_URL
            + "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
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


def local_reply_config(settings: GatewaySettings) -> dict[str, Any]:
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
