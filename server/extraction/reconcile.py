"""Deciding what each candidate does to the user's stored memories.

For every candidate the reconciler looks at the user's most similar memories
(exact cosine over the user's own vectors) and the fact under the same key,
then decides:

- ADD     nothing like it is stored;
- UPDATE  a fact gets a new value ("Berlin" -> "Lisbon"), or a near-duplicate
          is replaced by a more specific wording of itself;
- DELETE  a retraction matches a stored memory strongly (same fact key, or
          very high similarity), never on weak evidence;
- NOOP    already known (its new evidence is added to the stored memory),
          a retraction of something not stored, or too unsure to act on.

Each decision about a stored memory is recorded as a memory event whose actor
is the job id, so GetMemoryHistory shows why a memory changed. Writes go
through MemoryStore on the caller's connection: the job commits them together
with its counts and its watermark, all or nothing. New and changed memories
get the candidate's vector at once (it was computed for the comparison), so
they are READY without an embedding job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from server.embedding import Embedder, Vector
from server.errors import InvalidArgument
from server.extraction.candidates import Candidate, Stance
from server.extraction.models import Decision
from server.memories import MemoryService
from server.memory_models import (
    Memory,
    MemoryDraft,
    MemoryFilter,
    MemoryKind,
    MemoryOp,
    SearchMode,
)
from server.settings import Settings
from server.stores import search_store
from server.stores.memory_store import Connection, MemoryStore
from server.stores.search_store import SearchPlan

# Evidence kept on one memory: a fact confirmed in every session would
# otherwise grow without bound.
MAX_SOURCES = 64
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Neighbor:
    memory: Memory
    similarity: float


@dataclass(frozen=True, slots=True)
class Target:
    """Where a job's memories go and who is recorded as making the change."""

    user_id: str
    session_id: str
    agent_id: str
    actor: str


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def same_value(a: str, b: str) -> bool:
    """Equal up to case, punctuation and spacing."""
    return _words(a) == _words(b)


def more_specific(new: str, old: str) -> bool:
    """The new wording says everything the old one did, and more."""
    new_words, old_words = set(_words(new)), set(_words(old))
    return old_words < new_words


def _merged_sources(memory: Memory, candidate: Candidate) -> list[str]:
    merged = list(memory.source_message_ids)
    merged += [s for s in candidate.source_message_ids if s not in merged]
    return merged[-MAX_SOURCES:]


class Reconciler:
    def __init__(self, *, settings: Settings, embedder: Embedder, memories: MemoryService) -> None:
        self._settings = settings
        self._embedder = embedder
        self._memories = memories
        self._store: MemoryStore = memories.store

    async def embed(self, candidates: Sequence[Candidate]) -> list[Vector]:
        """The candidates' vectors: one model call, made before the job's
        transaction opens, so the transaction holds no locks while it runs."""
        if not candidates:
            return []
        return await self._embedder.embed_async([c.content for c in candidates])

    async def apply(
        self,
        conn: Connection,
        *,
        target: Target,
        candidates: Sequence[Candidate],
        vectors: Sequence[Vector],
    ) -> list[Decision]:
        """Decide and write, in order: a later candidate sees what an earlier
        one wrote (two mentions of one thing in a transcript store it once)."""
        decisions = []
        for candidate, vector in zip(candidates, vectors, strict=True):
            decision = await self._decide(conn, target, candidate, vector)
            if decision.memory_id:
                await self._store.record_events(
                    conn,
                    user_id=target.user_id,
                    events=[
                        (
                            decision.memory_id,
                            decision.op,
                            decision.old_content,
                            decision.new_content,
                        )
                    ],
                    reason=decision.reason,
                    actor=target.actor,
                )
            decisions.append(decision)
        return decisions

    # -- decisions -----------------------------------------------------------

    async def _decide(
        self, conn: Connection, target: Target, candidate: Candidate, vector: Vector
    ) -> Decision:
        if candidate.confidence < self._settings.extract_min_confidence:
            return Decision(
                MemoryOp.NOOP,
                f"dropped: confidence {candidate.confidence:.2f} is below "
                f"{self._settings.extract_min_confidence:.2f}",
            )
        if not candidate.source_message_ids:
            return Decision(MemoryOp.NOOP, "dropped: the candidate cites no message")
        try:
            self._memories.check_draft("candidate", self._draft(target, candidate))
        except InvalidArgument as exc:
            return Decision(MemoryOp.NOOP, f"dropped: {exc.message}")
        user_id = target.user_id
        fact = None
        if candidate.kind is MemoryKind.FACT and candidate.key:
            fact = await self._store.get_fact(
                conn, user_id=user_id, key=candidate.key, for_update=True
            )
        neighbors = await self._neighbors(conn, user_id, vector)
        if candidate.stance is Stance.RETRACT:
            return await self._retract(conn, target, candidate, fact, neighbors)
        if fact is not None:
            return await self._assert_fact(conn, target, candidate, vector, fact)
        return await self._assert_new(conn, target, candidate, vector, neighbors)

    async def _retract(
        self,
        conn: Connection,
        target: Target,
        candidate: Candidate,
        fact: Memory | None,
        neighbors: list[Neighbor],
    ) -> Decision:
        doomed, why = None, ""
        if fact is not None:
            doomed, why = fact, f"same fact key {candidate.key!r}"
        elif neighbors and neighbors[0].similarity >= self._settings.extract_retract_similarity:
            doomed, why = neighbors[0].memory, f"similarity {neighbors[0].similarity:.2f}"
        if doomed is None:
            best = f"{neighbors[0].similarity:.2f}" if neighbors else "none"
            return Decision(
                MemoryOp.NOOP,
                f"weak evidence: no stored memory matches the retraction strongly "
                f"(best similarity {best}); nothing deleted",
            )
        await self._store.delete(conn, user_id=target.user_id, memory_id=doomed.id)
        return Decision(
            MemoryOp.DELETE,
            _reason(f"retracted ({why})", candidate),
            doomed.id,
            old_content=doomed.content,
            new_content=None,
        )

    async def _assert_fact(
        self,
        conn: Connection,
        target: Target,
        candidate: Candidate,
        vector: Vector,
        fact: Memory,
    ) -> Decision:
        if same_value(fact.content, candidate.content):
            return await self._confirm(
                conn, target, fact, candidate, f"already known: same value for {candidate.key!r}"
            )
        updated = await self._store.update(
            conn,
            user_id=target.user_id,
            memory_id=fact.id,
            changes={
                "content": candidate.content,
                "topics": list(dict.fromkeys(candidate.topics)),
                "source_message_ids": list(candidate.source_message_ids),
                "session_id": target.session_id,
            },
        )
        await self._store.set_embeddings(conn, ids=[updated.id], vectors=_one_vector(vector))
        return Decision(
            MemoryOp.UPDATE,
            _reason(f"new value for fact {candidate.key!r} supersedes the stale one", candidate),
            fact.id,
            old_content=fact.content,
            new_content=candidate.content,
        )

    async def _assert_new(
        self,
        conn: Connection,
        target: Target,
        candidate: Candidate,
        vector: Vector,
        neighbors: list[Neighbor],
    ) -> Decision:
        user_id = target.user_id
        if candidate.kind is MemoryKind.SEMANTIC:
            twin = await self._store.find_semantic_duplicate(
                conn, user_id=user_id, content=candidate.content
            )
            if twin is not None:
                return await self._confirm(conn, target, twin, candidate, "already known")
        best = neighbors[0] if neighbors else None
        threshold = self._settings.extract_duplicate_similarity
        if best is not None and best.similarity >= threshold:
            old = best.memory
            if (
                candidate.kind is MemoryKind.SEMANTIC
                and old.kind is MemoryKind.SEMANTIC
                and more_specific(candidate.content, old.content)
            ):
                await self._store.update(
                    conn,
                    user_id=user_id,
                    memory_id=old.id,
                    changes={
                        "content": candidate.content,
                        "source_message_ids": _merged_sources(old, candidate),
                    },
                )
                await self._store.set_embeddings(conn, ids=[old.id], vectors=_one_vector(vector))
                return Decision(
                    MemoryOp.UPDATE,
                    _reason(f"more specific (similarity {best.similarity:.2f})", candidate),
                    old.id,
                    old_content=old.content,
                    new_content=candidate.content,
                )
            if not (candidate.kind is MemoryKind.FACT and old.kind is MemoryKind.SEMANTIC):
                return await self._confirm(
                    conn,
                    target,
                    old,
                    candidate,
                    f"near-duplicate (similarity {best.similarity:.2f})",
                )
        await self._store.delete_expired_clashes(
            conn, user_id=user_id, draft=self._draft(target, candidate)
        )
        memory = await self._store.insert(
            conn, user_id=user_id, draft=self._draft(target, candidate)
        )
        await self._store.set_embeddings(conn, ids=[memory.id], vectors=_one_vector(vector))
        nearest = f" (nearest similarity {best.similarity:.2f})" if best is not None else ""
        return Decision(
            MemoryOp.ADD,
            _reason(f"new{nearest}", candidate),
            memory.id,
            old_content=None,
            new_content=candidate.content,
        )

    async def _confirm(
        self, conn: Connection, target: Target, memory: Memory, candidate: Candidate, why: str
    ) -> Decision:
        """NOOP on a stored memory: its content stays, the new evidence is added."""
        sources = _merged_sources(memory, candidate)
        if sources != memory.source_message_ids:
            await self._store.update(
                conn,
                user_id=target.user_id,
                memory_id=memory.id,
                changes={"source_message_ids": sources},
            )
        return Decision(
            MemoryOp.NOOP,
            _reason(why, candidate),
            memory.id,
            old_content=memory.content,
            new_content=memory.content,
        )

    async def _neighbors(self, conn: Connection, user_id: str, vector: Vector) -> list[Neighbor]:
        """The user's most similar live memories, most similar first (the
        semantic search path: exact for small users, HNSW for large ones)."""
        plan = SearchPlan(
            user_id=user_id,
            text="",
            query_vector=vector,
            model=self._store.embedding_model,
            mode=SearchMode.SEMANTIC,
            memory_filter=MemoryFilter(),
            candidates=self._settings.extract_neighbors,
            limit=self._settings.extract_neighbors,
            min_score=0.0,
            recency_weight=0.0,
            half_life_s=1.0,
            exact_max_rows=self._settings.exact_search_max_rows,
        )
        # In semantic mode the score is the cosine similarity.
        found = await search_store.search(conn, plan, cipher=self._store.cipher)
        return [Neighbor(memory, score) for memory, score in found]

    @staticmethod
    def _draft(target: Target, candidate: Candidate) -> MemoryDraft:
        return MemoryDraft(
            kind=candidate.kind,
            content=candidate.content,
            key=candidate.key if candidate.kind is MemoryKind.FACT else "",
            agent_id=target.agent_id,
            session_id=target.session_id,
            topics=list(dict.fromkeys(candidate.topics)),
            source_message_ids=list(candidate.source_message_ids),
        )


def _one_vector(vector: Vector) -> npt.NDArray[np.float32]:
    return np.asarray([vector], dtype=np.float32)


def _reason(why: str, candidate: Candidate) -> str:
    return f"{why}: {candidate.reason}" if candidate.reason else why
