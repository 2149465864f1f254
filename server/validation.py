"""Checks on request fields, raising InvalidArgument that names the field."""

from __future__ import annotations

from server.errors import InvalidArgument

# Braces would break the Redis Cluster hash tag that keeps a user's keys together.
_USER_ID_FORBIDDEN = frozenset("{}")


def _has_control_chars(value: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in value)


def require_id(field: str, value: str, *, max_length: int) -> str:
    """A required identifier: non-empty, bounded, printable."""
    if not value:
        raise InvalidArgument(field, "is required")
    return optional_id(field, value, max_length=max_length)


def optional_id(field: str, value: str, *, max_length: int) -> str:
    """An identifier that may be empty: bounded and printable."""
    if len(value) > max_length:
        raise InvalidArgument(
            field, f"is {len(value)} characters long; the maximum is {max_length}"
        )
    if _has_control_chars(value):
        raise InvalidArgument(field, "must not contain control characters")
    return value


def require_user_id(value: str, *, max_length: int, field: str = "user_id") -> str:
    require_id(field, value, max_length=max_length)
    if _USER_ID_FORBIDDEN.intersection(value):
        raise InvalidArgument(field, "must not contain '{' or '}'")
    return value


def require_positive(field: str, value: int, *, maximum: int) -> int:
    if value < 1:
        raise InvalidArgument(field, f"must be at least 1 (got {value})")
    if value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum} (got {value})")
    return value
