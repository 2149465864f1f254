"""Bearer-token auth: a call guard for unary calls and a stream guard for
reflection (server.api.interceptor runs both).

Every call needs `authorization: Bearer <token>` metadata with a configured
token (server.credentials), except grpc.health.v1, which stays open for
probes. A token bound to a tenant may only make calls for users in it; calls
that name no user (DeleteAllMemories, DeleteSessionsBefore across all users)
need an unbound token. Reflection needs a token of either kind: it shows the
API, not anyone's data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from grpc.aio import ServicerContext

from server.api.guards import user_id_of
from server.credentials import Grant, load_grants
from server.errors import PermissionDenied, Unauthenticated
from server.settings import Settings

OPEN_PREFIX = "/grpc.health.v1."
_BATCH_CREATE = "/memoryd.v1.MemoryService/BatchCreateMemories"
_SCHEME = "bearer "

_MISSING = (
    "this memoryd requires a token: send call metadata `authorization: Bearer <token>` "
    "(grpcurl: -H 'authorization: Bearer <token>'; the memoryd clients: token=...)"
)
_MALFORMED = "the authorization metadata must read `Bearer <token>`"
_UNKNOWN = (
    "the bearer token is not one this memoryd accepts; send a token from its "
    "MEMORYD_AUTH_TOKEN or MEMORYD_AUTH_TOKEN_FILE as `authorization: Bearer <token>`"
)
_NO_USER = (
    "this token is bound to a tenant, and {method} names no user_id: only a token "
    "with access to every user may make it"
)


class TokenAuth:
    """The guard. Per call: one scan of the metadata, one SHA-256, one dict
    lookup; for a bound token, one set lookup or prefix test per user id."""

    __slots__ = ("_grants",)

    def __init__(self, grants: Mapping[bytes, Grant]) -> None:
        self._grants = dict(grants)

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenAuth | None:
        """The guard for the configured tokens; None when auth is off."""
        secret = settings.auth_token
        grants = load_grants(
            env_tokens=None if secret is None else secret.get_secret_value(),
            token_file=settings.auth_token_file,
        )
        return cls(grants) if grants else None

    def grant_for(self, context: ServicerContext[Any, Any]) -> Grant:
        """The grant of the call's bearer token; Unauthenticated without a known one."""
        for key, value in context.invocation_metadata() or ():
            if key != "authorization":
                continue
            if not isinstance(value, str) or value[:7].lower() != _SCHEME:
                raise Unauthenticated(_MALFORMED)
            grant = self._grants.get(hashlib.sha256(value[7:].strip().encode()).digest())
            if grant is None:
                raise Unauthenticated(_UNKNOWN)
            return grant
        raise Unauthenticated(_MISSING)

    def __call__(self, method: str, request: Any, context: ServicerContext[Any, Any]) -> None:
        """The CallGuard: refuses the call by raising Unauthenticated or PermissionDenied."""
        if method.startswith(OPEN_PREFIX):
            return
        grant = self.grant_for(context)
        if not grant.bound:
            return
        user_id = user_id_of(request)
        # all_users: DeleteSessionsBefore's switch to ignore user_id.
        if user_id is None or getattr(request, "all_users", False):
            raise PermissionDenied(_NO_USER.format(method=method.rsplit("/", 1)[-1]))
        _check_user(grant, user_id, "user_id")
        if method == _BATCH_CREATE:
            for index, item in enumerate(request.requests):
                if item.user_id:
                    _check_user(grant, item.user_id, f"requests[{index}].user_id")

    def check_stream(self, method: str, context: ServicerContext[Any, Any]) -> None:
        """The StreamGuard: streaming calls (reflection) need a known token."""
        if not method.startswith(OPEN_PREFIX):
            self.grant_for(context)


def _check_user(grant: Grant, user_id: str, field: str) -> None:
    if not grant.allows(user_id):
        raise PermissionDenied(
            f"{field} {user_id!r} is outside the tenant this token is bound to "
            "(its users= or prefix= in the token file)",
            field=field,
        )
