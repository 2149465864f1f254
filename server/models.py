"""Domain objects. Plain dataclasses: no grpc, no protobuf, no SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

JsonObject = dict[str, Any]


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    TOOL = "tool"
    DEVELOPER = "developer"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as a caller hands it to AppendMessages, before it has a seq."""

    role: Role
    content: str
    name: str = ""
    run_id: str = ""
    id: str = ""
    create_time: datetime | None = None
    metadata: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored: placed in its session's order, with its size in tokens."""

    seq: int
    id: str
    role: Role
    content: str
    name: str
    run_id: str
    create_time: datetime
    token_count: int
    metadata: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    session_id: str
    agent_id: str
    message_count: int
    create_time: datetime
    update_time: datetime
    ttl: timedelta
    # The last seq memory extraction has read (0: none yet).
    extracted_seq: int = 0


class WindowKind(enum.Enum):
    LAST_MESSAGES = "last_messages"
    LAST_RUNS = "last_runs"
    MAX_TOKENS = "max_tokens"


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """How much of a session GetHistory returns: the newest `limit` messages,
    runs or tokens."""

    kind: WindowKind
    limit: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    session: Session
    messages: list[StoredMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionPage:
    sessions: list[Session]
    next_page_token: str
