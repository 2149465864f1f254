"""What call guards (server.api.interceptor.CallGuard) need to know about a request."""

from __future__ import annotations

from typing import Any


def user_id_of(request: Any) -> str | None:
    """The user a request names, or None for a request that names none (health,
    reflection, DeleteAllMemories, DeleteSessionsBefore across all users)."""
    user_id = getattr(request, "user_id", None)
    return user_id if isinstance(user_id, str) and user_id else None
