"""The comparison as a table (text and Markdown), JSON and a chart: pure
functions of the results document, plus the writers."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.stats import format_table

BASELINE = "direct SQL"

# (label, path into a system's figures, unit, higher is better)
Metric = tuple[str, tuple[str, ...], str, bool]
METRICS: tuple[Metric, ...] = (
    ("write ack p50", ("write_ack", "p50_ms"), "ms", False),
    ("write ack p99", ("write_ack", "p99_ms"), "ms", False),
    ("write -> searchable p50", ("write_to_searchable", "p50_ms"), "ms", False),
    ("write -> searchable p99", ("write_to_searchable", "p99_ms"), "ms", False),
    ("search p50", ("search", "p50_ms"), "ms", False),
    ("search p99", ("search", "p99_ms"), "ms", False),
    ("history p50", ("history", "p50_ms"), "ms", False),
    ("history p99", ("history", "p99_ms"), "ms", False),
    ("search @16 callers", ("search_at_16", "ops_per_s"), "ops/s", True),
    ("search @64 callers", ("search_at_64", "ops_per_s"), "ops/s", True),
    ("search @64 p99", ("search_at_64", "p99_ms"), "ms", False),
    ("resident memory", ("resident_mib",), "MiB", False),
    ("recall@10", ("recall", "recall@10"), "", True),
    ("hit@10", ("recall", "hit@10"), "", True),
)
# Ratios to the baseline only for timings measured in the same run.
_RATIO_UNITS = {"ms", "ops/s"}


def lookup(figures: Mapping[str, Any], path: Sequence[str]) -> float | str | None:
    """The figure at `path`; a string where the system says why there is none."""
    value: Any = figures
    for key in path:
        if isinstance(value, str):
            return value
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, int | float | str):
        return value
    return None


def _format_number(value: float, unit: str) -> str:
    if unit == "":
        return f"{value:.3f}"
    if unit == "ops/s" or value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(system: Mapping[str, Any], baseline: Mapping[str, Any] | None, metric: Metric) -> str:
    _label, path, unit, _ = metric
    if system.get("error") and not system.get("write_ack"):
        return "-"
    value = lookup(system, path)
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    text = _format_number(value, unit)
    if unit in _RATIO_UNITS and baseline is not None and system["name"] != baseline["name"]:
        base = lookup(baseline, path)
        if isinstance(base, int | float) and base > 0:
            text += f" ({value / base:.1f}x)"
    return text


def _baseline(results: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for system in results:
        if system["name"] == BASELINE and not system.get("error"):
            return system
    return None


def table_rows(document: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    results = document["results"]
    baseline = _baseline(results)
    headers = ["metric", *(system["name"] for system in results)]
    rows = []
    for metric in METRICS:
        label, _, unit, _better_high = metric
        name = f"{label} ({unit})" if unit else label
        rows.append([name, *(cell(system, baseline, metric) for system in results)])
    return headers, rows


def errors(document: Mapping[str, Any]) -> list[str]:
    return [
        f"{system['name']} could not run: {system['error']}"
        for system in document["results"]
        if system.get("error")
    ]


def header_lines(document: Mapping[str, Any]) -> list[str]:
    machine = document["machine"]
    sizes = document["sizes"]
    return [
        f"date:     {machine['date']}",
        f"machine:  {machine_label(machine)}",
        f"load:     load average {machine['loadavg_at_start'][0]} at start, "
        f"{machine.get('loadavg_at_end', ['?'])[0]} at end (other work shares the cores)",
        f"workload: {sizes['users']} users x {sizes['memories']} memories, "
        f"{sizes['writes']} writes, {sizes['searches']} searches, "
        f"{sizes['throughput_requests']} searches per concurrency level, "
        f"recall on {document['dataset']}",
    ]


def machine_label(machine: Mapping[str, Any]) -> str:
    return (
        f"{machine['cpu_model']}, {machine['logical_cpus']} cores, {machine['ram_gib']:.0f} GiB RAM"
    )


def render_text(document: Mapping[str, Any]) -> str:
    headers, rows = table_rows(document)
    lines = [*header_lines(document), "", format_table(headers, rows), ""]
    lines.append(f"(Nx) = ratio to {BASELINE} measured in the same run; lower is better for ms.")
    lines += errors(document)
    lines += [f"{system['name']}: {system['notes']}" for system in document["results"]]
    return "\n".join(lines)


def render_markdown(document: Mapping[str, Any]) -> str:
    headers, rows = table_rows(document)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"- {text}" for text in header_lines(document)]
    out += ["", line(headers), line(["---", *(["---:"] * (len(headers) - 1))])]
    out += [line(row) for row in rows]
    out += ["", f"(Nx) = ratio to {BASELINE} measured in the same run.", ""]
    out += [f"- **{text}**" for text in errors(document)]
    out += [f"- {system['name']}: {system['notes']}" for system in document["results"]]
    return "\n".join(out) + "\n"


# --- chart -------------------------------------------------------------------------

_CHART_METRICS: tuple[tuple[str, Callable[[Mapping[str, Any]], float | str | None]], ...] = (
    ("write ack p50 (ms)", lambda s: lookup(s, ("write_ack", "p50_ms"))),
    ("write -> searchable p50 (ms)", lambda s: lookup(s, ("write_to_searchable", "p50_ms"))),
    ("search p50 (ms)", lambda s: lookup(s, ("search", "p50_ms"))),
    ("history p50 (ms)", lambda s: lookup(s, ("history", "p50_ms"))),
    ("search ops/s @16 callers", lambda s: lookup(s, ("search_at_16", "ops_per_s"))),
    ("search ops/s @64 callers", lambda s: lookup(s, ("search_at_64", "ops_per_s"))),
    ("resident memory (MiB)", lambda s: lookup(s, ("resident_mib",))),
    ("recall@10", lambda s: lookup(s, ("recall", "recall@10"))),
)


def _bar_label(value: float | str | None, *, failed: bool) -> str:
    if isinstance(value, float) and value < 1:
        return f"{value:.3f}"
    if isinstance(value, int | float):
        return f"{value:,.1f}"
    return "did not run" if failed else "n/a"


def write_chart(document: Mapping[str, Any], path: Path) -> None:
    """One bar panel per figure, one bar per system; a system without the
    figure gets a labelled gap (its reason is in the table)."""
    import matplotlib

    matplotlib.use("Agg")  # no display here; set before pyplot is imported
    import matplotlib.pyplot as plt

    results = document["results"]
    names = [system["name"] for system in results]
    colours = [f"C{index}" for index in range(len(names))]
    columns = 4
    rows = math.ceil(len(_CHART_METRICS) / columns)
    figure, _axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows + 1.0))
    for axis, (title, get) in zip(figure.axes, _CHART_METRICS, strict=False):
        values = [get(system) for system in results]
        heights = [v if isinstance(v, int | float) else 0.0 for v in values]
        bars = axis.bar(range(len(names)), heights, color=colours)
        for bar, value, system in zip(bars, values, results, strict=True):
            label = _bar_label(value, failed=bool(system.get("error")))
            axis.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        axis.set_title(title, fontsize=10)
        axis.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        axis.margins(y=0.15)
    for axis in figure.axes[len(_CHART_METRICS) :]:
        axis.set_visible(False)
    machine = document["machine"]
    figure.suptitle(
        f"memoryd and peers, one run on one machine: {machine['date']}\n"
        f"{machine_label(machine)}; load average {machine['loadavg_at_start'][0]} at start "
        f"(shared machine); {document['dataset']}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_all(document: Mapping[str, Any], directory: Path, stem: str = "peers") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stem}.json"
    md_path = directory / f"{stem}.md"
    png_path = directory / f"{stem}.png"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path.write_text(render_markdown(document))
    write_chart(document, png_path)
    return [json_path, md_path, png_path]
