"""Domain objects of long-term memory. Plain dataclasses: no grpc, no SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from server.models import JsonObject


class MemoryKind(enum.IntEnum):
    """Values match memoryd.v1.MemoryKind and the `kind` column."""

    SEMANTIC = 1
    FACT = 2


class MemoryOp(enum.IntEnum):
    """Values match memoryd.v1.MemoryOp and the `op` column."""

    ADD = 1
    UPDATE = 2
    DELETE = 3
    # Extraction left the memory as it was (already known, or weak evidence).
    NOOP = 4


class SearchMode(enum.Enum):
    HYBRID = "hybrid"
    SEMANTIC = "semantic"
    KEYWORD = "keyword"


@dataclass(frozen=True, slots=True)
class MemoryDraft:
    """A memory as a caller describes it, before it is stored."""

    kind: MemoryKind
    content: str
    key: str = ""
    agent_id: str = ""
    session_id: str = ""
    topics: list[str] = field(default_factory=list)
    metadata: JsonObject | None = None
    source_message_ids: list[str] = field(default_factory=list)
    expire_time: datetime | None = None
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Memory:
    id: str
    user_id: str
    agent_id: str
    session_id: str
    kind: MemoryKind
    key: str
    content: str
    topics: list[str]
    metadata: JsonObject | None
    source_message_ids: list[str]
    create_time: datetime
    update_time: datetime
    expire_time: datetime | None
    # False until a worker has embedded the current content.
    indexed: bool


@dataclass(frozen=True, slots=True)
class MemoryEvent:
    memory_id: str
    op: MemoryOp
    old_content: str
    new_content: str
    reason: str
    actor: str
    create_time: datetime


@dataclass(frozen=True, slots=True)
class MemoryFilter:
    """Every set field must match."""

    kinds: list[MemoryKind] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    agent_id: str = ""
    session_id: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class MemoryPage:
    memories: list[Memory]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    memory: Memory
    score: float


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    limit: int
    mode: SearchMode
    filter: MemoryFilter
    min_score: float = 0.0
    recency_weight: float = 0.0
