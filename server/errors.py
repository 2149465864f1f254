"""Domain errors. `server.api.status` maps each to one gRPC status code.

Messages are for a person: say what was wrong and what to do instead.
"""

from __future__ import annotations


class MemorydError(Exception):
    """Base of every error memoryd reports to a caller."""

    reason: str = "MEMORYD_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(MemorydError):
    """A request field is missing, malformed or out of range."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class NotFound(MemorydError):
    """The named thing does not exist for this user."""

    reason = "NOT_FOUND"


class AlreadyExists(MemorydError):
    """A thing with that identity is already stored."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(MemorydError):
    """The system is not in the state the call needs."""

    reason = "FAILED_PRECONDITION"


class ResourceExhausted(MemorydError):
    """A limit or quota was reached; `retry_delay` (seconds) says when a retry may pass."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self, message: str, *, field: str | None = None, retry_delay: float | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.retry_delay = retry_delay


class RateLimited(ResourceExhausted):
    """The caller sent more requests than its rate limit allows."""

    reason = "RATE_LIMITED"


class StoreUnavailable(MemorydError):
    """Postgres or Redis cannot be reached; the call may be retried."""

    reason = "STORE_UNAVAILABLE"


class DeadlineExceeded(MemorydError):
    """The call's deadline passed before its work could finish."""

    reason = "DEADLINE_EXCEEDED"


class Unauthenticated(MemorydError):
    """The call carries no bearer token, or one this server does not know."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(MemorydError):
    """The caller's token may not make this call (a user outside its tenant)."""

    reason = "PERMISSION_DENIED"
