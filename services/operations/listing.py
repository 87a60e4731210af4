"""ListOperations' filter (a small part of AIP-160) and page tokens.

Filter grammar: terms joined by AND (case-insensitive), each `state = NAME`, `state != NAME`
(NAME an OperationState without its prefix, quoted or not) or `done = true|false`. Page
tokens are opaque to callers: the last row's (create_time, id) plus a digest of the filter, so
a token used with another filter is refused instead of paging the wrong list.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

from speechmesh.operations.store import DONE_STATES, STATES
from speechmesh.runtime import errors

_TERM = re.compile(r"\s*(state|done)\s*(!=|=)\s*\"?([A-Za-z_]+)\"?\s*", re.IGNORECASE)
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)
GRAMMAR = "use terms like `state = RUNNING`, `state != QUEUED` or `done = true`, joined by AND"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def parse_filter(text: str) -> set[str] | None:
    """The states a filter admits; None for an empty filter (all). INVALID_ARGUMENT naming
    `filter` for anything outside the grammar."""
    if not text.strip():
        return None
    admitted = set(STATES)
    for term in _AND.split(text.strip()):
        match = _TERM.fullmatch(term)
        if match is None:
            raise errors.invalid_argument("filter", f"cannot parse {term.strip()!r}: {GRAMMAR}")
        key, op, value = match[1].lower(), match[2], match[3].upper()
        if key == "state":
            value = value.removeprefix("OPERATION_STATE_")
            if value not in STATES:
                raise errors.invalid_argument(
                    "filter", f"unknown state {match[3]!r}; states are {', '.join(STATES)}"
                )
            chosen = {value}
        else:
            if value not in ("TRUE", "FALSE"):
                raise errors.invalid_argument("filter", f"done is true or false, not {match[3]!r}")
            chosen = set(DONE_STATES) if value == "TRUE" else set(STATES) - set(DONE_STATES)
        admitted &= chosen if op == "=" else set(STATES) - chosen
    return admitted


def page_size(requested: int) -> int:
    if requested < 0:
        raise errors.invalid_argument("page_size", f"is {requested}; use 0 to {MAX_PAGE_SIZE}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _digest(filter_text: str) -> str:
    return hashlib.sha256(filter_text.strip().encode()).hexdigest()[:12]


def page_token(create_time: float, operation_id: str, filter_text: str) -> str:
    raw = json.dumps([create_time, operation_id, _digest(filter_text)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page_token(token: str, filter_text: str) -> tuple[float, str] | None:
    """The (create_time, id) key to continue after; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        create_time, operation_id, digest = json.loads(raw)
        key = (float(create_time), str(operation_id))
    except (ValueError, TypeError):
        raise errors.invalid_argument(
            "page_token", "is not a token this service gave; start again without one"
        ) from None
    if digest != _digest(filter_text):
        raise errors.invalid_argument(
            "page_token", "was given for another filter; use the same filter as the first page"
        )
    return key
