"""Who is calling: the identity the gateway vouches for, read from one request header, and
only from a hop the service trusts.

The gateway (Envoy) authenticates callers (API keys or JWT) and sends each call upstream with the
caller's identity in one header, after removing that header from whatever the client sent, so only
Envoy can set it. The header's name and whether the gateway authenticates are the gateway's
settings, SPEECHMESH_GATEWAY_IDENTITY_HEADER and SPEECHMESH_GATEWAY_AUTH, and every service reads
those same two variables (ServiceSettings.identity_header / gateway_auth): renaming the header is
one setting, never a gateway that writes one name while a service reads another.

With auth on, a call that carries no identity did not come through the gateway: it is refused
(UNAUTHENTICATED) where the identity scopes data, rather than landing in the anonymous namespace.
With auth off every caller is anonymous ("") unless the header is present.

Trusted hops. A client that reaches a service's port directly (anything on its network) could
send the identity header itself and be anyone. So a service takes the header only from a hop it
trusts, SPEECHMESH_TRUSTED_HOPS (one variable, read by every service):

- `any`: from every caller (the network is the boundary: a laptop's loopback, `make run` with
  SPEECHMESH_TRUSTED_HOPS=any).
- `token` (`speechmesh up` and docker compose by default): from a call that also carries the hop
  proof `x-speechmesh-hop: <secret>`, compared in constant time. The secret is shared by the
  gateway and the services: SPEECHMESH_HOP_TOKEN_FILE (a file: compose's generated volume, a
  Kubernetes Secret, `speechmesh up`'s per-run file) or SPEECHMESH_HOP_TOKEN, at least 16
  characters. The gateway adds the header to every request it sends upstream (the route
  table's request_headers_to_add, after stripping any copy a client sent; the rendered
  bootstrap then holds the secret, like API keys); the translate service adds it to the cascade's
  calls to ASR and TTS, which carry its caller's identity on. Only the services' callers need
  it: a secret on the network, which TLS or a mesh would hide from anyone watching it.
- `mesh`: from a call whose mesh-authenticated peer is in SPEECHMESH_TRUSTED_SPIFFE_IDS (e.g.
  spiffe://cluster.local/ns/speechmesh/sa/gateway,spiffe://cluster.local/ns/speechmesh/sa/translate).
  The peer is the last element of `x-forwarded-client-cert`, its `URI=` SPIFFE id: Istio's
  sidecar appends the mTLS client's certificate there (forward_client_cert_details
  APPEND_FORWARD), so whatever a client wrote before it is not the peer. That holds only while
  every connection reaches the service through its sidecar with mutual TLS (Istio
  PeerAuthentication STRICT): over plaintext the sidecar forwards the header as the client sent
  it. The translate service forwards identities as itself, so its id must be listed.

From a hop not trusted, the identity header counts as absent: refused (UNAUTHENTICATED,
IDENTITY_UNTRUSTED) when the gateway authenticates, anonymous when it does not; never the
identity it names.
"""

from __future__ import annotations

import dataclasses
import hmac
import pathlib
import re
from collections.abc import Iterable, Sequence

DEFAULT_HEADER = "x-speechmesh-identity"
HEADER_ENV = "SPEECHMESH_GATEWAY_IDENTITY_HEADER"
AUTH_ENV = "SPEECHMESH_GATEWAY_AUTH"
#: Identities allowed to call the admin RPCs (loading and unloading models), comma-separated.
OPERATORS_ENV = "SPEECHMESH_OPERATORS"
#: The identity of a caller when the gateway authenticates nobody.
ANONYMOUS = ""
#: Which hops a service takes the identity header from: any, token or mesh (see the module doc).
TRUSTED_HOPS_ENV = "SPEECHMESH_TRUSTED_HOPS"
#: The hop proof's secret, shared by the gateway and the services: a file, or the value itself.
HOP_TOKEN_FILE_ENV = "SPEECHMESH_HOP_TOKEN_FILE"
HOP_TOKEN_ENV = "SPEECHMESH_HOP_TOKEN"
#: mesh: the SPIFFE ids whose calls may carry an identity, comma-separated.
TRUSTED_SPIFFE_IDS_ENV = "SPEECHMESH_TRUSTED_SPIFFE_IDS"
#: The header carrying the hop proof (token mode).
HOP_HEADER = "x-speechmesh-hop"
#: The header a mesh sidecar puts its mTLS peer in (mesh mode).
XFCC_HEADER = "x-forwarded-client-cert"
HOP_MODES = ("any", "token", "mesh")
#: What a hop token may be: header-safe characters, at least 16 of them.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,4096}")


def header_name(value: str) -> str:
    """A valid header name, lowercased (gRPC metadata keys are lowercase); ValueError if not."""
    value = value.strip().lower()
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise ValueError("must be an HTTP header name (letters, digits, '-')")
    if value.startswith("grpc-") or value.endswith("-bin"):
        raise ValueError("must not start with 'grpc-' or end with '-bin' (reserved by gRPC)")
    return value


def hop_token(token_file: str | pathlib.Path | None, token: str = "") -> str:
    """The hop proof's secret: the content of `token_file` (stripped) if given, else `token`;
    ValueError naming the variable when it is unreadable or not a token."""
    source = HOP_TOKEN_ENV
    if token_file:
        source = f"{HOP_TOKEN_FILE_ENV} ({token_file})"
        try:
            token = pathlib.Path(token_file).read_text().strip()
        except OSError as error:
            raise ValueError(f"{source} cannot be read: {error.strerror or error}") from None
    token = token.strip()
    if not _TOKEN.fullmatch(token):
        raise ValueError(
            f"{source} must hold a token of at least 16 characters among letters, digits and"
            " ._~+/=- (e.g. `openssl rand -base64 32`)"
        )
    return token


def spiffe_ids(value: object) -> list[str]:
    """SPIFFE ids from a comma-separated string or a list; ValueError for one that is not."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    ids = [str(item).strip() for item in items if str(item).strip()]
    for item in ids:
        if not re.fullmatch(r"spiffe://[^/\s,;\"]+(/[^\s,;\"]*)?", item):
            raise ValueError(f"{item!r} is not a SPIFFE id (spiffe://TRUST-DOMAIN/PATH)")
    return ids


def xfcc_peer(values: Sequence[str]) -> list[str]:
    """The URI= values of the last element of x-forwarded-client-cert (the one the sidecar
    appended: the immediate mTLS peer); `values`: the header's values in order."""
    if not values:
        return []
    elements: list[list[tuple[str, str]]] = [[]]
    key, value, quoted, escaped, in_value = "", "", False, False, False

    def close_pair() -> None:
        nonlocal key, value, in_value
        if key.strip():
            elements[-1].append((key.strip().lower(), value))
        key, value, in_value = "", "", False

    for char in ",".join(values):
        if escaped:
            value += char
            escaped = False
        elif quoted:
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                value += char
        elif char == '"' and in_value:
            quoted = True
        elif char == "=" and not in_value:
            in_value = True
        elif char == ";":
            close_pair()
        elif char == ",":
            close_pair()
            elements.append([])
        elif in_value:
            value += char
        else:
            key += char
    close_pair()
    last = next((element for element in reversed(elements) if element), [])
    return [value for key, value in last if key == "uri"]


@dataclasses.dataclass(frozen=True)
class HopTrust:
    """Which hops may send the identity header (see the module doc)."""

    mode: str = "any"
    token: str = dataclasses.field(default="", repr=False)
    spiffe_ids: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings) -> HopTrust:
        mode = getattr(settings, "trusted_hops", "any")
        if mode == "token":
            secret = settings.hop_token.get_secret_value() if settings.hop_token else ""
            return cls("token", token=hop_token(settings.hop_token_file, secret))
        if mode == "mesh":
            return cls("mesh", spiffe_ids=tuple(settings.trusted_spiffe_ids))
        return cls()

    def proof(self) -> tuple[tuple[str, str], ...]:
        """The metadata a call to a peer adds so the peer trusts the identity it carries."""
        return ((HOP_HEADER, self.token),) if self.mode == "token" else ()

    def trusts(self, metadata: Sequence[tuple[str, str | bytes]]) -> bool:
        """Whether the call with `metadata` came from a trusted hop."""
        if self.mode == "any":
            return True
        if self.mode == "token":
            proofs = [value for key, value in metadata if key.lower() == HOP_HEADER]
            if len(proofs) != 1:
                return False
            proof = proofs[0]
            if isinstance(proof, str):
                proof = proof.encode("utf-8", "replace")
            return hmac.compare_digest(proof, self.token.encode())
        if self.mode == "mesh":
            values = [
                value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                for key, value in metadata
                if key.lower() == XFCC_HEADER
            ]
            return any(uri in self.spiffe_ids for uri in xfcc_peer(values))
        return False


@dataclasses.dataclass(frozen=True)
class IdentityPolicy:
    """How a service reads its caller: the header, whether one is required, and which hops may
    send it."""

    header: str = DEFAULT_HEADER
    required: bool = False  # the gateway authenticates: a call without an identity is refused
    hops: HopTrust = HopTrust()

    @classmethod
    def from_settings(cls, settings) -> IdentityPolicy:
        return cls(
            header=settings.identity_header,
            required=settings.gateway_auth != "none",
            hops=HopTrust.from_settings(settings),
        )

    def caller(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The caller's identity from a call's metadata; ApiError UNAUTHENTICATED if it has none
        while one is required, or if it has several. From a hop the service does not trust
        (self.hops), the identity header counts as absent."""
        items = list(metadata or ())
        values = [value for key, value in items if key.lower() == self.header]
        untrusted = bool(values) and not self.hops.trusts(items)
        if untrusted:
            values = []
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
        if self.required and untrusted:
            raise _unauthenticated(
                f"the call's {self.header} did not come from a trusted hop"
                f" ({TRUSTED_HOPS_ENV}={self.hops.mode}): call through the gateway with your API"
                " key or token",
                "IDENTITY_UNTRUSTED",
            )
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
