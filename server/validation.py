"""Checks on request fields, raising InvalidArgument that names the field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sized

from server.errors import InvalidArgument
from server.models import JsonObject

# The longest form uuid.UUID parses: "urn:uuid:{...}" around 32 hex digits and 4 dashes.
_MAX_UUID_TEXT = 47

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


def require_uuid(field: str, value: str, *, noun: str) -> str:
    """A required id that is a UUID (memories, jobs), in its canonical form."""
    if not value:
        raise InvalidArgument(field, "is required")
    try:
        if len(value) > _MAX_UUID_TEXT:
            raise ValueError(value)
        return str(uuid.UUID(value))
    except ValueError:
        shown = value if len(value) <= _MAX_UUID_TEXT else f"{value[:_MAX_UUID_TEXT]}..."
        raise InvalidArgument(field, f"{shown!r} is not a {noun}") from None


def require_positive(field: str, value: int, *, maximum: int) -> int:
    if value < 1:
        raise InvalidArgument(field, f"must be at least 1 (got {value})")
    if value > maximum:
        raise InvalidArgument(field, f"must be at most {maximum} (got {value})")
    return value


def check_text(field: str, value: str) -> str:
    """Free text (content, queries): any Unicode but NUL, which Postgres text
    cannot store."""
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL (\\u0000) characters")
    return value


def check_metadata(field: str, metadata: JsonObject | None, *, max_bytes: int) -> None:
    """A metadata object: at most max_bytes as compact JSON, no NUL in keys or
    strings (Postgres jsonb cannot store it)."""
    if metadata is None:
        return
    _check_json_strings(field, metadata)
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        raise InvalidArgument(field, f"is {size} bytes as JSON; the maximum is {max_bytes}")


def _check_json_strings(field: str, value: object) -> None:
    if isinstance(value, str):
        check_text(field, value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(field, key)
            _check_json_strings(field, item)
    elif isinstance(value, list):
        for item in value:
            _check_json_strings(field, item)


def check_count(field: str, values: Sized, *, maximum: int, noun: str) -> None:
    """A repeated field holds at most `maximum` entries."""
    if len(values) > maximum:
        raise InvalidArgument(field, f"has {len(values)} {noun}; at most {maximum}")
