"""Who may call a service's admin RPCs (loading and unloading models): operators only.

An operator is a caller identity (as the gateway vouches for it, speechmesh.runtime.identity)
listed in SPEECHMESH_OPERATORS, the same variable for every service. Anyone else, anonymous
callers included, is PERMISSION_DENIED with what to do; nobody is an operator until the list is
set.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.rpc import error_details_pb2

from speechmesh.runtime.errors import DOMAIN, ApiError
from speechmesh.runtime.identity import OPERATORS_ENV, IdentityPolicy


class Operators:
    def __init__(self, identity: IdentityPolicy, operators: Iterable[str]):
        self.identity = identity
        self.operators = frozenset(operators)

    @classmethod
    def from_settings(cls, settings) -> Operators:
        return cls(IdentityPolicy.from_settings(settings), settings.operators)

    def check(self, metadata, action: str) -> str:
        """The operator calling (from the call's metadata); ApiError PERMISSION_DENIED naming
        `action` when the caller is not one (UNAUTHENTICATED when the gateway authenticates and
        the call carries no identity)."""
        caller = self.identity.caller(metadata)
        if caller and caller in self.operators:
            return caller
        who = f"caller {caller!r}" if caller else "an anonymous caller"
        if not self.operators:
            advice = f"no operators are set: list their identities in {OPERATORS_ENV}"
        else:
            advice = f"call with an operator's key or token (identities in {OPERATORS_ENV})"
        info = error_details_pb2.ErrorInfo(reason="OPERATOR_ONLY", domain=DOMAIN)
        raise ApiError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{action} is for operators only and {who} is not one; {advice}",
            [info],
        )
