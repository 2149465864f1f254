"""Opaque page tokens: the position after the last item of a page, bound to
the query that produced it so that a token cannot be replayed elsewhere."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Tokens this module issues are far shorter; a longer one is refused unparsed.
MAX_PAGE_TOKEN_LENGTH = 2048


def page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_PAGE_SIZE:
        raise InvalidArgument(
            "page_size", f"must be between 0 and {MAX_PAGE_SIZE} (got {requested})"
        )
    return requested or DEFAULT_PAGE_SIZE


def _query_digest(query: tuple[str, ...]) -> str:
    return hashlib.sha256("\x00".join(query).encode()).hexdigest()[:16]


def encode_page_token(position: list[Any], *, query: tuple[str, ...]) -> str:
    payload = {"p": position, "q": _query_digest(query)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, *, query: tuple[str, ...]) -> list[Any] | None:
    """The position a token stands for; None for the first page."""
    if not token:
        return None
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        raise InvalidArgument(
            "page_token", "is malformed; pass the next_page_token of a previous response"
        )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        position = payload["p"]
        digest = payload["q"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(
            "page_token", "is malformed; pass the next_page_token of a previous response"
        ) from exc
    if digest != _query_digest(query) or not isinstance(position, list):
        raise InvalidArgument(
            "page_token", "was issued for a different query; repeat the same filters"
        )
    return position
