"""Session benchmark: AppendMessages and GetHistory against Health/Check and
a direct Redis LRANGE, in one run against one server.

    python -m bench.sessions [--quick] [--out PATH]

Health/Check is the floor of any call to this server (same process, same
interceptor, same connections, no store access); LRANGE of the session's list
with redis-py is the floor of the store access GetHistory makes. Targets
(from the issue): GetHistory p50 <= 1.5x Health/Check p50, and GetHistory
throughput at 64 callers >= 70% of Health/Check's.

The report goes to stdout and, as JSON, to --out; progress goes to stderr.
With MEMORYD_AUTH_TOKEN set, the server checks it and every call sends the
first of its tokens: the same figures with auth on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from bench.harness import (
    CpuMeter,
    LoadResult,
    Op,
    machine_header,
    machine_info,
    parent_pid,
    progress,
    run_load,
)
from bench.stack import ServerProcess, exit_on_sigterm, running_server
from bench.stats import Summary, format_table, ratio
from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.stores import redis_keys

LEVELS = (1, 64)  # concurrent callers, as the issue asks
HISTORY_MESSAGES = 200
HISTORY_WINDOW = 20
P50_TARGET = 1.5  # GetHistory p50 / Health p50, at 1 caller
THROUGHPUT_TARGET = 0.70  # GetHistory ops/s / Health ops/s, at 64 callers
DEFAULT_OUT = Path(__file__).parent / "results" / "sessions.json"

HEALTH = "Health/Check"
LRANGE = "redis-py LRANGE"
GET_HISTORY = "GetHistory"
APPEND = "AppendMessages"
APPEND_HOT = "AppendMessages (1 hot session)"

# --- configuration ---------------------------------------------------------


@dataclass(frozen=True)
class Config:
    requests: dict[int, int]  # per cell, by concurrency
    rounds: int
    channels: int
    out: Path
    data_dir: Path | None
    check: bool
    seed: int = 7


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sessions", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run (few requests)")
    parser.add_argument(
        "--requests-c1", type=int, help="calls per read cell at 1 caller (2000; appends: half)"
    )
    parser.add_argument(
        "--requests-c64",
        type=int,
        help="calls per read cell at 64 callers (10000; appends: half, hot session: a fifth)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="split each cell into this many rounds, interleaved with the other "
        "operations, so noise on a shared machine hits all of them alike (3)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=4,
        help="gRPC channels (one HTTP/2 connection each) the callers share (4)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write JSON")
    parser.add_argument(
        "--data-dir", type=Path, help="embedded stores' data dir (default: a fresh temp dir)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    c1, c64, rounds = (200, 1000, 1) if args.quick else (2000, 10000, 3)
    return Config(
        requests={1: args.requests_c1 or c1, 64: args.requests_c64 or c64},
        rounds=args.rounds or rounds,
        channels=max(1, args.channels),
        out=args.out,
        data_dir=args.data_dir,
        check=args.check,
        seed=7,
    )


# --- test data ---------------------------------------------------------------

_VOCABULARY = """
the a user asked about order shipping refund invoice account password reset
assistant replied that we could check your last payment status tomorrow please
confirm address email delivery window model tokens context memory summary plan
meeting notes budget report draft review thanks sure here is what I found
"""
_WORDS = _VOCABULARY.split()


class Messages:
    """Chat-like messages of 50-300 characters, alternating user and assistant,
    from a seeded generator so runs are comparable."""

    def __init__(self, seed: int, pool_size: int = 256) -> None:
        rng = random.Random(seed)
        self._pool = [
            pb.Message(
                role="user" if i % 2 == 0 else "assistant",
                content=self._text(rng, rng.randint(50, 300)),
            )
            for i in range(pool_size)
        ]
        self._next = 0

    @staticmethod
    def _text(rng: random.Random, length: int) -> str:
        words: list[str] = []
        size = 0
        while size < length:
            word = rng.choice(_WORDS)
            words.append(word)
            size += len(word) + 1
        return " ".join(words)[:length].rstrip() + "."

    def take(self, count: int) -> list[pb.Message]:
        taken = [self._pool[(self._next + i) % len(self._pool)] for i in range(count)]
        self._next += count
        return taken


# --- the client ----------------------------------------------------------------


class Client:
    """Several gRPC channels, one HTTP/2 connection each, so 64 callers do not
    queue on one connection. Every gRPC operation spreads its callers over
    them the same way, so the ratios to Health/Check compare like with like."""

    def __init__(self, address: str, channels: int) -> None:
        # A local subchannel pool per channel: with the default global pool,
        # channels to one target share a single connection.
        options = [("grpc.use_local_subchannel_pool", 1)]
        self._channels = [
            grpc.aio.insecure_channel(address, options=options) for _ in range(channels)
        ]
        self.sessions = [session_grpc.SessionServiceStub(c) for c in self._channels]
        self.health = [health_pb2_grpc.HealthStub(c) for c in self._channels]
        # Sent on every call, Health/Check's too, so the ratios stay like with like.
        token = os.environ.get("MEMORYD_AUTH_TOKEN", "").split(",")[0].strip()
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(grace=None)


async def lrange_of(redis: Redis, key: str, start: int, end: int) -> list[bytes]:
    # redis-py types its commands for the sync and the async client at once.
    return await cast(Awaitable[list[bytes]], redis.lrange(key, start, end))


@dataclass(frozen=True)
class Workload:
    """One row family of the report: an operation, made for a concurrency."""

    name: str
    levels: tuple[int, ...]
    make: Callable[[int], Op]  # concurrency -> the call one caller makes
    # Fraction of the cell's calls this workload makes: appends are 5-20x
    # slower than reads and under no target, so fewer calls keep the run short.
    share: float = 1.0

    def requests(self, per_cell: int) -> int:
        return max(1, round(per_cell * self.share))


def workloads(client: Client, redis: Redis, user_id: str, messages: Messages) -> list[Workload]:
    channels = len(client.sessions)
    health_request = health_pb2.HealthCheckRequest()
    history_request = pb.GetHistoryRequest(
        user_id=user_id, session_id="history", last_messages=HISTORY_WINDOW
    )
    history_key = redis_keys.session_messages(user_id, "history")

    def health(_: int) -> Op:
        return lambda caller: client.health[caller % channels].Check(
            health_request, metadata=client.metadata
        )

    def lrange(_: int) -> Op:
        return lambda caller: lrange_of(redis, history_key, -HISTORY_WINDOW, -1)

    def get_history(_: int) -> Op:
        return lambda caller: client.sessions[caller % channels].GetHistory(
            history_request, metadata=client.metadata
        )

    def append_to(session_of: Callable[[int], str]) -> Op:
        def call(caller: int) -> Any:
            request = pb.AppendMessagesRequest(
                user_id=user_id,
                session_id=session_of(caller),
                agent_id="bench",
                messages=messages.take(1),
            )
            return client.sessions[caller % channels].AppendMessages(
                request, metadata=client.metadata
            )

        return call

    def append_own_session(_: int) -> Op:
        # Each caller its own session: measures the server, not one row lock.
        return append_to(lambda caller: f"append-{caller}")

    def append_hot_session(_: int) -> Op:
        return append_to(lambda caller: "append-hot")

    return [
        Workload(HEALTH, LEVELS, health),
        Workload(LRANGE, LEVELS, lrange),
        Workload(GET_HISTORY, LEVELS, get_history),
        Workload(APPEND, LEVELS, append_own_session, share=0.5),
        Workload(APPEND_HOT, (64,), append_hot_session, share=0.2),
    ]


async def prepare_history(client: Client, redis: Redis, user_id: str, messages: Messages) -> None:
    """One session of HISTORY_MESSAGES messages, cached in Redis, and a check
    that GetHistory and LRANGE both read its newest HISTORY_WINDOW."""
    stub = client.sessions[0]
    for _ in range(0, HISTORY_MESSAGES, 50):
        await stub.AppendMessages(
            pb.AppendMessagesRequest(
                user_id=user_id, session_id="history", agent_id="bench", messages=messages.take(50)
            ),
            metadata=client.metadata,
        )
    reply = await stub.GetHistory(
        pb.GetHistoryRequest(user_id=user_id, session_id="history", last_messages=HISTORY_WINDOW),
        metadata=client.metadata,
    )
    seqs = [m.seq for m in reply.messages]
    first = HISTORY_MESSAGES - HISTORY_WINDOW + 1
    if seqs != list(range(first, HISTORY_MESSAGES + 1)):
        raise RuntimeError(f"GetHistory returned seqs {seqs}, not {first}..{HISTORY_MESSAGES}")
    cached = await lrange_of(redis, redis_keys.session_messages(user_id, "history"), 0, -1)
    if len(cached) != HISTORY_MESSAGES:
        raise RuntimeError(
            f"the Redis window holds {len(cached)} messages, not {HISTORY_MESSAGES}: "
            "GetHistory would be measured on its Postgres path"
        )


# --- measuring -----------------------------------------------------------------


@dataclass
class Cell:
    """Pooled results of one workload at one concurrency."""

    name: str
    concurrency: int
    load: LoadResult | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)

    def add(self, load: LoadResult, cpu_s: dict[str, float]) -> None:
        self.load = load if self.load is None else self.load.combine(load)
        for name, seconds in cpu_s.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + seconds


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal positive counts."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def cpu_meter(server: ServerProcess, redis: Redis) -> CpuMeter:
    meter = CpuMeter()
    meter.add("server", server.pid)
    meter.add("client", os.getpid())
    if server.embedded_stores:  # local processes only: a remote pid means nothing here
        info = await redis.info("server")
        meter.add("valkey", int(info["process_id"]))
        async with await psycopg.AsyncConnection.connect(server.postgres_url) as conn:
            cursor = await conn.execute("SELECT pg_backend_pid()")
            row = await cursor.fetchone()
            # Asked while the backend still exists: it exits with the connection.
            postmaster = parent_pid(int(row[0])) if row is not None else None
        if postmaster is not None:
            # The postmaster and all its children: one backend per pooled connection.
            meter.add("postgres", postmaster, children=True)
    return meter


async def measure(
    config: Config, level: list[Workload], meter: CpuMeter, concurrency: int
) -> list[Cell]:
    """Run every workload at `concurrency`, round-robin over config.rounds rounds."""
    ops = {workload.name: workload.make(concurrency) for workload in level}
    results = {workload.name: Cell(workload.name, concurrency) for workload in level}
    per_cell = config.requests[concurrency]
    rounds = {w.name: split(w.requests(per_cell), config.rounds) for w in level}
    for workload in level:
        # New connections, first appends creating sessions, lazily built
        # server state: none of it belongs in the figures.
        warmup = max(4 * concurrency, workload.requests(per_cell) // 20)
        progress(f"warming up {workload.name} at {concurrency} caller(s) ({warmup} calls)")
        await run_load(ops[workload.name], requests=warmup, concurrency=concurrency)
    for index in range(config.rounds):
        for name, op in ops.items():
            if index >= len(rounds[name]):
                continue
            before = meter.sample()
            load = await run_load(op, requests=rounds[name][index], concurrency=concurrency)
            results[name].add(load, CpuMeter.used(before, meter.sample()))
            summary = load.summary()
            progress(
                f"c={concurrency:<2} round {index + 1}/{config.rounds} {name}: {load.n} calls, "
                f"p50 {summary.p50_ms:.2f} ms, {summary.throughput:,.0f} ops/s"
            )
    return list(results.values())


async def run(server: ServerProcess, config: Config) -> list[Cell]:
    client = Client(server.address, config.channels)
    redis = Redis.from_url(server.redis_url)
    try:
        user_id = f"bench-{uuid.uuid4().hex[:8]}"
        messages = Messages(config.seed)
        progress(f"preparing a {HISTORY_MESSAGES}-message session for user {user_id}")
        await prepare_history(client, redis, user_id, messages)
        meter = await cpu_meter(server, redis)
        all_workloads = workloads(client, redis, user_id, messages)
        cells: list[Cell] = []
        for concurrency in LEVELS:
            level = [w for w in all_workloads if concurrency in w.levels]
            cells += await measure(config, level, meter, concurrency)
        return cells
    finally:
        await client.close()
        await redis.aclose()


# --- reporting -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    operation: str
    concurrency: int
    summary: Summary
    p50_vs_health: float
    throughput_vs_health: float
    cpu_us_per_op: dict[str, float]


@dataclass(frozen=True)
class Target:
    description: str
    value: float
    limit: float
    passed: bool


CPU_COLUMNS = ("server", "valkey", "postgres", "client")


def rows(cells: list[Cell]) -> list[Row]:
    health = {c.concurrency: c.load.summary() for c in cells if c.name == HEALTH and c.load}
    out: list[Row] = []
    for cell in cells:
        if cell.load is None:
            continue
        summary = cell.load.summary()
        baseline = health.get(cell.concurrency)
        out.append(
            Row(
                operation=cell.name,
                concurrency=cell.concurrency,
                summary=summary,
                p50_vs_health=ratio(summary.p50_ms, baseline.p50_ms) if baseline else math.nan,
                throughput_vs_health=(
                    ratio(summary.throughput, baseline.throughput) if baseline else math.nan
                ),
                cpu_us_per_op={
                    name: seconds / summary.n * 1e6 for name, seconds in cell.cpu_s.items()
                },
            )
        )
    return out


def targets(table: list[Row]) -> list[Target]:
    by_key = {(r.operation, r.concurrency): r for r in table}
    p50 = by_key[GET_HISTORY, 1].p50_vs_health
    throughput = by_key[GET_HISTORY, 64].throughput_vs_health
    return [
        Target(
            f"GetHistory p50 <= {P50_TARGET}x Health/Check p50 (1 caller)",
            p50,
            P50_TARGET,
            p50 <= P50_TARGET,
        ),
        Target(
            f"GetHistory throughput >= {THROUGHPUT_TARGET:.0%} of Health/Check's (64 callers)",
            throughput,
            THROUGHPUT_TARGET,
            throughput >= THROUGHPUT_TARGET,
        ),
    ]


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def render(table: list[Row], goals: list[Target]) -> str:
    headers = [
        "operation",
        "callers",
        "n",
        "p50 ms",
        "p99 ms",
        "ops/s",
        "p50/health",
        "ops/s/health",
        *(f"{name} us/op" for name in CPU_COLUMNS),
    ]
    body = [
        [
            row.operation,
            str(row.concurrency),
            str(row.summary.n),
            _number(row.summary.p50_ms, 3),
            _number(row.summary.p99_ms, 3),
            _number(row.summary.throughput, 0),
            _number(row.p50_vs_health, 2),
            _number(row.throughput_vs_health, 2),
            *(_number(row.cpu_us_per_op.get(name, math.nan), 0) for name in CPU_COLUMNS),
        ]
        for row in table
    ]
    lines = [format_table(headers, body), ""]
    lines.append(
        "us/op: CPU microseconds per call in each process (server: the memoryd process; "
        "postgres: postmaster and backends; client: this benchmark)."
    )
    lines.append("")
    for goal in goals:
        verdict = "PASS" if goal.passed else "MISS"
        lines.append(f"{verdict}  {goal.description}: {goal.value:.2f}x")
    return "\n".join(lines)


def to_json(
    info: dict[str, Any],
    config: Config,
    server: ServerProcess,
    table: list[Row],
    goals: list[Target],
) -> dict[str, Any]:
    return {
        "benchmark": "sessions",
        "machine": info,
        "config": {
            "requests": {str(k): v for k, v in config.requests.items()},
            "rounds": config.rounds,
            "channels": config.channels,
            "history_messages": HISTORY_MESSAGES,
            "history_window": HISTORY_WINDOW,
            "server_launch": server.launch,
            "embedded_stores": server.embedded_stores,
        },
        "results": [
            {
                "operation": row.operation,
                "concurrency": row.concurrency,
                **asdict(row.summary),
                "p50_vs_health": row.p50_vs_health,
                "throughput_vs_health": row.throughput_vs_health,
                "cpu_us_per_op": row.cpu_us_per_op,
            }
            for row in table
        ],
        "targets": [asdict(goal) for goal in goals],
    }


# --- entry point -----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    exit_on_sigterm()
    info = machine_info()
    print(machine_header(info), flush=True)
    with running_server(data_dir=config.data_dir) as server:
        print(
            f"setup:   server via {server.launch}; {config.channels} gRPC channels; "
            f"{config.requests[1]} calls per cell at 1 caller, {config.requests[64]} at 64, "
            f"in {config.rounds} interleaved round(s); GetHistory(last_messages="
            f"{HISTORY_WINDOW}) of a {HISTORY_MESSAGES}-message session",
            flush=True,
        )
        cells = asyncio.run(run(server, config))
    table = rows(cells)
    goals = targets(table)
    print()
    print(render(table, goals))
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(to_json(info, config, server, table, goals), indent=2) + "\n")
    print(f"\nresults written to {config.out}")
    return 1 if config.check and not all(goal.passed for goal in goals) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything started has been stopped by now
        print("interrupted", file=sys.stderr)
        sys.exit(130)
