"""`python -m bench.peers.runner` end to end on memoryd and the direct-SQL
baseline (the peers install their own virtualenvs and are not run here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import scratch_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).parents[2]
TINY = ROOT / "bench" / "data" / "tiny.jsonl"


def test_memoryd_and_direct_sql_on_quick_sizes() -> None:
    with scratch_dir("memoryd-peers-e2e-") as out:
        dataset = out / "two.jsonl"
        dataset.write_text("".join(TINY.read_text().splitlines(keepends=True)[:2]))
        done = subprocess.run(
            [
                sys.executable, "-m", "bench.peers.runner", "--quick",
                "--systems", "sql,memoryd", "--dataset", str(dataset), "--out", str(out),
                "--users", "1", "--memories", "8", "--writes", "2", "--searchable", "1",
                "--searches", "3", "--throughput-requests", "16", "--history-reads", "3",
            ],
            capture_output=True,
            text=True,
            timeout=1700,
            cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
        document = json.loads((out / "peers.json").read_text())
        results = {system["name"]: system for system in document["results"]}
        assert set(results) == {"direct SQL", "memoryd"}
        for name, system in results.items():
            assert system["error"] is None, (name, done.stderr[-4000:])
            assert system["write_ack"]["n"] == 2
            assert system["write_to_searchable"]["n"] == 1
            assert system["search"]["n"] == 3
            assert system["history"]["n"] == 3
            assert system["search_at_64"]["ops_per_s"] > 0
            assert system["resident_mib"] > 10  # at least a Postgres
            # Both search by the same model: the evidence is found.
            assert system["recall"]["recall@10"] > 0.5, (name, system["recall"])
        table = done.stdout
        assert "metric" in table and "memoryd" in table and "direct SQL" in table
        assert "x)" in table  # ratios to the baseline
        assert (out / "peers.png").read_bytes()[:4] == b"\x89PNG"
