"""Every Redis key memoryd writes, under one versioned prefix.

The user id sits in a hash tag (`{user}`) so that Redis Cluster keeps all of a
user's keys on one slot, which multi-key scripts need. User ids never contain
braces (see server.validation).
"""

from __future__ import annotations

PREFIX = "memoryd:v1"


def session_messages(user_id: str, session_id: str) -> str:
    """List of the session's newest messages (the hot window), oldest first."""
    return f"{PREFIX}:{{{user_id}}}:messages:{session_id}"


def session_meta(user_id: str, session_id: str) -> str:
    """Hash with the window's last_seq and the session's ttl_ms."""
    return f"{PREFIX}:{{{user_id}}}:session:{session_id}"
