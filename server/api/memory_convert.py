"""Protobuf <-> domain conversions for MemoryService."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from memoryd.v1 import memory_service_pb2 as pb
from server.api.convert import (
    datetime_to_timestamp,
    duration_to_timedelta,
    struct_to_dict,
    timestamp_to_datetime,
)
from server.errors import InvalidArgument
from server.extraction.models import Job
from server.memory_models import (
    Memory,
    MemoryDraft,
    MemoryEvent,
    MemoryFilter,
    MemoryKind,
    SearchMode,
)

_MODES: dict[int, SearchMode] = {
    pb.SEARCH_MODE_UNSPECIFIED: SearchMode.HYBRID,
    pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
    pb.SEARCH_MODE_SEMANTIC: SearchMode.SEMANTIC,
    pb.SEARCH_MODE_KEYWORD: SearchMode.KEYWORD,
}


def kind(field: str, value: int) -> MemoryKind:
    try:
        return MemoryKind(value)
    except ValueError:
        raise InvalidArgument(
            field,
            "is required: MEMORY_KIND_SEMANTIC or MEMORY_KIND_FACT"
            if value == 0
            else f"{value} is not a MemoryKind",
        ) from None


def mode(value: int) -> SearchMode:
    if value not in _MODES:
        raise InvalidArgument("mode", f"{value} is not a SearchMode")
    return _MODES[value]


def _optional_time(message: Message, name: str, *, path: str) -> datetime | None:
    """The timestamp field `name` of `message`, or None when unset; `path` is
    its name in the request, for errors."""
    if not message.HasField(name):
        return None
    return timestamp_to_datetime(path, getattr(message, name))


def draft(field: str, request: pb.CreateMemoryRequest) -> MemoryDraft:
    """The draft of a CreateMemoryRequest; `field` is the request's path ("" or
    "requests[i]")."""
    prefix = f"{field}." if field else ""
    values = memory_values(request.memory, path=f"{prefix}memory")
    expire_time = values.expire_time
    if request.HasField("ttl"):
        if expire_time is not None:
            raise InvalidArgument(f"{prefix}ttl", "set ttl or memory.expire_time, not both")
        ttl = duration_to_timedelta(f"{prefix}ttl", request.ttl)
        if ttl <= timedelta(0):
            raise InvalidArgument(f"{prefix}ttl", "must be positive")
        try:
            expire_time = datetime.now(UTC) + ttl
        except OverflowError:
            raise InvalidArgument(f"{prefix}ttl", "ends after the year 9999") from None
    return replace(
        values,
        kind=kind(f"{prefix}memory.kind", request.memory.kind),
        expire_time=expire_time,
        request_id=request.request_id,
    )


def memory_values(memory: pb.Memory, *, path: str = "memory") -> MemoryDraft:
    """The caller-settable fields of a Memory; `path` is where it sits in the
    request. Its kind is left SEMANTIC: UpdateMemory cannot change a kind, and
    draft() converts it for creates."""
    return MemoryDraft(
        kind=MemoryKind.SEMANTIC,
        content=memory.content,
        key=memory.key,
        agent_id=memory.agent_id,
        session_id=memory.session_id,
        topics=list(memory.topics),
        metadata=(
            struct_to_dict(f"{path}.metadata", memory.metadata)
            if memory.HasField("metadata")
            else None
        ),
        source_message_ids=list(memory.source_message_ids),
        expire_time=_optional_time(memory, "expire_time", path=f"{path}.expire_time"),
    )


def memory_filter(
    prefix: str,
    *,
    kinds: list[int],
    topics: list[str],
    agent_id: str,
    session_id: str,
    created_after: datetime | None,
    created_before: datetime | None,
) -> MemoryFilter:
    return MemoryFilter(
        kinds=[kind(f"{prefix}kinds[{i}]", value) for i, value in enumerate(kinds)],
        topics=topics,
        agent_id=agent_id,
        session_id=session_id,
        created_after=created_after,
        created_before=created_before,
    )


def list_filter(filters: pb.MemoryFilters) -> MemoryFilter:
    return memory_filter(
        "filters.",
        kinds=list(filters.kinds),
        topics=list(filters.topics),
        agent_id=filters.agent_id,
        session_id=filters.session_id,
        created_after=_optional_time(filters, "created_after", path="filters.created_after"),
        created_before=_optional_time(filters, "created_before", path="filters.created_before"),
    )


def search_filter(request: pb.SearchMemoriesRequest) -> MemoryFilter:
    return memory_filter(
        "",
        kinds=list(request.kinds),
        topics=list(request.topics),
        agent_id=request.agent_id,
        session_id=request.session_id,
        created_after=_optional_time(request, "created_after", path="created_after"),
        created_before=_optional_time(request, "created_before", path="created_before"),
    )


def memory_to_pb(memory: Memory) -> pb.Memory:
    out = pb.Memory(
        id=memory.id,
        user_id=memory.user_id,
        agent_id=memory.agent_id,
        session_id=memory.session_id,
        kind=int(memory.kind),  # type: ignore[arg-type]
        key=memory.key,
        content=memory.content,
        topics=memory.topics,
        source_message_ids=memory.source_message_ids,
        create_time=datetime_to_timestamp(memory.create_time),
        update_time=datetime_to_timestamp(memory.update_time),
        state=pb.MEMORY_STATE_READY if memory.indexed else pb.MEMORY_STATE_PENDING_INDEX,
    )
    if memory.expire_time is not None:
        out.expire_time.CopyFrom(datetime_to_timestamp(memory.expire_time))
    if memory.metadata is not None:
        out.metadata.update(memory.metadata)
    return out


def event_to_pb(event: MemoryEvent) -> pb.MemoryEvent:
    return pb.MemoryEvent(
        op=int(event.op),  # type: ignore[arg-type]
        old_content=event.old_content,
        new_content=event.new_content,
        reason=event.reason,
        actor=event.actor,
        create_time=datetime_to_timestamp(event.create_time),
        memory_id=event.memory_id,
    )


def job_to_pb(job: Job) -> pb.Job:
    return pb.Job(
        id=job.id,
        state=int(job.state),  # type: ignore[arg-type]
        error=job.error,
        created_count=job.created_count,
        updated_count=job.updated_count,
        deleted_count=job.deleted_count,
        noop_count=job.noop_count,
        create_time=datetime_to_timestamp(job.create_time),
        update_time=datetime_to_timestamp(job.update_time),
        session_id=job.session_id,
        extractor=job.extractor,
        message_count=job.message_count,
    )
