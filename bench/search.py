"""Long-term memory benchmark: ingest, embedding, search latency and ANN recall,
against its own stack (stores, `memoryd serve`, one `memoryd worker`).

    memoryd-bench search [--quick] [--memories N --users N] [--out PATH] [--check]

1. Ingest N memories over U users (memory-like sentences from templates, fixed
   seed) with BatchCreateMemories: acks/s.
2. Wait until the worker has embedded them all, counting in the bench's own
   Postgres: memories/s embedded (one worker).
3. SearchMemories p50/p99, one caller, each query a new sentence for a random
   user (so the server embeds every query: no cache hits), next to
   Health/Check in the same run.
4. ANN recall@10: SearchMemories(mode=SEMANTIC, limit=10) against an exact
   cosine scan done here in SQL, with the query embedded here by the same model.
5. Time from CreateMemory's ack to READY (its vector stored, read every ~10 ms)
   under a steady 50 writes/s.

The report goes to stdout and, as JSON, to --out; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped]
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import LoadResult, Op, machine_header, machine_info, progress, run_load
from bench.stack import ServerProcess, exit_on_sigterm, running_server
from bench.stats import Summary, format_table, percentile
from bench.textgen import SentenceGenerator
from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc

DEFAULT_OUT = Path(__file__).parent / "results" / "search.json"

# Targets (from the issue).
P50_TARGET_MS = 15.0
P99_TARGET_MS = 40.0
RECALL_TARGET = 0.95
EMBED_RATE_TARGET = 400.0  # memories/s per worker
ACK_TO_READY_P95_TARGET_S = 1.0

HEALTH = "Health/Check"
SEARCH_MODES: dict[str, pb.SearchMode] = {
    "SearchMemories (hybrid)": pb.SEARCH_MODE_HYBRID,
    "SearchMemories (semantic)": pb.SEARCH_MODE_SEMANTIC,
    "SearchMemories (keyword)": pb.SEARCH_MODE_KEYWORD,
}
HYBRID = "SearchMemories (hybrid)"
SEARCH_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 30.0  # per memory in the steady phase; slower counts as this

# --- configuration ---------------------------------------------------------


@dataclass(frozen=True)
class Config:
    memories: int
    users: int
    batch_size: int
    ingest_concurrency: int
    searches: int  # calls per search cell (and per Health/Check cell)
    rounds: int
    recall_queries: int
    write_rate: float  # steady phase, writes/s
    write_seconds: float
    poll_interval_s: float
    embed_timeout_s: float
    out: Path
    data_dir: Path | None
    check: bool
    seed: int = 11

    @property
    def per_user(self) -> int:
        return math.ceil(self.memories / self.users)


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="memoryd-bench search", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="~5k memories over 50 users")
    parser.add_argument("--memories", type=int, help="memories to ingest (100000)")
    parser.add_argument("--users", type=int, help="users they are spread over (1000)")
    parser.add_argument("--batch-size", type=int, default=100, help="per BatchCreate (100)")
    parser.add_argument("--ingest-concurrency", type=int, default=8, help="batches in flight (8)")
    parser.add_argument("--searches", type=int, help="SearchMemories calls per mode (1500)")
    parser.add_argument("--recall-queries", type=int, help="queries for ANN recall (300)")
    parser.add_argument("--write-rate", type=float, default=50.0, help="steady writes/s (50)")
    parser.add_argument("--write-seconds", type=float, help="steady phase length, s (30)")
    parser.add_argument(
        "--embed-timeout", type=float, default=3600.0, help="give up embedding after s (3600)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write JSON")
    parser.add_argument(
        "--data-dir", type=Path, help="embedded stores' data dir (default: a fresh temp dir)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    memories, users, searches, recall_queries, seconds = (
        (5000, 50, 300, 100, 10.0) if args.quick else (100_000, 1000, 1500, 300, 30.0)
    )
    return Config(
        memories=args.memories or memories,
        users=args.users or users,
        batch_size=max(1, args.batch_size),
        ingest_concurrency=max(1, args.ingest_concurrency),
        searches=args.searches or searches,
        rounds=3,
        recall_queries=args.recall_queries or recall_queries,
        write_rate=args.write_rate,
        write_seconds=args.write_seconds or seconds,
        poll_interval_s=0.010,
        embed_timeout_s=args.embed_timeout,
        out=args.out,
        data_dir=args.data_dir,
        check=args.check,
    )


# --- test data ---------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Who owns what: users' ids and a seeded source of their memories and queries."""

    prefix: str  # every user id of this run starts with it
    users: list[str]
    seed: int

    @property
    def data_prefix(self) -> str:
        """What the ingested users' ids (not warm-up's or steady writes') start with."""
        return self.prefix + "u"

    def memories_of(self, index: int, count: int) -> list[str]:
        # Per user, from its own seed: a user's memories do not depend on how
        # many other users there are.
        return SentenceGenerator(self.seed * 1_000_003 + index).distinct(count)

    def queries(self, count: int, salt: int) -> list[str]:
        return SentenceGenerator(self.seed * 7919 + salt).distinct(count)


def make_corpus(config: Config) -> Corpus:
    prefix = f"bench-search-{uuid.uuid4().hex[:6]}-"
    return Corpus(prefix, [f"{prefix}u{i:05d}" for i in range(config.users)], config.seed)


# --- store access ------------------------------------------------------------


async def embedded_count(conn: psycopg.AsyncConnection[Any], prefix: str) -> tuple[int, int]:
    """(embedded, total) memories of this run's users, straight from Postgres."""
    cursor = await conn.execute(
        "SELECT count(*) FILTER (WHERE embedding IS NOT NULL), count(*) "
        "FROM memories WHERE user_id LIKE %s",
        (prefix + "%",),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def exact_neighbours(
    conn: psycopg.AsyncConnection[Any], user_id: str, vector: Sequence[float], k: int
) -> list[str]:
    """The user's k nearest memories by cosine distance, by a full scan.

    MATERIALIZED keeps the planner from answering with the HNSW index (the
    thing under test) instead of computing every distance.
    """
    literal = "[" + ",".join(f"{x:.8g}" for x in vector) + "]"
    cursor = await conn.execute(
        "WITH mine AS MATERIALIZED ("
        "  SELECT id, embedding FROM memories WHERE user_id = %s AND embedding IS NOT NULL"
        ") SELECT id FROM mine ORDER BY embedding <=> %s::vector LIMIT %s",
        (user_id, literal, k),
    )
    return [str(row[0]) for row in await cursor.fetchall()]


# --- phases ------------------------------------------------------------------


@dataclass
class Timeline:
    """(seconds since ingest started, memories embedded) samples."""

    points: list[tuple[float, int]] = field(default_factory=list)

    def rate_between(self, low: int, high: int) -> float:
        """Embedded/s between the first samples at or past `low` and `high`
        embedded: the steady rate, without the worker's start or the tail."""
        start = next((p for p in self.points if p[1] >= low), None)
        end = next((p for p in self.points if p[1] >= high), None)
        if start is None or end is None or end[0] <= start[0]:
            return math.nan
        return (end[1] - start[1]) / (end[0] - start[0])


@dataclass
class IngestResult:
    acked: int
    ack_s: float  # first batch sent to last ack
    embedded: int
    embed_s: float  # first batch sent to all embedded (or the timeout)
    steady_rate: float  # memories/s embedded between 10% and 90%
    batch_latencies_s: list[float]


async def warm_up(stub: memory_grpc.MemoryServiceAsyncStub, corpus: Corpus) -> None:
    """A few memories and a waiting search: both processes have loaded the
    model and the worker drains its queue before anything is timed."""
    user_id = f"{corpus.prefix}warmup"
    texts = corpus.queries(20, salt=99)
    await stub.BatchCreateMemories(
        pb.BatchCreateMemoriesRequest(
            user_id=user_id,
            requests=[
                pb.CreateMemoryRequest(memory=pb.Memory(kind=pb.MEMORY_KIND_SEMANTIC, content=t))
                for t in texts
            ],
        ),
        timeout=SEARCH_TIMEOUT_S,
    )
    progress("warm-up: waiting for the worker to embed 20 memories (loads its model)")
    await stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id=user_id, query=texts[0], wait_for_index=True),
        timeout=300.0,
    )


async def ingest(
    stub: memory_grpc.MemoryServiceAsyncStub,
    conn: psycopg.AsyncConnection[Any],
    config: Config,
    corpus: Corpus,
    server: ServerProcess,
) -> IngestResult:
    """Ingest every user's memories, then wait until all are embedded."""
    batches: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
    for index, user_id in enumerate(corpus.users):
        texts = corpus.memories_of(index, config.per_user)
        for start in range(0, len(texts), config.batch_size):
            batches.put_nowait((user_id, texts[start : start + config.batch_size]))
    total_batches = batches.qsize()
    latencies: list[float] = []
    acked = 0
    clock = time.perf_counter

    async def sender() -> None:
        nonlocal acked
        while not batches.empty():
            user_id, texts = batches.get_nowait()
            request = pb.BatchCreateMemoriesRequest(
                user_id=user_id,
                requests=[
                    pb.CreateMemoryRequest(
                        memory=pb.Memory(kind=pb.MEMORY_KIND_SEMANTIC, content=text)
                    )
                    for text in texts
                ],
            )
            sent = clock()
            reply = await stub.BatchCreateMemories(request, timeout=60.0)
            latencies.append(clock() - sent)
            acked += len(reply.memories)
            if len(latencies) % max(1, total_batches // 10) == 0:
                progress(f"ingest: {len(latencies)}/{total_batches} batches, {acked} acked")

    started = clock()
    timeline = Timeline()
    monitor = asyncio.create_task(
        watch_embedding(server.postgres_url, corpus.data_prefix, started, timeline)
    )
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(config.ingest_concurrency):
                group.create_task(sender())
        ack_s = clock() - started
        progress(f"ingest: {acked} acked in {ack_s:.1f} s ({acked / ack_s:,.0f}/s)")
        embedded = await wait_embedded(conn, config, corpus.data_prefix, acked, server.worker_pid)
    finally:
        monitor.cancel()
    embed_s = clock() - started
    return IngestResult(
        acked=acked,
        ack_s=ack_s,
        embedded=embedded,
        embed_s=embed_s,
        steady_rate=timeline.rate_between(acked // 10, acked * 9 // 10),
        batch_latencies_s=latencies,
    )


async def watch_embedding(
    postgres_url: str, prefix: str, started: float, timeline: Timeline
) -> None:
    # Its own connection: the waiting loop uses the other one meanwhile.
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as own:
        while True:
            embedded, _ = await embedded_count(own, prefix)
            timeline.points.append((time.perf_counter() - started, embedded))
            await asyncio.sleep(0.5)


async def wait_embedded(
    conn: psycopg.AsyncConnection[Any],
    config: Config,
    prefix: str,
    expected: int,
    worker_pid: int | None,
) -> int:
    deadline = time.monotonic() + config.embed_timeout_s
    last_report = 0.0
    embedded = 0
    while time.monotonic() < deadline:
        embedded, _ = await embedded_count(conn, prefix)
        if embedded >= expected:
            return embedded
        if worker_pid is not None and not _alive(worker_pid):
            raise RuntimeError("the worker exited while memories were waiting to be embedded")
        if time.monotonic() - last_report > 5.0:
            progress(f"embedding: {embedded}/{expected} READY")
            last_report = time.monotonic()
        await asyncio.sleep(0.2)
    progress(f"embedding: gave up after {config.embed_timeout_s:.0f} s at {embedded}/{expected}")
    return embedded


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@dataclass
class Cell:
    name: str
    load: LoadResult | None = None

    def add(self, load: LoadResult) -> None:
        self.load = load if self.load is None else self.load.combine(load)


async def measure_latency(
    channel: grpc.aio.Channel, config: Config, corpus: Corpus
) -> dict[str, Summary]:
    """Health/Check and SearchMemories in each mode, one caller, interleaved rounds."""
    stub = memory_grpc.MemoryServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    rng = random.Random(config.seed)
    warmup = max(20, config.searches // 20)
    # Every call a query never seen before: the server's query-embedding cache
    # would otherwise hide the cost the target includes.
    queries = iter(corpus.queries((config.searches + warmup) * len(SEARCH_MODES), salt=1))
    health_request = health_pb2.HealthCheckRequest()

    def search(mode: pb.SearchMode) -> Op:
        def call(_: int) -> Any:
            request = pb.SearchMemoriesRequest(
                user_id=rng.choice(corpus.users), query=next(queries), limit=10, mode=mode
            )
            return stub.SearchMemories(request, timeout=SEARCH_TIMEOUT_S)

        return call

    ops: dict[str, Op] = {HEALTH: lambda _: health.Check(health_request)}
    ops.update({name: search(mode) for name, mode in SEARCH_MODES.items()})
    cells = {name: Cell(name) for name in ops}
    for name, op in ops.items():
        progress(f"warming up {name} ({warmup} calls)")
        await run_load(op, requests=warmup, concurrency=1)
    per_round = max(1, config.searches // config.rounds)
    for index in range(config.rounds):
        for name, op in ops.items():
            load = await run_load(op, requests=per_round, concurrency=1)
            cells[name].add(load)
            summary = load.summary()
            progress(
                f"round {index + 1}/{config.rounds} {name}: p50 {summary.p50_ms:.2f} ms, "
                f"p99 {summary.p99_ms:.2f} ms"
            )
    return {name: cell.load.summary() for name, cell in cells.items() if cell.load}


async def measure_recall(
    stub: memory_grpc.MemoryServiceAsyncStub,
    conn: psycopg.AsyncConnection[Any],
    config: Config,
    corpus: Corpus,
) -> float:
    """Mean recall@10 of semantic SearchMemories against an exact scan."""
    from server.embedding import Embedder  # heavy (torch); only this phase needs it
    from server.settings import Settings

    progress("ANN recall: loading the embedding model in the bench process")
    embedder = Embedder.load(Settings())
    rng = random.Random(config.seed + 1)
    queries = corpus.queries(config.recall_queries, salt=2)
    vectors = embedder.embed(queries)
    recalls: list[float] = []
    for number, (query, vector) in enumerate(zip(queries, vectors, strict=True), start=1):
        user_id = rng.choice(corpus.users)
        reply = await stub.SearchMemories(
            pb.SearchMemoriesRequest(
                user_id=user_id, query=query, limit=10, mode=pb.SEARCH_MODE_SEMANTIC
            ),
            timeout=SEARCH_TIMEOUT_S,
        )
        exact = await exact_neighbours(conn, user_id, vector, 10)
        found = {result.memory.id for result in reply.results}
        if exact:
            recalls.append(len(found & set(exact)) / len(exact))
        if number % max(1, len(queries) // 5) == 0:
            progress(f"ANN recall: {number}/{len(queries)}, mean {sum(recalls) / len(recalls):.3f}")
    return sum(recalls) / len(recalls) if recalls else math.nan


@dataclass
class SteadyResult:
    writes: int
    ack_latencies_s: list[float]
    ready_latencies_s: list[float]  # ack -> READY seen; timeouts count as READY_TIMEOUT_S
    timeouts: int
    achieved_rate: float


async def measure_ack_to_ready(
    stub: memory_grpc.MemoryServiceAsyncStub,
    conn: psycopg.AsyncConnection[Any],
    config: Config,
    corpus: Corpus,
) -> SteadyResult:
    """CreateMemory at a fixed rate (open loop: a slow ack does not slow the
    next write); one watcher reads which acknowledged rows have their vector
    (what GetMemory reports as READY) every poll interval, in one query.

    One query for all of them rather than GetMemory per write: ~25 writes are
    waiting at any moment, and polling each every 10 ms through the API made
    ~2,500 calls/s, which took the very server being measured."""
    count = max(1, round(config.write_rate * config.write_seconds))
    texts = corpus.queries(count, salt=3)
    users = [f"{corpus.prefix}steady{i:03d}" for i in range(50)]
    acks: list[float] = []
    readies: list[float] = []
    waiting: dict[str, float] = {}  # memory id -> when its create was acknowledged
    clock = time.perf_counter

    async def write(index: int) -> None:
        sent = clock()
        reply = await stub.CreateMemory(
            pb.CreateMemoryRequest(
                user_id=users[index % len(users)],
                memory=pb.Memory(kind=pb.MEMORY_KIND_SEMANTIC, content=texts[index]),
            ),
            timeout=SEARCH_TIMEOUT_S,
        )
        acked = clock()
        acks.append(acked - sent)
        if reply.memory.state == pb.MEMORY_STATE_READY:
            readies.append(0.0)
        else:
            waiting[reply.memory.id] = acked

    async def watch(writing: asyncio.Task[float]) -> int:
        """Until every write is READY or timed out; returns the timeouts."""
        timeouts = 0
        while waiting or not writing.done():
            await asyncio.sleep(config.poll_interval_s)
            cursor = await conn.execute(
                "SELECT id::text FROM memories"
                " WHERE id = ANY(%s::uuid[]) AND embedding IS NOT NULL",
                (list(waiting),),
            )
            now = clock()
            for (memory_id,) in await cursor.fetchall():
                readies.append(now - waiting.pop(memory_id))
            for memory_id, acked in list(waiting.items()):
                if now - acked > READY_TIMEOUT_S:
                    del waiting[memory_id]
                    readies.append(READY_TIMEOUT_S)
                    timeouts += 1
        return timeouts

    async def write_all() -> float:
        started = clock()
        async with asyncio.TaskGroup() as group:
            for index in range(count):
                delay = started + index / config.write_rate - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(write(index))
            issued_s = clock() - started
        return count / issued_s if issued_s > 0 else math.nan

    progress(f"steady writes: {count} CreateMemory at {config.write_rate:.0f}/s")
    writing = asyncio.create_task(write_all())
    timeouts = await watch(writing)
    return SteadyResult(
        writes=count,
        ack_latencies_s=acks,
        ready_latencies_s=readies,
        timeouts=timeouts,
        achieved_rate=await writing,
    )


# --- reporting -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    description: str
    value: float
    limit: float
    unit: str
    passed: bool


@dataclass(frozen=True)
class Results:
    ingest: IngestResult
    latency: dict[str, Summary]
    recall_at_10: float
    steady: SteadyResult

    def ready_ms(self, q: float) -> float:
        ordered = sorted(self.steady.ready_latencies_s)
        return percentile(ordered, q) * 1000 if ordered else math.nan


def targets(results: Results) -> list[Target]:
    search = results.latency[HYBRID]
    rate = results.ingest.steady_rate
    ready_p95_s = results.ready_ms(95) / 1000

    def at_most(description: str, value: float, limit: float, unit: str) -> Target:
        return Target(description, value, limit, unit, value <= limit)

    def at_least(description: str, value: float, limit: float, unit: str) -> Target:
        return Target(description, value, limit, unit, value >= limit)

    return [
        at_most("SearchMemories p50 (hybrid, 1 caller)", search.p50_ms, P50_TARGET_MS, "ms"),
        at_most("SearchMemories p99 (hybrid, 1 caller)", search.p99_ms, P99_TARGET_MS, "ms"),
        at_least("ANN recall@10 (semantic vs exact)", results.recall_at_10, RECALL_TARGET, ""),
        at_least("memories/s embedded (1 worker)", rate, EMBED_RATE_TARGET, "/s"),
        at_most("ack -> READY p95 at steady writes", ready_p95_s, ACK_TO_READY_P95_TARGET_S, "s"),
    ]


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def render(config: Config, results: Results, goals: list[Target]) -> str:
    ingest = results.ingest
    steady = results.steady
    headers = ["operation", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "ops/s"]
    body = [
        [
            name,
            str(s.n),
            _number(s.p50_ms, 2),
            _number(s.p90_ms, 2),
            _number(s.p99_ms, 2),
            _number(s.max_ms, 2),
            _number(s.throughput, 0),
        ]
        for name, s in results.latency.items()
    ]
    goal_rows = [
        [
            goal.description,
            f"{_number(goal.value, 3)} {goal.unit}".strip(),
            f"{'<=' if goal.unit in ('ms', 's') else '>='} {goal.limit:g} {goal.unit}".strip(),
            "PASS" if goal.passed else "MISS",
        ]
        for goal in goals
    ]
    return "\n".join(
        [
            f"ingest:   {ingest.acked:,} memories over {config.users:,} users in batches of "
            f"{config.batch_size} ({config.ingest_concurrency} in flight): "
            f"{ingest.acked / ingest.ack_s:,.0f} acks/s",
            f"embed:    {ingest.embedded:,} READY {ingest.embed_s:.1f} s after the first batch "
            f"({ingest.embedded / ingest.embed_s:,.0f}/s overall, "
            f"{_number(ingest.steady_rate, 0)}/s between 10% and 90%)",
            f"steady:   {steady.writes} CreateMemory at {steady.achieved_rate:.1f}/s: ack p50 "
            f"{_ms(steady.ack_latencies_s, 50)} ms; ack->READY p50 {results.ready_ms(50):.0f} ms, "
            f"p95 {results.ready_ms(95):.0f} ms, p99 {results.ready_ms(99):.0f} ms "
            f"({steady.timeouts} not READY within {READY_TIMEOUT_S:.0f} s)",
            f"recall:   ANN recall@10 {results.recall_at_10:.4f} over {config.recall_queries} "
            "queries (semantic SearchMemories vs an exact scan in SQL)",
            "",
            format_table(headers, body),
            "",
            format_table(["target", "measured", "goal", ""], goal_rows),
        ]
    )


def _ms(latencies_s: Sequence[float], q: float) -> str:
    return f"{percentile(sorted(latencies_s), q) * 1000:.1f}" if latencies_s else "-"


def to_json(
    info: dict[str, Any],
    config: Config,
    server: ServerProcess,
    results: Results,
    goals: list[Target],
) -> dict[str, Any]:
    ingest = results.ingest
    steady = results.steady
    return {
        "benchmark": "search",
        "machine": info,
        "config": {
            **{k: v for k, v in asdict(config).items() if k not in ("out", "data_dir")},
            "server_launch": server.launch,
            "embedded_stores": server.embedded_stores,
            "workers": 1,
        },
        "ingest": {
            "memories": ingest.acked,
            "acks_per_s": ingest.acked / ingest.ack_s,
            "batch_p50_ms": float(_ms(ingest.batch_latencies_s, 50)),
            "embedded": ingest.embedded,
            "embed_s": ingest.embed_s,
            "embedded_per_s_overall": ingest.embedded / ingest.embed_s,
            "embedded_per_s_steady": ingest.steady_rate,
        },
        "latency": {name: asdict(summary) for name, summary in results.latency.items()},
        "ann_recall_at_10": results.recall_at_10,
        "ack_to_ready": {
            "writes": steady.writes,
            "rate": steady.achieved_rate,
            "p50_ms": results.ready_ms(50),
            "p95_ms": results.ready_ms(95),
            "p99_ms": results.ready_ms(99),
            "timeouts": steady.timeouts,
            "ack_p50_ms": float(_ms(steady.ack_latencies_s, 50)),
        },
        "targets": [asdict(goal) for goal in goals],
    }


# --- entry point -----------------------------------------------------------------


async def run(server: ServerProcess, config: Config) -> Results:
    corpus = make_corpus(config)
    async with (
        grpc.aio.insecure_channel(server.address) as channel,
        await psycopg.AsyncConnection.connect(server.postgres_url, autocommit=True) as conn,
    ):
        stub = memory_grpc.MemoryServiceStub(channel)
        await warm_up(stub, corpus)
        progress(f"ingest: {config.memories:,} memories over {config.users:,} users")
        ingest_result = await ingest(stub, conn, config, corpus, server)
        latency = await measure_latency(channel, config, corpus)
        recall = await measure_recall(stub, conn, config, corpus)
        steady = await measure_ack_to_ready(stub, conn, config, corpus)
    return Results(ingest_result, latency, recall, steady)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    exit_on_sigterm()
    info = machine_info()
    print(machine_header(info), flush=True)
    with running_server(data_dir=config.data_dir, worker=True) as server:
        print(
            f"setup:   server via {server.launch} + 1 `memoryd worker`; "
            f"{config.memories:,} memories over {config.users:,} users",
            flush=True,
        )
        results = asyncio.run(run(server, config))
    goals = targets(results)
    print()
    print(render(config, results, goals))
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(
        json.dumps(to_json(info, config, server, results, goals), indent=2) + "\n"
    )
    print(f"\nresults written to {config.out}")
    return 1 if config.check and not all(goal.passed for goal in goals) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything started has been stopped by now
        print("interrupted", file=sys.stderr)
        sys.exit(130)
