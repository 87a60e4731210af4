"""What the OpenAI-compatible faces of the services share: model aliases, the model list's
shape, JSON bodies in and out, and how errors reach OpenAI's clients.

Each service keeps its own face next to it (speechmesh.asr.openai for `/v1/audio/transcriptions`,
`/v1/audio/translations` and `/v1/models`; speechmesh.tts.openai for `/v1/audio/speech`). Their
RPCs take the HTTP body as it came (google.api.HttpBody: a multipart upload, which
speechmesh.runtime.multipart parses, or a JSON object) and answer an HttpBody whose body is
exactly what OpenAI's API returns.

Errors: every mistake raises ApiError INVALID_ARGUMENT whose BadRequest field violation names the
OpenAI parameter (`file`, `model`, `response_format`, ...). Through Envoy it becomes
google.rpc.Status JSON with the HTTP status of its code, like every other route, rather than
OpenAI's `{"error": {...}}`: OpenAI's clients raise by HTTP status (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx InternalServerError), and the
`openai` Python package takes the exception text from a top-level `message` as readily as from
`error.message`, so the one error shape of the gateway serves them too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from speechmesh.runtime import errors
from speechmesh.runtime.multipart import header_params

#: OpenAI model names each service accepts for its default model, by service name.
ALIASES: dict[str, tuple[str, ...]] = {
    "asr": ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"),
    "tts": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
}
#: `owned_by` of every model in /v1/models.
OWNED_BY = "speechmesh"
#: Content types of the answers, as OpenAI sends them.
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def resolve_model(name: str, aliases: Sequence[str]) -> str:
    """The model a request names: "" (the service's default) for an alias or nothing, else the
    name as given (the service answers NOT_FOUND for one it does not serve)."""
    name = name.strip()
    return "" if not name or name in aliases else name


def json_bytes(value: Any) -> bytes:
    """A JSON answer body: compact, UTF-8, no NaN or infinity."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def parse_json_body(content_type: str, body: bytes) -> dict[str, Any]:
    """A JSON object request body (/v1/audio/speech): INVALID_ARGUMENT naming `content_type`
    for another media type or a body that is not a JSON object."""
    media = header_params(content_type or "", "content-type").get_content_type()
    if content_type and media != "application/json":
        raise errors.invalid_argument("content_type", f"is {content_type!r}; send application/json")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise errors.invalid_argument(
            "content_type", f"the body is not valid JSON: {error}"
        ) from None
    if not isinstance(value, dict):
        raise errors.invalid_argument("content_type", "the body must be a JSON object")
    return value


# -- /v1/models ------------------------------------------------------------------------------


def model_json(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": OWNED_BY}


def models_body(ids: Iterable[str], created: int) -> tuple[str, bytes]:
    """(content type, body) of OpenAI's model list."""
    data = [model_json(model_id, created) for model_id in ids]
    return JSON, json_bytes({"object": "list", "data": data})


def model_body(model_id: str, ids: Sequence[str], created: int) -> tuple[str, bytes]:
    """(content type, body) of one model; NOT_FOUND for an id the list does not hold."""
    if model_id not in ids:
        raise errors.not_found(
            "model", model_id, f"model {model_id!r} is not served here; GET /v1/models lists them"
        )
    return JSON, json_bytes(model_json(model_id, created))
