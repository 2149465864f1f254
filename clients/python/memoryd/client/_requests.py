"""Request builders shared by the sync and async clients: the one place where
method arguments become memoryd.v1 requests."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import field_mask_pb2

from memoryd.client import convert
from memoryd.client.convert import Kind, MessageLike, Mode, Seconds
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb

# ListMemories and ListSessions allow up to 1000 a page.
PAGE_SIZE = 1000


def append(
    user_id: str,
    session_id: str,
    messages: Iterable[MessageLike],
    *,
    agent_id: str | None,
    ttl: Seconds | None,
) -> spb.AppendMessagesRequest:
    request = spb.AppendMessagesRequest(
        user_id=user_id,
        session_id=session_id,
        agent_id=agent_id or "",
        messages=convert.messages(messages),
    )
    if ttl is not None:
        request.ttl.CopyFrom(convert.duration(ttl))
    return request


def history(
    user_id: str,
    session_id: str,
    *,
    last_messages: int | None,
    last_runs: int | None,
    max_tokens: int | None,
) -> spb.GetHistoryRequest:
    bounds = {
        name: value
        for name, value in (
            ("last_messages", last_messages),
            ("last_runs", last_runs),
            ("max_tokens", max_tokens),
        )
        if value is not None
    }
    if len(bounds) > 1:
        raise ValueError("give at most one of last_messages, last_runs, max_tokens")
    return spb.GetHistoryRequest(user_id=user_id, session_id=session_id, **bounds)


def clear_before(
    cutoff: datetime | timedelta, *, user_id: str | None, all_users: bool
) -> spb.DeleteSessionsBeforeRequest:
    if isinstance(cutoff, timedelta):  # "older than"
        cutoff = convert.expire_time_after(-cutoff)
    return spb.DeleteSessionsBeforeRequest(
        cutoff=convert.timestamp(cutoff), user_id=user_id or "", all_users=all_users
    )


def _memory_fields(
    *,
    content: str | None = None,
    key: str | None = None,
    topics: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    source_message_ids: Sequence[str] | None = None,
    expire_time: datetime | None = None,
) -> tuple[mpb.Memory, list[str]]:
    """A Memory holding the given fields, and their names (for a field mask)."""
    memory = mpb.Memory()
    given: list[str] = []
    for name, value in (
        ("content", content),
        ("key", key),
        ("agent_id", agent_id),
        ("session_id", session_id),
    ):
        if value is not None:
            setattr(memory, name, value)
            given.append(name)
    for name, values in (("topics", topics), ("source_message_ids", source_message_ids)):
        if values is not None:
            if isinstance(values, str):
                raise TypeError(f"{name} must be a list of strings, not a string")
            getattr(memory, name).extend(values)
            given.append(name)
    if metadata is not None:
        memory.metadata.CopyFrom(convert.struct(metadata))
        given.append("metadata")
    if expire_time is not None:
        memory.expire_time.CopyFrom(convert.timestamp(expire_time))
        given.append("expire_time")
    return memory, given


def create(
    user_id: str,
    content: str,
    *,
    kind: Kind | None,
    key: str | None,
    topics: Sequence[str] | None,
    ttl: Seconds | None,
    metadata: Mapping[str, Any] | None,
    agent_id: str | None,
    session_id: str | None,
    source_message_ids: Sequence[str] | None,
    expire_time: datetime | None,
    request_id: str | None,
) -> mpb.CreateMemoryRequest:
    memory, _ = _memory_fields(
        content=content,
        key=key,
        topics=topics,
        metadata=metadata,
        agent_id=agent_id,
        session_id=session_id,
        source_message_ids=source_message_ids,
        expire_time=expire_time,
    )
    # A key makes a fact; otherwise a memory is semantic unless told.
    memory.kind = convert.kind(kind if kind is not None else ("fact" if key else "semantic"))
    request = mpb.CreateMemoryRequest(
        user_id=user_id,
        memory=memory,
        # A fresh request id makes the create safe to retry after UNAVAILABLE.
        request_id=request_id or uuid.uuid4().hex,
    )
    if ttl is not None:
        request.ttl.CopyFrom(convert.duration(ttl))
    return request


def update(
    user_id: str,
    memory_id: str,
    *,
    reason: str | None,
    ttl: Seconds | None,
    **fields: Any,
) -> mpb.UpdateMemoryRequest:
    if ttl is not None:
        if fields.get("expire_time") is not None:
            raise ValueError("give ttl or expire_time, not both")
        fields["expire_time"] = convert.expire_time_after(ttl)
    memory, given = _memory_fields(**fields)
    if not given:
        raise ValueError("update needs at least one field to change")
    memory.id = memory_id
    return mpb.UpdateMemoryRequest(
        user_id=user_id,
        memory=memory,
        update_mask=field_mask_pb2.FieldMask(paths=given),
        reason=reason or "",
    )


def search(
    query: str,
    *,
    user_id: str,
    limit: int | None,
    wait_for_index: bool,
    mode: Mode | None,
    kinds: Sequence[Kind] | None,
    topics: Sequence[str] | None,
    agent_id: str | None,
    session_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    min_score: float | None,
    recency_weight: float | None,
) -> mpb.SearchMemoriesRequest:
    request = mpb.SearchMemoriesRequest(
        user_id=user_id,
        query=query,
        limit=limit or 0,
        wait_for_index=wait_for_index,
        mode=convert.mode(mode) if mode is not None else mpb.SEARCH_MODE_UNSPECIFIED,
        kinds=[convert.kind(k) for k in kinds or ()],
        topics=list(topics or ()),
        agent_id=agent_id or "",
        session_id=session_id or "",
        min_score=min_score or 0.0,
        recency_weight=recency_weight or 0.0,
    )
    if created_after is not None:
        request.created_after.CopyFrom(convert.timestamp(created_after))
    if created_before is not None:
        request.created_before.CopyFrom(convert.timestamp(created_before))
    return request


def list_memories(
    user_id: str,
    *,
    kinds: Sequence[Kind] | None,
    topics: Sequence[str] | None,
    agent_id: str | None,
    session_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> mpb.ListMemoriesRequest:
    filters = mpb.MemoryFilters(
        kinds=[convert.kind(k) for k in kinds or ()],
        topics=list(topics or ()),
        agent_id=agent_id or "",
        session_id=session_id or "",
    )
    if created_after is not None:
        filters.created_after.CopyFrom(convert.timestamp(created_after))
    if created_before is not None:
        filters.created_before.CopyFrom(convert.timestamp(created_before))
    return mpb.ListMemoriesRequest(user_id=user_id, filters=filters, page_size=PAGE_SIZE)


def extract(
    user_id: str, *, session_id: str | None, messages: Iterable[MessageLike] | None
) -> mpb.ExtractMemoriesRequest:
    if (session_id is None) == (messages is None):
        raise ValueError("give exactly one of session_id and messages")
    return mpb.ExtractMemoriesRequest(
        user_id=user_id,
        session_id=session_id or "",
        messages=convert.messages(messages) if messages is not None else [],
    )


JOB_DONE = frozenset({mpb.JOB_STATE_SUCCEEDED, mpb.JOB_STATE_FAILED})


def poll_delays() -> Iterable[float]:
    """Pauses between GetJob polls: quick at first, then once a second."""
    delay = 0.1
    while True:
        yield delay
        delay = min(delay * 1.5, 1.0)
