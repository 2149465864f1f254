"""Reusable load generation and measurement for the benchmarks.

`run_load` drives an async operation N times at concurrency C and returns the
latency of every call plus the wall time; `CpuMeter` attributes CPU time to
the processes involved (the server, the stores, this client), which is far
steadier than latency on a small, noisy machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.stats import Summary, summarize

# One call of the operation under test. The argument is the index of the
# worker making the call (0..concurrency-1), so an operation can give each
# caller its own key, session or channel.
Op = Callable[[int], Awaitable[object]]

_STARTED = time.monotonic()


def progress(message: str) -> None:
    """A progress line on stderr (stdout holds only the report)."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LoadResult:
    """Latencies (seconds, in completion order) of calls made at one concurrency,
    and the wall time they took together."""

    concurrency: int
    latencies_s: list[float]
    elapsed_s: float

    @property
    def n(self) -> int:
        return len(self.latencies_s)

    @property
    def throughput(self) -> float:
        return self.n / self.elapsed_s if self.elapsed_s > 0 else float("inf")

    def summary(self) -> Summary:
        return summarize(self.latencies_s, self.elapsed_s)

    def combine(self, other: LoadResult) -> LoadResult:
        """Pool two runs at the same concurrency (e.g. rounds of one cell)."""
        if other.concurrency != self.concurrency:
            raise ValueError("cannot combine runs made at different concurrencies")
        return LoadResult(
            concurrency=self.concurrency,
            latencies_s=self.latencies_s + other.latencies_s,
            elapsed_s=self.elapsed_s + other.elapsed_s,
        )


async def run_load(op: Op, *, requests: int, concurrency: int) -> LoadResult:
    """Call `op` `requests` times from `concurrency` concurrent callers.

    Each caller issues its next call as soon as its previous one returns
    (a closed loop), so throughput is what the system sustains with that many
    calls in flight. The first exception aborts the run: a benchmark that
    quietly counts errors reports numbers for a different workload.
    """
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    latencies: list[float] = []
    remaining = requests
    clock = time.perf_counter

    async def caller(index: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1  # one event loop: no lock needed between callers
            started = clock()
            await op(index)
            latencies.append(clock() - started)

    started = clock()
    async with asyncio.TaskGroup() as group:
        for index in range(min(concurrency, requests)):
            group.create_task(caller(index))
    return LoadResult(concurrency=concurrency, latencies_s=latencies, elapsed_s=clock() - started)


@dataclass
class CpuMeter:
    """CPU seconds (user + system, all threads) used by named processes.

    Take a `sample()` before and after a run; `used(before, after)` gives the
    CPU time each name cost in between. A name can cover a process's children
    too (Postgres serves each connection from its own child); a process that
    exits between two samples is not counted.
    """

    roots: dict[str, Any] = field(default_factory=dict)  # name -> psutil.Process
    with_children: set[str] = field(default_factory=set)

    def add(self, name: str, pid: int, *, children: bool = False) -> None:
        try:
            self.roots[name] = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        if children:
            self.with_children.add(name)

    def sample(self) -> dict[tuple[str, int], float]:
        totals: dict[tuple[str, int], float] = {}
        for name, root in self.roots.items():
            processes = [root]
            with contextlib.suppress(psutil.NoSuchProcess):
                if name in self.with_children:
                    processes += root.children(recursive=True)
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    totals[name, process.pid] = float(times.user + times.system)
        return totals

    @staticmethod
    def used(
        before: Mapping[tuple[str, int], float], after: Mapping[tuple[str, int], float]
    ) -> dict[str, float]:
        spent: dict[str, float] = {}
        for (name, pid), seconds in after.items():
            spent[name] = spent.get(name, 0.0) + seconds - before.get((name, pid), 0.0)
        return spent


def parent_pid(pid: int) -> int | None:
    """The parent of process `pid`, None when either is gone."""
    try:
        parent = psutil.Process(pid).parent()
    except psutil.NoSuchProcess:
        return None
    return None if parent is None else int(parent.pid)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """Where and when the figures were taken: print it next to them."""
    load1, load5, _ = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": _version("grpcio"),
        "redis_py": _version("redis"),
        "loadavg_at_start": [round(load1, 2), round(load5, 2)],
    }


def machine_header(info: Mapping[str, Any]) -> str:
    return "\n".join(
        [
            f"date:    {info['date']}",
            f"machine: {info['cpu_model']}, {info['logical_cpus']} logical CPUs "
            f"({info['usable_cpus']} usable), load avg {info['loadavg_at_start'][0]} "
            f"/ {info['loadavg_at_start'][1]}",
            f"python:  {info['python']} on {info['platform']}; grpcio {info['grpcio']}, "
            f"redis-py {info['redis_py']}",
        ]
    )
