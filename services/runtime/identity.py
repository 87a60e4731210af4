"""Who is calling: the identity the gateway vouches for, read from one request header.

The gateway (Envoy) authenticates callers (API keys or JWT) and sends each call upstream with the
caller's identity in one header, after removing that header from whatever the client sent, so only
Envoy can set it. The header's name and whether the gateway authenticates are the gateway's
settings, SPEECHMESH_GATEWAY_IDENTITY_HEADER and SPEECHMESH_GATEWAY_AUTH, and every service reads
those same two variables (ServiceSettings.identity_header / gateway_auth): renaming the header is
one setting, never a gateway that writes one name while a service reads another.

With auth on, a call that carries no identity did not come through the gateway: it is refused
(UNAUTHENTICATED) where the identity scopes data, rather than landing in the anonymous namespace.
With auth off every caller is anonymous ("") unless the header is present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

DEFAULT_HEADER = "x-speechmesh-identity"
HEADER_ENV = "SPEECHMESH_GATEWAY_IDENTITY_HEADER"
AUTH_ENV = "SPEECHMESH_GATEWAY_AUTH"
#: Identities allowed to call the admin RPCs (loading and unloading models), comma-separated.
OPERATORS_ENV = "SPEECHMESH_OPERATORS"
#: The identity of a caller when the gateway authenticates nobody.
ANONYMOUS = ""


def header_name(value: str) -> str:
    """A valid header name, lowercased (gRPC metadata keys are lowercase); ValueError if not."""
    value = value.strip().lower()
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise ValueError("must be an HTTP header name (letters, digits, '-')")
    if value.startswith("grpc-") or value.endswith("-bin"):
        raise ValueError("must not start with 'grpc-' or end with '-bin' (reserved by gRPC)")
    return value


@dataclasses.dataclass(frozen=True)
class IdentityPolicy:
    """How a service reads its caller: the header, and whether one is required."""

    header: str = DEFAULT_HEADER
    required: bool = False  # the gateway authenticates: a call without an identity is refused

    @classmethod
    def from_settings(cls, settings) -> IdentityPolicy:
        return cls(header=settings.identity_header, required=settings.gateway_auth != "none")

    def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The caller's identity from a call's metadata; ApiError UNAUTHENTICATED if it has none
        while one is required, or if it has several."""
        values = [value for key, value in metadata or () if key.lower() == self.header]
        if len(values) > 1:
            raise _unauthenticated(
                f"the call carries {len(values)} {self.header} headers; the gateway sets exactly"
                " one",
                "IDENTITY_AMBIGUOUS",
            )
        identity = values[0] if values else ""
        if isinstance(identity, bytes):
            identity = identity.decode("utf-8", "replace")
        if identity.strip():
            return identity
        if self.required:
            raise _unauthenticated(
                f"no caller identity: the gateway authenticates callers ({AUTH_ENV} is on) and"
                f" sets {self.header}; call through the gateway with your API key or token",
                "IDENTITY_MISSING",
            )
        return ANONYMOUS


def _unauthenticated(message: str, reason: str):
    # Imported here: the gateway-config image imports this module for the header rules alone
    # and has no gRPC.
    import grpc
    from google.rpc import error_details_pb2

    from speechmesh.runtime.errors import DOMAIN, ApiError

    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message, [info])
