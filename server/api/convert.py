"""Protobuf <-> domain conversions. Field paths in errors match the request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from memoryd.v1 import session_service_pb2 as pb
from server.errors import InvalidArgument
from server.models import JsonObject, NewMessage, Role, Session

_ROLES = ", ".join(role.value for role in Role)


def timestamp_to_datetime(field: str, value: timestamp_pb2.Timestamp) -> datetime:
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidArgument(
            field, "is not a valid timestamp (RFC 3339, between years 1 and 9999)"
        ) from exc


def datetime_to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def duration_to_timedelta(field: str, value: duration_pb2.Duration) -> timedelta:
    try:
        return value.ToTimedelta()
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field, "is not a valid duration") from exc


def timedelta_to_duration(value: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


def _role(field: str, value: str) -> Role:
    if not value:
        raise InvalidArgument(field, f"is required; use one of {_ROLES}")
    try:
        return Role(value)
    except ValueError:
        shown = value if len(value) <= 32 else f"{value[:32]}..."
        raise InvalidArgument(field, f"{shown!r} is not a role; use one of {_ROLES}") from None


def new_message(index: int, message: pb.Message) -> NewMessage:
    field = f"messages[{index}]"
    return NewMessage(
        role=_role(f"{field}.role", message.role),
        content=message.content,
        name=message.name,
        run_id=message.run_id,
        id=message.id,
        create_time=(
            timestamp_to_datetime(f"{field}.create_time", message.create_time)
            if message.HasField("create_time")
            else None
        ),
        metadata=(
            struct_to_dict(f"{field}.metadata", message.metadata)
            if message.HasField("metadata")
            else None
        ),
    )


def struct_to_dict(field: str, value: struct_pb2.Struct) -> JsonObject:
    """A metadata Struct as a JSON object; NaN and infinities are not JSON."""
    try:
        return json_format.MessageToDict(value)
    except ValueError as exc:
        raise InvalidArgument(field, "must be JSON: numbers cannot be NaN or infinite") from exc


def session_to_pb(session: Session) -> pb.Session:
    return pb.Session(
        user_id=session.user_id,
        session_id=session.session_id,
        agent_id=session.agent_id,
        message_count=session.message_count,
        create_time=datetime_to_timestamp(session.create_time),
        update_time=datetime_to_timestamp(session.update_time),
        ttl=timedelta_to_duration(session.ttl),
    )
