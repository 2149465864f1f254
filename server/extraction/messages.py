"""The messages of an ExtractMemories(messages[]) job, as stored with the job.

They are kept in the job row (jsonb) so the worker reads them from Postgres
and the arq job carries only ids. Each gets a position (its seq, from 1) and,
when the caller gave none, an id, so memories can cite it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from server.models import JsonObject, NewMessage, Role, StoredMessage


def encode_messages(messages: list[NewMessage], *, now: datetime) -> list[JsonObject]:
    return [
        {
            "id": m.id or uuid.uuid4().hex,
            "role": m.role.value,
            "name": m.name,
            "content": m.content,
            "run_id": m.run_id,
            "create_time": (m.create_time or now).isoformat(),
            "metadata": m.metadata,
        }
        for m in messages
    ]


def decode_messages(raw: list[JsonObject]) -> list[StoredMessage]:
    return [
        StoredMessage(
            seq=seq,
            id=str(item["id"]),
            role=Role(item["role"]),
            content=str(item["content"]),
            name=str(item.get("name", "")),
            run_id=str(item.get("run_id", "")),
            create_time=_time(item.get("create_time")),
            token_count=0,
            metadata=item.get("metadata"),
        )
        for seq, item in enumerate(raw, start=1)
    ]


def _time(value: object) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return datetime.now(UTC)
