"""Domain objects of extraction jobs. Plain dataclasses: no grpc, no SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from server.memory_models import MemoryOp


class JobState(enum.IntEnum):
    """Values match memoryd.v1.JobState and the `state` column."""

    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4


class Trigger(enum.StrEnum):
    """What started a job (the `trigger` column)."""

    API = "api"  # ExtractMemories
    MESSAGES = "messages"  # a session gained settings.extract_after_messages messages
    IDLE = "idle"  # a session went idle with unextracted messages


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    user_id: str
    # Empty for a job given its own messages.
    session_id: str
    state: JobState
    error: str
    trigger: Trigger
    extractor: str
    message_count: int
    created_count: int
    updated_count: int
    deleted_count: int
    noop_count: int
    attempts: int
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """What the reconciler did with one candidate, and why."""

    op: MemoryOp
    reason: str
    # The memory acted on; empty for a NOOP that matched nothing (a dropped
    # low-confidence candidate, a retraction of something never stored).
    memory_id: str = ""
    # What the memory said before and after (its event's old and new content).
    old_content: str | None = None
    new_content: str | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    noop: int = 0

    @classmethod
    def of(cls, decisions: list[Decision]) -> Counts:
        ops = [d.op for d in decisions]
        return cls(
            created=ops.count(MemoryOp.ADD),
            updated=ops.count(MemoryOp.UPDATE),
            deleted=ops.count(MemoryOp.DELETE),
            noop=ops.count(MemoryOp.NOOP),
        )
