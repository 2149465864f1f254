"""The stored form of a session message: its memoryd.v1.Message encoding.

The Redis window keeps each message exactly as GetHistory returns it, so the
common read (the newest N messages) hands bytes from Redis to the caller
without decoding and re-encoding every message, which was most of a history
read's cost. Everything else treats an encoded message as opaque bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import json_format

from memoryd.v1 import session_service_pb2 as pb
from server.history import WindowFields
from server.models import Role, StoredMessage

EncodedMessage = bytes

_ROLES = {role.value: role for role in Role}


def to_pb(message: StoredMessage) -> pb.Message:
    out = pb.Message(
        role=message.role.value,
        name=message.name,
        content=message.content,
        run_id=message.run_id,
        seq=message.seq,
        id=message.id,
        token_count=message.token_count,
    )
    # Set in place: Timestamp.FromDatetime is slow pure Python.
    micros = round(message.create_time.timestamp() * 1_000_000)
    seconds, remainder = divmod(micros, 1_000_000)
    out.create_time.seconds = seconds
    out.create_time.nanos = remainder * 1000
    if message.metadata is not None:
        out.metadata.update(message.metadata)
    return out


def encode(message: StoredMessage) -> EncodedMessage:
    encoded: bytes = to_pb(message).SerializeToString()
    return encoded


def decode(data: EncodedMessage) -> StoredMessage:
    message = pb.Message.FromString(data)
    stamp = message.create_time
    return StoredMessage(
        seq=message.seq,
        id=message.id,
        role=_ROLES[message.role],
        content=message.content,
        name=message.name,
        run_id=message.run_id,
        create_time=datetime.fromtimestamp(stamp.seconds, UTC).replace(
            microsecond=stamp.nanos // 1000
        ),
        token_count=message.token_count,
        metadata=(
            json_format.MessageToDict(message.metadata) if message.HasField("metadata") else None
        ),
    )


def repeated_field(field_number: int, entries: list[EncodedMessage]) -> bytes:
    """`entries` framed as a repeated message field: the wire form of a
    response whose only set field holds them. A protobuf parser reads it as if
    each entry had been decoded, added and re-encoded, at a fraction of the cost."""
    tag = (field_number << 3) | 2  # wire type 2: length-delimited
    framed = bytearray()
    for entry in entries:
        framed.append(tag)
        size = len(entry)
        while size > 0x7F:  # base-128 varint, low groups first
            framed.append((size & 0x7F) | 0x80)
            size >>= 7
        framed.append(size)
        framed += entry
    return bytes(framed)


def window_fields(data: EncodedMessage) -> WindowFields:
    """The fields a history window needs, without building a StoredMessage."""
    return pb.Message.FromString(data)
