"""Percentiles, summaries and plain-text tables: pure functions, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already sorted values, interpolating
    linearly between the closest ranks (numpy's default method)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    position = (len(sorted_values) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency percentiles in milliseconds and throughput in operations per second."""

    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    throughput: float


def summarize(latencies_s: Sequence[float], elapsed_s: float) -> Summary:
    """Summarise per-call latencies (seconds) of calls that took `elapsed_s` in all."""
    ordered = sorted(latencies_s)
    return Summary(
        n=len(ordered),
        p50_ms=percentile(ordered, 50) * 1000,
        p90_ms=percentile(ordered, 90) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        mean_ms=sum(ordered) / len(ordered) * 1000,
        max_ms=ordered[-1] * 1000,
        throughput=len(ordered) / elapsed_s if elapsed_s > 0 else math.inf,
    )


def ratio(value: float, baseline: float) -> float:
    """value / baseline, NaN when there is no baseline to compare with."""
    return value / baseline if baseline > 0 else math.nan


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width text table; the first column is left-aligned, the rest
    right-aligned (they hold numbers)."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])
