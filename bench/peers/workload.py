"""The workload every system runs, and the figures it produces.

The same texts (bench/textgen.py, fixed seeds), users, queries and dataset go
to every system, in the same order:

1. bulk load `users x memories` memories, then wait until they are searchable;
2. write acks: `writes` single writes, one at a time (p50/p99);
3. write -> searchable: `searchable` writes, each followed by searches for its
   own text until it comes back (time from the write to the first search that
   finds it, so the ack is included);
4. search latency: `searches` searches, one at a time (p50/p99);
5. throughput: `throughput_requests` searches at 16 and at 64 concurrent callers;
6. session history: one session of `history_turns` turns, `history_reads`
   reads of its last 20 turns (where the system has sessions);
7. recall@k on a JSONL dataset (bench/dataset.py): every message one memory,
   every question searched once, scored by bench/scoring.py;
8. resident memory of the system's processes (PSS) at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import scoring
from bench.dataset import Conversation
from bench.harness import progress, run_load
from bench.peers.adapter import Item, PeerAdapter, Turn, resident_bytes
from bench.stats import percentile
from bench.textgen import SentenceGenerator

HISTORY_WINDOW = 20
CONCURRENCY_LEVELS = (16, 64)
_POLL_INTERVAL_S = 0.01
_SEARCHABLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Sizes:
    users: int = 4
    memories: int = 250  # per user, bulk-loaded before measuring
    writes: int = 60
    searchable: int = 15
    searches: int = 120
    throughput_requests: int = 256  # per concurrency level
    history_turns: int = 60
    history_reads: int = 120
    k: int = 10

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            users=2,
            memories=20,
            writes=5,
            searchable=2,
            searches=10,
            throughput_requests=32,
            history_turns=25,
            history_reads=10,
        )


@dataclass
class PeerResult:
    """One system's figures; `error` set when it could not run (or stopped midway)."""

    name: str
    notes: str = ""
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "notes": self.notes, "error": self.error, **self.figures}


class Corpus:
    """Texts for one run, the same for every system."""

    def __init__(self, sizes: Sizes, run_id: str) -> None:
        self.run_id = run_id
        self.users = [f"{run_id}-u{i}" for i in range(sizes.users)]
        total = sizes.users * sizes.memories + sizes.writes + sizes.searchable
        texts = SentenceGenerator(seed=8).distinct(total)
        self.preload = {
            user: [
                Item(f"{user}-m{j}", texts[i * sizes.memories + j]) for j in range(sizes.memories)
            ]
            for i, user in enumerate(self.users)
        }
        rest = texts[sizes.users * sizes.memories :]
        self.writes = [Item(f"{run_id}-w{i}", text) for i, text in enumerate(rest[: sizes.writes])]
        self.fresh = [Item(f"{run_id}-f{i}", text) for i, text in enumerate(rest[sizes.writes :])]
        # Distinct queries for each phase: a repeated query would measure a
        # query-embedding cache (memoryd has one) instead of search.
        queries = SentenceGenerator(seed=9).distinct(
            sizes.searches + len(CONCURRENCY_LEVELS) * sizes.throughput_requests + 1
        )
        self.queries = queries[: sizes.searches]
        self.load_queries = queries[sizes.searches :]
        self.turns = [
            Turn("user" if i % 2 == 0 else "assistant", text)
            for i, text in enumerate(SentenceGenerator(seed=10).distinct(sizes.history_turns))
        ]


def _ms(latencies_s: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "n": len(ordered),
    }


async def wait_searchable(adapter: PeerAdapter, user_id: str, item: Item, k: int) -> float:
    """Seconds until a search for the item's own text returns it."""
    started = time.perf_counter()
    while True:
        hits = await adapter.search_by_meaning(user_id, item.text, k)
        if any(hit.source_id == item.source_id for hit in hits):
            return time.perf_counter() - started
        if time.perf_counter() - started > _SEARCHABLE_TIMEOUT_S:
            raise TimeoutError(
                f"{adapter.name}: memory {item.source_id} not searchable after "
                f"{_SEARCHABLE_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(_POLL_INTERVAL_S)


async def run_workload(
    adapter: PeerAdapter,
    sizes: Sizes,
    corpus: Corpus,
    dataset: Sequence[Conversation],
    result: PeerResult,
) -> None:
    """Fill `result.figures` step by step: a failure midway keeps what was measured."""
    figures = result.figures
    k = sizes.k
    progress(f"{adapter.name}: bulk load {sizes.users} x {sizes.memories} memories")
    started = time.perf_counter()
    for user in corpus.users:
        await adapter.add_memories(user, corpus.preload[user])
    for user in corpus.users:
        await wait_searchable(adapter, user, corpus.preload[user][-1], k)
    figures["bulk_load_s"] = round(time.perf_counter() - started, 2)

    progress(f"{adapter.name}: {sizes.writes} write acks")
    acks = []
    for index, item in enumerate(corpus.writes):
        user = corpus.users[index % len(corpus.users)]
        sent = time.perf_counter()
        await adapter.add_memory(user, item)
        acks.append(time.perf_counter() - sent)
    figures["write_ack"] = _ms(acks)

    progress(f"{adapter.name}: {sizes.searchable} writes until searchable")
    delays = []
    for index, item in enumerate(corpus.fresh):
        user = corpus.users[index % len(corpus.users)]
        sent = time.perf_counter()
        await adapter.add_memory(user, item)
        await wait_searchable(adapter, user, item, k)
        delays.append(time.perf_counter() - sent)
    figures["write_to_searchable"] = _ms(delays)

    progress(f"{adapter.name}: {sizes.searches} searches, one at a time")
    latencies = []
    for index, query in enumerate(corpus.queries):
        user = corpus.users[index % len(corpus.users)]
        sent = time.perf_counter()
        await adapter.search(user, query, k)
        latencies.append(time.perf_counter() - sent)
    figures["search"] = _ms(latencies)

    calls = 0
    for level in CONCURRENCY_LEVELS:
        progress(f"{adapter.name}: {sizes.throughput_requests} searches at {level} callers")

        async def one_search(caller: int) -> object:
            nonlocal calls
            calls += 1
            user = corpus.users[calls % len(corpus.users)]
            query = corpus.load_queries[calls % len(corpus.load_queries)]
            return await adapter.search(user, query, k)

        load = await run_load(one_search, requests=sizes.throughput_requests, concurrency=level)
        summary = load.summary()
        figures[f"search_at_{level}"] = {
            "ops_per_s": round(summary.throughput, 1),
            "p50_ms": round(summary.p50_ms, 3),
            "p99_ms": round(summary.p99_ms, 3),
        }

    if adapter.has_sessions:
        progress(f"{adapter.name}: session of {sizes.history_turns} turns, reads of the last 20")
        user, session = corpus.users[0], f"{corpus.run_id}-session"
        await adapter.append_session(user, session, corpus.turns)
        got = await adapter.history(user, session, HISTORY_WINDOW)
        want = corpus.turns[-HISTORY_WINDOW:]
        if [turn.content for turn in got] != [turn.content for turn in want]:
            raise RuntimeError(
                f"{adapter.name}: history returned {len(got)} turns, not the last "
                f"{len(want)} appended"
            )
        reads = []
        for _ in range(sizes.history_reads):
            sent = time.perf_counter()
            await adapter.history(user, session, HISTORY_WINDOW)
            reads.append(time.perf_counter() - sent)
        figures["history"] = _ms(reads)
    else:
        figures["history"] = "n/a: no sessions"

    figures["recall"] = await measure_recall(adapter, corpus.run_id, dataset, k)
    figures["resident_mib"] = round(resident_bytes(adapter.pids()) / 2**20, 1)
    for user in corpus.users:
        await adapter.delete_user(user)


async def measure_recall(
    adapter: PeerAdapter, run_id: str, dataset: Sequence[Conversation], k: int
) -> dict[str, Any]:
    """Every message one memory ("Speaker: text"), every question with evidence
    searched once through the system's own search."""
    progress(f"{adapter.name}: recall@{k} on {len(dataset)} conversations")
    outcomes = []
    for conversation in dataset:
        user = f"{run_id}-recall-{conversation.user_id}"
        items = [
            Item(message.id, f"{message.speaker}: {message.content}")
            for session in conversation.sessions
            for message in session.messages
        ]
        await adapter.add_memories(user, items)
        await wait_searchable(adapter, user, items[-1], k)
        for question in conversation.questions:
            if not question.evidence:
                continue
            hits = await adapter.search(user, question.query, k)
            sources = [[hit.source_id] for hit in hits[:k]]
            outcomes.append(
                scoring.score(question.id, question.category, question.evidence, sources)
            )
        await adapter.delete_user(user)
    figures = scoring.aggregate(outcomes, k)
    return {
        f"recall@{k}": figures[f"recall@{k}"],
        f"hit@{k}": figures[f"hit@{k}"],
        "questions": figures["questions"],
    }


def dataset_label(path: Path, conversations: Sequence[Conversation]) -> str:
    questions = sum(1 for c in conversations for q in c.questions if q.evidence)
    return f"{path.name} ({len(conversations)} conversations, {questions} questions)"
