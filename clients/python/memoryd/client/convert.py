"""Friendly Python values to memoryd.v1 protobuf fields.

Roles are the plain strings of the contract ("user", "assistant", ...);
kinds and search modes may be given as short names ("fact", "semantic";
"hybrid", "semantic", "keyword") or as the protobuf enum values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb

MessageLike: TypeAlias = spb.Message | Mapping[str, Any]
Kind: TypeAlias = "str | mpb.MemoryKind"  # the enum is not a class at run time
Mode: TypeAlias = "str | mpb.SearchMode"
Seconds: TypeAlias = float | timedelta

_KINDS: dict[str, mpb.MemoryKind] = {
    "semantic": mpb.MEMORY_KIND_SEMANTIC,
    "fact": mpb.MEMORY_KIND_FACT,
}
_MODES: dict[str, mpb.SearchMode] = {
    "hybrid": mpb.SEARCH_MODE_HYBRID,
    "semantic": mpb.SEARCH_MODE_SEMANTIC,
    "keyword": mpb.SEARCH_MODE_KEYWORD,
}
_MESSAGE_FIELDS = frozenset({"role", "content", "name", "id", "run_id", "metadata", "create_time"})


def kind(value: Kind) -> mpb.MemoryKind:
    if isinstance(value, str):
        try:
            return _KINDS[value.lower().removeprefix("memory_kind_")]
        except KeyError:
            raise ValueError(f"kind {value!r} is not one of {', '.join(_KINDS)}") from None
    return value


def kind_name(value: int) -> str:
    """The short name of a Memory's kind: "fact" or "semantic" (else the enum name)."""
    for name, number in _KINDS.items():
        if number == value:
            return name
    return mpb.MemoryKind.Name(value)


def mode(value: Mode) -> mpb.SearchMode:
    if isinstance(value, str):
        try:
            return _MODES[value.lower().removeprefix("search_mode_")]
        except KeyError:
            raise ValueError(f"mode {value!r} is not one of {', '.join(_MODES)}") from None
    return value


def message(value: MessageLike) -> spb.Message:
    """A Message from a protobuf Message or a dict with its field names."""
    if isinstance(value, spb.Message):
        return value
    unknown = set(value) - _MESSAGE_FIELDS
    if unknown:
        raise ValueError(
            f"message has unknown field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_MESSAGE_FIELDS))}"
        )
    out = spb.Message(
        role=str(value.get("role", "")),
        content=str(value.get("content", "")),
        name=str(value.get("name") or ""),
        id=str(value.get("id") or ""),
        run_id=str(value.get("run_id") or ""),
    )
    if value.get("metadata") is not None:
        out.metadata.CopyFrom(struct(value["metadata"]))
    if value.get("create_time") is not None:
        out.create_time.CopyFrom(timestamp(value["create_time"]))
    return out


def messages(values: Iterable[MessageLike]) -> list[spb.Message]:
    if isinstance(values, Mapping | spb.Message):
        raise TypeError("messages must be a list of messages, not one message")
    return [message(value) for value in values]


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def duration(value: Seconds) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    return out


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp; a naive datetime is taken as UTC."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return out


def expire_time_after(ttl: Seconds) -> datetime:
    return datetime.now(UTC) + (ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl))
