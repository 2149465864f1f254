"""`python -m bench.soak` for half a minute on its own stack: it runs to the
end, verifies the acknowledged writes and reports a passing verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.soak, pytest.mark.timeout(900)]

ROOT = Path(__file__).parents[2]


def test_a_short_soak_passes_and_reports_every_rpc() -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.soak", "--duration", "30", "--rate", "20",
            "--users", "5", "--no-out", "--progress-every", "10",
            # Half a minute is mostly warm-up: only a runaway leak would fail.
            "--rss-growth-limit", "50",
        ],
        capture_output=True,
        text=True,
        timeout=850,
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["passed"] is True
    assert report["errors"] == {}
    verification = report["verification"]
    assert verification["lost"] == 0
    assert verification["messages"] > 0 and verification["memories"] > 0
    assert {row["rpc"] for row in report["latency"]} >= {
        "AppendMessages",
        "GetHistory",
        "CreateMemory",
        "SearchMemories",
        "ListMemories",
    }
    assert set(report["rss_growth_pct"]) == {"server", "worker"}
    assert "p999 ms" in done.stdout
    assert "calls done" in done.stderr  # progress lines
