"""Long-term memory: storing, reading, changing and deleting what an agent
knows about a user, with every change recorded as an event.

Writes are acknowledged once the row is in Postgres (state PENDING_INDEX);
an arq job embeds it shortly after. Search lives in server.search.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg.errors
from redis.exceptions import RedisError

from server import validation
from server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from server.job_queue import enqueue_embedding
from server.memory_models import (
    Memory,
    MemoryDraft,
    MemoryEvent,
    MemoryFilter,
    MemoryKind,
    MemoryOp,
    MemoryPage,
)
from server.pagination import decode_page_token, encode_page_token, page_size
from server.resources import Resources
from server.stores.memory_store import UPDATABLE_FIELDS, Connection, MemoryStore

log = logging.getLogger(__name__)

DELETE_ALL_CONFIRMATION = "delete all memories of all users"
API_ACTOR = "api"
EXPIRY_ACTOR = "expiry"
_DELETE_BATCH = 1000
_MAX_REASON = 1024


class MemoryService:
    def __init__(self, resources: Resources) -> None:
        self._settings = resources.settings
        self._postgres = resources.postgres
        self._arq = resources.arq
        self.store = MemoryStore(
            embedding_model=resources.embedder.model_name, cipher=resources.cipher
        )

    # -- validation ------------------------------------------------------

    def _user_id(self, user_id: str) -> str:
        return validation.require_user_id(user_id, max_length=self._settings.max_id_length)

    def _optional_id(self, field: str, value: str) -> str:
        return validation.optional_id(field, value, max_length=self._settings.max_id_length)

    @staticmethod
    def _memory_id(field: str, value: str) -> str:
        return validation.require_uuid(field, value, noun="memory id")

    def _check_content(self, field: str, content: str) -> None:
        if not content.strip():
            raise InvalidArgument(field, "must not be empty")
        size = len(content.encode())
        if size > self._settings.max_memory_bytes:
            raise InvalidArgument(
                field, f"is {size} bytes; the maximum is {self._settings.max_memory_bytes}"
            )
        validation.check_text(field, content)

    def _check_topics(self, field: str, topics: list[str]) -> None:
        if len(topics) > self._settings.max_topics:
            raise InvalidArgument(
                field, f"has {len(topics)} topics; at most {self._settings.max_topics}"
            )
        for index, topic in enumerate(topics):
            validation.require_id(
                f"{field}[{index}]", topic, max_length=self._settings.max_id_length
            )

    def check_draft(self, field: str, draft: MemoryDraft) -> MemoryDraft:
        """Validate a draft; `field` is its path in the request (e.g. "memory")."""
        self._check_content(f"{field}.content", draft.content)
        if draft.kind is MemoryKind.FACT:
            validation.require_id(
                f"{field}.key", draft.key, max_length=self._settings.max_id_length
            )
        elif draft.key:
            raise InvalidArgument(f"{field}.key", "is only for MEMORY_KIND_FACT memories")
        self._check_topics(f"{field}.topics", draft.topics)
        for name in ("agent_id", "session_id", "request_id"):
            self._optional_id(f"{field}.{name}", getattr(draft, name))
        validation.check_count(
            f"{field}.source_message_ids",
            draft.source_message_ids,
            maximum=self._settings.max_source_message_ids,
            noun="ids",
        )
        for index, source in enumerate(draft.source_message_ids):
            self._optional_id(f"{field}.source_message_ids[{index}]", source)
        validation.check_metadata(
            f"{field}.metadata", draft.metadata, max_bytes=self._settings.max_metadata_bytes
        )
        if draft.expire_time is not None and draft.expire_time <= datetime.now(UTC):
            raise InvalidArgument(f"{field}.expire_time", "is in the past")
        return draft

    # -- writes ------------------------------------------------------------

    async def create(self, *, user_id: str, draft: MemoryDraft) -> Memory:
        self._user_id(user_id)
        self.check_draft("memory", draft)
        memories = await self._store_drafts(user_id, [draft])
        return memories[0]

    async def batch_create(self, *, user_id: str, drafts: list[MemoryDraft]) -> list[Memory]:
        """All or none, in one transaction."""
        self._user_id(user_id)
        if not drafts:
            raise InvalidArgument("requests", "must hold at least one request")
        if len(drafts) > self._settings.max_batch_memories:
            raise InvalidArgument(
                "requests",
                f"holds {len(drafts)} requests; send at most {self._settings.max_batch_memories}",
            )
        for index, draft in enumerate(drafts):
            self.check_draft(f"requests[{index}].memory", draft)
        return await self._store_drafts(user_id, drafts)

    async def _store_drafts(self, user_id: str, drafts: list[MemoryDraft]) -> list[Memory]:
        try:
            stored = await self._store_drafts_once(user_id, drafts)
        except psycopg.errors.UniqueViolation:
            # A concurrent create took the same fact key or content between
            # our lookup and our insert; the retry finds and reuses its row.
            stored = await self._store_drafts_once(user_id, drafts)
        await self._enqueue_embedding([m for m in stored if not m.indexed])
        return stored

    async def _store_drafts_once(self, user_id: str, drafts: list[MemoryDraft]) -> list[Memory]:
        async with self._postgres.connection() as conn, conn.transaction():
            return [await self._store_draft(conn, user_id, draft) for draft in drafts]

    async def _store_draft(self, conn: Connection, user_id: str, draft: MemoryDraft) -> Memory:
        """The memory a draft resolves to: the earlier result of the same
        request_id, the same content stored before, the user's fact under that
        key (updated), or a new row."""
        store = self.store
        expired = await store.delete_expired_clashes(conn, user_id=user_id, draft=draft)
        await self._record_deletes(conn, expired, reason="expired", actor=EXPIRY_ACTOR)
        if draft.request_id:
            earlier = await store.find_by_request_id(
                conn, user_id=user_id, request_id=draft.request_id
            )
            if earlier is not None:
                return earlier
        if draft.kind is MemoryKind.FACT:
            fact = await store.get_fact(conn, user_id=user_id, key=draft.key, for_update=True)
            if fact is not None:
                return await self._supersede_fact(conn, user_id, fact, draft)
        else:
            duplicate = await store.find_semantic_duplicate(
                conn, user_id=user_id, content=draft.content
            )
            if duplicate is not None:
                return duplicate
        memory = await store.insert(conn, user_id=user_id, draft=draft)
        await store.record_events(
            conn,
            user_id=user_id,
            events=[(memory.id, MemoryOp.ADD, None, memory.content)],
            reason="",
            actor=API_ACTOR,
        )
        return memory

    async def _supersede_fact(
        self, conn: Connection, user_id: str, fact: Memory, draft: MemoryDraft
    ) -> Memory:
        changes: dict[str, Any] = {
            "topics": draft.topics,
            "metadata": draft.metadata,
            "source_message_ids": draft.source_message_ids,
            "expire_time": draft.expire_time,
            "agent_id": draft.agent_id,
            "session_id": draft.session_id,
        }
        if draft.content != fact.content:
            changes["content"] = draft.content
        updated = await self.store.update(conn, user_id=user_id, memory_id=fact.id, changes=changes)
        if draft.content != fact.content:
            await self.store.record_events(
                conn,
                user_id=user_id,
                events=[(fact.id, MemoryOp.UPDATE, fact.content, draft.content)],
                reason=f"new value for fact {draft.key!r}",
                actor=API_ACTOR,
            )
        return updated

    async def update(
        self, *, user_id: str, memory_id: str, fields: list[str], values: MemoryDraft, reason: str
    ) -> Memory:
        """Change the named fields of a memory to the values in `values`."""
        self._user_id(user_id)
        memory_id = self._memory_id("memory.id", memory_id)
        if not fields:
            raise InvalidArgument("update_mask", "must name at least one field to update")
        unknown = sorted(set(fields) - set(UPDATABLE_FIELDS))
        if unknown:
            # Named back to the caller, so bounded: a mask of junk must not
            # make a status message of unbounded size.
            shown = ", ".join(repr(path[:64]) for path in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise InvalidArgument(
                "update_mask",
                f"cannot update {shown}{more}; updatable: {', '.join(UPDATABLE_FIELDS)}",
            )
        validation.optional_id("reason", reason, max_length=_MAX_REASON)
        changes = {name: getattr(values, name) for name in fields}
        async with self._postgres.connection() as conn, conn.transaction():
            current = await self.store.lock(conn, user_id=user_id, memory_id=memory_id)
            if current is None:
                raise NotFound(f"user {user_id!r} has no memory {memory_id}")
            # Validate the memory as it would be after the change; an expiry
            # the update leaves alone is not checked again.
            after = replace(_draft_of(current), **changes)
            if "expire_time" not in changes:
                after = replace(after, expire_time=None)
            self.check_draft("memory", after)
            try:
                async with conn.transaction():  # a savepoint: the key may clash
                    updated = await self.store.update(
                        conn, user_id=user_id, memory_id=memory_id, changes=changes
                    )
            except psycopg.errors.UniqueViolation:
                raise AlreadyExists(
                    f"user {user_id!r} already has a fact with key {changes.get('key')!r}"
                    if "key" in changes
                    else f"user {user_id!r} already has a memory with this content"
                ) from None
            await self.store.record_events(
                conn,
                user_id=user_id,
                events=[(memory_id, MemoryOp.UPDATE, current.content, updated.content)],
                reason=reason,
                actor=API_ACTOR,
            )
        if not updated.indexed:
            await self._enqueue_embedding([updated])
        return updated

    # -- deletes -----------------------------------------------------------

    async def delete(self, *, user_id: str, memory_id: str, reason: str) -> int:
        self._user_id(user_id)
        memory_id = self._memory_id("id", memory_id)
        validation.optional_id("reason", reason, max_length=_MAX_REASON)
        async with self._postgres.connection() as conn, conn.transaction():
            deleted = await self.store.delete(conn, user_id=user_id, memory_id=memory_id)
            if not deleted:
                raise NotFound(f"user {user_id!r} has no memory {memory_id}")
            await self._record_deletes(conn, deleted, reason=reason, actor=API_ACTOR)
        return 1

    async def delete_user(self, *, user_id: str) -> int:
        self._user_id(user_id)
        async with self._postgres.connection() as conn, conn.transaction():
            deleted = await self.store.delete(conn, user_id=user_id)
            await self._record_deletes(
                conn, deleted, reason="all of the user's memories deleted", actor=API_ACTOR
            )
        return len(deleted)

    async def delete_all(self, *, confirm: str) -> int:
        if confirm != DELETE_ALL_CONFIRMATION:
            raise FailedPrecondition(
                "DeleteAllMemories deletes every user's memories;"
                f' set confirm to "{DELETE_ALL_CONFIRMATION}"'
            )
        return await self._delete_in_batches(
            expired_only=False, reason="all memories deleted", actor="admin"
        )

    async def purge_expired(self) -> int:
        """Delete every user's expired memories (the worker's cron)."""
        return await self._delete_in_batches(
            expired_only=True, reason="expired", actor=EXPIRY_ACTOR
        )

    async def _delete_in_batches(self, *, expired_only: bool, reason: str, actor: str) -> int:
        """Delete across users in batches, never one huge transaction; each
        batch records its events in the same transaction, so the history never
        misses a deletion and a cancelled run leaves the rest for the next."""
        total = 0
        while True:
            async with self._postgres.connection() as conn, conn.transaction():
                # The expiry cron leaves rows an embedding batch holds to its
                # next run; DeleteAllMemories waits for them, or a short batch
                # would end it with those rows still stored.
                deleted = await self.store.delete(
                    conn,
                    user_id=None,
                    expired_only=expired_only,
                    limit=_DELETE_BATCH,
                    skip_locked=expired_only,
                )
                await self._record_deletes(conn, deleted, reason=reason, actor=actor)
            total += len(deleted)
            if len(deleted) < _DELETE_BATCH:
                return total

    async def _record_deletes(
        self, conn: Connection, deleted: list[Memory], *, reason: str, actor: str
    ) -> None:
        by_user: dict[str, list[Memory]] = defaultdict(list)
        for memory in deleted:
            by_user[memory.user_id].append(memory)
        for user_id, memories in by_user.items():
            await self.store.record_events(
                conn,
                user_id=user_id,
                events=[(m.id, MemoryOp.DELETE, m.content, None) for m in memories],
                reason=reason,
                actor=actor,
            )

    # -- reads -------------------------------------------------------------

    async def get(self, *, user_id: str, memory_id: str) -> Memory:
        self._user_id(user_id)
        memory_id = self._memory_id("id", memory_id)
        async with self._postgres.connection() as conn:
            memory = await self.store.get(conn, user_id=user_id, memory_id=memory_id)
        if memory is None:
            raise NotFound(f"user {user_id!r} has no memory {memory_id}")
        return memory

    async def get_fact(self, *, user_id: str, key: str) -> Memory:
        self._user_id(user_id)
        validation.require_id("key", key, max_length=self._settings.max_id_length)
        async with self._postgres.connection() as conn:
            memory = await self.store.get_fact(conn, user_id=user_id, key=key)
        if memory is None:
            raise NotFound(f"user {user_id!r} has no fact {key!r}")
        return memory

    def check_filter(self, memory_filter: MemoryFilter, *, field: str = "filters") -> None:
        """`field` is where the filter's fields sit in the request ("" for top level)."""
        prefix = f"{field}." if field else ""
        validation.check_count(
            f"{prefix}kinds", memory_filter.kinds, maximum=len(MemoryKind), noun="kinds"
        )
        self._check_topics(f"{prefix}topics", memory_filter.topics)
        self._optional_id(f"{prefix}agent_id", memory_filter.agent_id)
        self._optional_id(f"{prefix}session_id", memory_filter.session_id)
        after, before = memory_filter.created_after, memory_filter.created_before
        if after is not None and before is not None and after >= before:
            raise InvalidArgument(f"{prefix}created_after", "must be before created_before")

    async def list_memories(
        self,
        *,
        user_id: str,
        memory_filter: MemoryFilter,
        page_size_requested: int,
        page_token: str,
    ) -> MemoryPage:
        self._user_id(user_id)
        self.check_filter(memory_filter)
        size = page_size(page_size_requested)
        query = ("memories", user_id, repr(memory_filter))
        position = decode_page_token(page_token, query=query)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position[0]), str(uuid.UUID(position[1])))
            except (IndexError, TypeError, ValueError) as exc:
                raise InvalidArgument("page_token", "is malformed") from exc
        async with self._postgres.connection() as conn:
            memories = await self.store.list_page(
                conn, user_id=user_id, memory_filter=memory_filter, after=after, limit=size + 1
            )
        next_token = ""
        if len(memories) > size:
            memories = memories[:size]
            last = memories[-1]
            next_token = encode_page_token([last.create_time.isoformat(), last.id], query=query)
        return MemoryPage(memories=memories, next_page_token=next_token)

    async def history(self, *, user_id: str, memory_id: str) -> list[MemoryEvent]:
        self._user_id(user_id)
        memory_id = self._memory_id("id", memory_id)
        async with self._postgres.connection() as conn:
            events = await self.store.events(conn, user_id=user_id, memory_id=memory_id)
        if not events:
            raise NotFound(f"user {user_id!r} has no memory {memory_id} and never had")
        return events

    # -- indexing ----------------------------------------------------------

    async def _enqueue_embedding(self, memories: list[Memory]) -> None:
        if not memories:
            return
        try:
            await enqueue_embedding(self._arq, [m.id for m in memories])
        except (RedisError, TimeoutError) as exc:
            # The rows are stored; the worker's sweep embeds them without a job.
            log.warning("could not enqueue embedding of %d memories: %s", len(memories), exc)


def _draft_of(memory: Memory) -> MemoryDraft:
    return MemoryDraft(
        kind=memory.kind,
        content=memory.content,
        key=memory.key,
        agent_id=memory.agent_id,
        session_id=memory.session_id,
        topics=memory.topics,
        metadata=memory.metadata,
        source_message_ids=memory.source_message_ids,
        expire_time=memory.expire_time,
    )
