"""bench/peers: the table, Markdown, JSON and chart from a results document,
and the pieces of the runner that need no system."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.peers import report
from bench.peers.embed_server import embeddings_response
from bench.peers.runner import first_line, parse_args, sizes_from
from bench.peers.workload import Sizes
from tests.support.processes import scratch_dir


def _system(name: str, scale: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "notes": f"how {name} ran",
        "error": None,
        "write_ack": {"p50_ms": 2.0 * scale, "p99_ms": 5.0 * scale, "n": 10},
        "write_to_searchable": {"p50_ms": 40.0 * scale, "p99_ms": 80.0 * scale, "n": 3},
        "search": {"p50_ms": 4.0 * scale, "p99_ms": 9.0 * scale, "n": 10},
        "search_at_16": {"ops_per_s": 400.0 / scale, "p50_ms": 30.0, "p99_ms": 60.0},
        "search_at_64": {"ops_per_s": 380.0 / scale, "p50_ms": 120.0, "p99_ms": 300.0},
        "history": {"p50_ms": 1.0 * scale, "p99_ms": 3.0 * scale, "n": 10},
        "recall": {"recall@10": 0.9, "hit@10": 0.95, "questions": 28},
        "resident_mib": 300.0 * scale,
        **extra,
    }


def document() -> dict[str, Any]:
    return {
        "machine": {
            "date": "2026-11-26T06:00:00+00:00",
            "cpu_model": "Test CPU",
            "logical_cpus": 2,
            "usable_cpus": 2,
            "ram_gib": 24.0,
            "loadavg_at_start": [3.5, 3.0],
            "loadavg_at_end": [4.0, 3.2],
        },
        "sizes": {
            "users": 2,
            "memories": 20,
            "writes": 5,
            "searches": 10,
            "throughput_requests": 32,
        },
        "dataset": "tiny.jsonl (8 conversations, 28 questions)",
        "results": [
            _system(report.BASELINE, 1.0),
            _system("memoryd", 2.0),
            _system("mem0", 3.0, history="n/a: no sessions"),
            {
                "name": "agent-memory-server",
                "notes": "",
                "error": "PeerUnavailable: agent-memory-server needs Python 3.12",
            },
        ],
    }


def test_table_has_a_column_per_system_and_ratios_to_the_baseline() -> None:
    headers, rows = report.table_rows(document())
    assert headers == ["metric", "direct SQL", "memoryd", "mem0", "agent-memory-server"]
    by_metric = {row[0]: row[1:] for row in rows}
    assert by_metric["search p50 (ms)"] == ["4.00", "8.00 (2.0x)", "12.0 (3.0x)", "-"]
    # Throughput ratios are ops/s over the baseline's: below 1 is slower.
    assert by_metric["search @64 callers (ops/s)"][1] == "190 (0.5x)"
    assert by_metric["history p50 (ms)"][2] == "n/a: no sessions"
    # Recall is not a timing: no ratio.
    assert by_metric["recall@10"] == ["0.900", "0.900", "0.900", "-"]


def test_text_and_markdown_say_when_where_and_why_a_peer_did_not_run() -> None:
    text = report.render_text(document())
    assert "Test CPU, 2 cores, 24 GiB RAM" in text
    assert "load average 3.5 at start, 4.0 at end" in text
    assert (
        "agent-memory-server could not run: PeerUnavailable: agent-memory-server needs Python 3.12"
        in text
    )
    markdown = report.render_markdown(document())
    assert "| metric | direct SQL | memoryd | mem0 | agent-memory-server |" in markdown
    assert "| search p50 (ms) | 4.00 | 8.00 (2.0x) | 12.0 (3.0x) | - |" in markdown
    assert "**agent-memory-server could not run" in markdown


def test_no_ratios_without_a_baseline_that_ran() -> None:
    doc = document()
    doc["results"][0] = {"name": report.BASELINE, "notes": "", "error": "RuntimeError: boom"}
    _, rows = report.table_rows(doc)
    search = next(row for row in rows if row[0] == "search p50 (ms)")
    assert search[1:3] == ["-", "8.00"]


def test_write_all_writes_json_markdown_and_a_png_chart() -> None:
    with scratch_dir("memoryd-peers-report-") as out:
        paths = report.write_all(document(), out, "peers")
        assert [p.name for p in paths] == ["peers.json", "peers.md", "peers.png"]
        assert json.loads((out / "peers.json").read_text()) == document()
        assert (out / "peers.md").read_text().startswith("- date:")
        png = (out / "peers.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) > 20_000  # eight panels with text, not an empty canvas


def test_first_line_names_the_innermost_error() -> None:
    group = ExceptionGroup("tasks", [ValueError("bad field 'k'\nmore detail")])
    assert first_line(group) == "ValueError: bad field 'k'"


def test_sizes_come_from_quick_then_flags() -> None:
    sizes = sizes_from(parse_args(["--quick", "--searches", "7"]))
    assert sizes == Sizes(**{**Sizes.quick().__dict__, "searches": 7})
    with pytest.raises(SystemExit):
        parse_args(["--systems", "memoryd,nope"])


def test_embedding_endpoint_encodes_base64_as_the_openai_client_expects() -> None:
    vectors = [[0.5, -0.25, 1.0], [0.0, 0.125, -1.0]]
    body = embeddings_response(vectors, "m", "base64")
    decoded = [
        np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").tolist()
        for item in body["data"]
    ]
    assert decoded == vectors
    assert embeddings_response(vectors, "m", None)["data"][1]["embedding"] == vectors[1]
    assert [item["index"] for item in body["data"]] == [0, 1]


def test_requirement_files_pin_every_distribution() -> None:
    here = Path(report.__file__).parent
    for name in ("mem0", "agent-memory-server"):
        lines = [
            line
            for line in (here / f"requirements-{name}.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        assert lines and all("==" in line for line in lines), name
        assert not [line for line in lines if line.lower().startswith(("nvidia-", "cuda-"))]
