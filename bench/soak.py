"""Soak: mixed read/write traffic at a set rate for a long while, on loopback.

    python -m bench.soak [--duration 600] [--rate 100] [--users 50] [--out PATH]

Starts its own stack (embedded Postgres and Valkey, `memoryd serve`, `memoryd
worker`), then sends calls at --rate per second (open loop: calls start on
schedule whether or not earlier ones have returned) across --users users:
AppendMessages, GetHistory, CreateMemory, SearchMemories, GetFact, GetMemory,
ListMemories and now and then ExtractMemories (bench/soak_ops.py has the mix).
It records every call's latency, every error, and the resident memory of the
server and the worker every few seconds; at the end it reads back every write
the server acknowledged.

Passes (exit 0) when no call failed, no acknowledged write is missing, and the
resident memory of both processes levelled off: over the second half of the
run (after warm-up) it grew by less than --rss-growth-limit percent, measured
between the medians of the samples around the midpoint and at the end.

Progress goes to stderr; the report (a table, then one JSON line) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped]

from bench.harness import machine_header, machine_info, progress
from bench.soak_ops import MIX, Verification, Workload
from bench.stack import ServerProcess, exit_on_sigterm, running_server
from bench.stats import format_table, percentile

DEFAULT_OUT = Path(__file__).parent / "results" / "soak.json"
# Calls in flight at most; beyond it a due call is skipped and counted
# (the server is not keeping up: the report says so instead of queueing).
MAX_IN_FLIGHT = 256
# Each call's deadline: a hang is an error, not a stall of the soak.
CALL_DEADLINE_S = 30.0


@dataclass(frozen=True)
class Config:
    duration_s: float
    rate: float
    users: int
    progress_every_s: float
    rss_every_s: float
    rss_growth_limit_pct: float
    out: Path | None
    data_dir: Path | None
    seed: int


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--duration", type=float, default=600, help="seconds of traffic (600)")
    parser.add_argument("--rate", type=float, default=100, help="calls per second (100)")
    parser.add_argument("--users", type=int, default=50, help="distinct users (50)")
    parser.add_argument("--progress-every", type=float, default=10, help="seconds (10)")
    parser.add_argument("--rss-every", type=float, default=2, help="RSS sample period, s (2)")
    parser.add_argument(
        "--rss-growth-limit",
        type=float,
        default=10,
        help="most RSS growth over the run's second half, in percent (10)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--no-out", action="store_true", help="write no JSON file")
    parser.add_argument("--data-dir", type=Path, help="embedded stores' data dir (temp dir)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.rate <= 0 or args.users < 1:
        parser.error("--duration and --rate must be positive, --users at least 1")
    return Config(
        duration_s=args.duration,
        rate=args.rate,
        users=args.users,
        progress_every_s=args.progress_every,
        rss_every_s=args.rss_every,
        rss_growth_limit_pct=args.rss_growth_limit,
        out=None if args.no_out else args.out,
        data_dir=args.data_dir,
        seed=args.seed,
    )


# --- measuring ----------------------------------------------------------------


@dataclass
class Calls:
    """Latencies and errors by RPC."""

    latencies_s: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    skipped: int = 0  # due while MAX_IN_FLIGHT calls were in flight

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latencies_s.values()) + sum(self.errors.values())

    def ok(self, name: str, seconds: float) -> None:
        self.latencies_s.setdefault(name, []).append(seconds)

    def failed(self, name: str, exc: BaseException) -> None:
        code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        self.errors[f"{name} {code}"] += 1
        if len(self.error_examples) < 10:
            details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            self.error_examples.append(f"{name} {code}: {details}")


@dataclass
class RssSeries:
    """Resident set size samples (elapsed seconds, MiB) of one process."""

    name: str
    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)

    def sample(self, elapsed_s: float) -> None:
        try:
            rss = psutil.Process(self.pid).memory_info().rss
        except psutil.NoSuchProcess:
            return
        self.samples.append((elapsed_s, rss / 2**20))

    def growth_pct(self, duration_s: float) -> float:
        """Growth from the run's midpoint to its end: the medians of the
        samples in [45%, 55%] and in the last 10% of the run."""
        mid = [mib for t, mib in self.samples if 0.45 * duration_s <= t <= 0.55 * duration_s]
        end = [mib for t, mib in self.samples if t >= 0.9 * duration_s]
        if not mid or not end:
            return 0.0
        start = statistics.median(mid)
        return (statistics.median(end) - start) / start * 100

    def last(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0


async def _sample_rss(series: list[RssSeries], every_s: float, started: float) -> None:
    while True:
        for one in series:
            one.sample(time.monotonic() - started)
        await asyncio.sleep(every_s)


async def _drive(config: Config, workload: Workload, calls: Calls, started: float) -> None:
    """Start calls on schedule until the duration is over, then let the ones
    in flight finish."""
    interval = 1 / config.rate
    in_flight: set[asyncio.Task[None]] = set()

    async def one(name: str, make: Any) -> None:
        begun = time.perf_counter()
        try:
            await asyncio.wait_for(make(), CALL_DEADLINE_S)
        except (grpc.aio.AioRpcError, TimeoutError) as exc:
            calls.failed(name, exc)
        else:
            calls.ok(name, time.perf_counter() - begun)

    due = started
    stop = started + config.duration_s
    last_report = started
    while (now := time.monotonic()) < stop:
        while due <= now:
            due += interval
            if len(in_flight) >= MAX_IN_FLIGHT:
                calls.skipped += 1
                continue
            name, make = workload.next_call()
            task = asyncio.create_task(one(name, make))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if now - last_report >= config.progress_every_s:
            last_report = now
            _report_progress(now - started, calls, len(in_flight))
        await asyncio.sleep(max(0.0, min(due, stop) - time.monotonic()))
    if in_flight:
        await asyncio.wait(in_flight)


_PROGRESS_RSS: list[RssSeries] = []


def _report_progress(elapsed_s: float, calls: Calls, in_flight: int) -> None:
    rss = ", ".join(f"{s.name} {s.last():.0f} MiB" for s in _PROGRESS_RSS)
    progress(
        f"{elapsed_s:5.0f}s: {calls.total} calls done ({calls.total / elapsed_s:.0f}/s), "
        f"{in_flight} in flight, "
        f"{sum(calls.errors.values())} errors, {calls.skipped} skipped; RSS {rss}"
    )


async def soak(
    config: Config, server: ServerProcess
) -> tuple[Calls, list[RssSeries], Verification]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(server.address, options=options) as channel:
        workload = Workload(channel, users=config.users, seed=config.seed)
        calls = Calls()
        series = [RssSeries("server", server.pid)]
        if server.worker_pid is not None:
            series.append(RssSeries("worker", server.worker_pid))
        _PROGRESS_RSS[:] = series
        started = time.monotonic()
        sampler = asyncio.create_task(_sample_rss(series, config.rss_every_s, started))
        try:
            await _drive(config, workload, calls, started)
        finally:
            sampler.cancel()
        progress(f"traffic done: {calls.total} calls; reading back every acknowledged write")
        verification = await workload.verify()
    return calls, series, verification


# --- reporting -----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    errors: int
    lost_writes: int
    rss_growth_pct: dict[str, float]
    rss_levelled: bool

    @property
    def passed(self) -> bool:
        return self.errors == 0 and self.lost_writes == 0 and self.rss_levelled


def latency_rows(calls: Calls) -> list[dict[str, Any]]:
    rows = []
    for name in MIX:
        values = sorted(calls.latencies_s.get(name, []))
        errors = sum(n for key, n in calls.errors.items() if key.split()[0] == name)
        if not values and not errors:
            continue
        ms = [v * 1000 for v in values] or [float("nan")]
        rows.append(
            {
                "rpc": name,
                "n": len(values),
                "errors": errors,
                "p50_ms": percentile(ms, 50),
                "p99_ms": percentile(ms, 99),
                "p999_ms": percentile(ms, 99.9),
                "max_ms": ms[-1],
            }
        )
    return rows


def render(rows: list[dict[str, Any]], series: list[RssSeries], verdict: Verdict) -> str:
    table = format_table(
        ["rpc", "n", "errors", "p50 ms", "p99 ms", "p999 ms", "max ms"],
        [
            [
                r["rpc"],
                str(r["n"]),
                str(r["errors"]),
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['p999_ms']:.2f}",
                f"{r['max_ms']:.1f}",
            ]
            for r in rows
        ],
    )
    rss = [
        f"{s.name} RSS: first {s.samples[0][1]:.0f} MiB, last {s.last():.0f} MiB, "
        f"peak {max(m for _, m in s.samples):.0f} MiB; second-half growth "
        f"{verdict.rss_growth_pct[s.name]:+.1f}%"
        for s in series
        if s.samples
    ]
    verdict_line = "PASS" if verdict.passed else "FAIL"
    return "\n".join(
        [
            table,
            "",
            *rss,
            f"errors: {verdict.errors}; acknowledged writes lost: {verdict.lost_writes}; "
            f"RSS levelled off: {verdict.rss_levelled}",
            verdict_line,
        ]
    )


def to_json(
    info: dict[str, Any],
    config: Config,
    calls: Calls,
    series: list[RssSeries],
    verification: Verification,
    verdict: Verdict,
    elapsed_s: float,
) -> dict[str, Any]:
    return {
        "benchmark": "soak",
        "machine": {**info, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "config": {
            "duration_s": config.duration_s,
            "rate": config.rate,
            "users": config.users,
            "mix": MIX,
            "rss_growth_limit_pct": config.rss_growth_limit_pct,
        },
        "calls": calls.total,
        "achieved_rate": calls.total / elapsed_s if elapsed_s > 0 else 0.0,
        "skipped": calls.skipped,
        "errors": dict(calls.errors),
        "error_examples": calls.error_examples,
        "latency": latency_rows(calls),
        "rss_mib": {s.name: s.samples for s in series},
        "rss_growth_pct": verdict.rss_growth_pct,
        "verification": {**asdict(verification), "lost": verification.lost},
        "passed": verdict.passed,
    }


def judge(
    config: Config, calls: Calls, series: list[RssSeries], verification: Verification
) -> Verdict:
    growth = {s.name: s.growth_pct(config.duration_s) for s in series}
    return Verdict(
        errors=sum(calls.errors.values()),
        lost_writes=verification.lost,
        rss_growth_pct=growth,
        rss_levelled=all(g < config.rss_growth_limit_pct for g in growth.values()),
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    exit_on_sigterm()
    info = machine_info()
    print(machine_header(info), flush=True)
    with running_server(data_dir=config.data_dir, worker=True) as server:
        progress(
            f"soaking for {config.duration_s:.0f}s at {config.rate:g} calls/s "
            f"across {config.users} users"
        )
        started = time.monotonic()
        calls, series, verification = asyncio.run(soak(config, server))
        elapsed = min(time.monotonic() - started, config.duration_s)
    verdict = judge(config, calls, series, verification)
    document = to_json(info, config, calls, series, verification, verdict, elapsed)
    print(
        f"setup:   {config.duration_s:.0f}s at {config.rate:g} calls/s over {config.users} "
        f"users; achieved {document['achieved_rate']:.1f} calls/s; load avg at end "
        f"{document['machine']['loadavg_at_end']}"
    )
    print(render(latency_rows(calls), series, verdict))
    if verification.examples or calls.error_examples:
        print("problems:", *verification.examples, *calls.error_examples, sep="\n  ")
    if config.out is not None:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(json.dumps(document, indent=2) + "\n")
    # The last line: the whole report as one JSON document.
    summary = {k: v for k, v in document.items() if k != "rss_mib"}
    print(json.dumps(summary), flush=True)
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything started has been stopped by now
        print("interrupted", file=sys.stderr)
        sys.exit(130)
