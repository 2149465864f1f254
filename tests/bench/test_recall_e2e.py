"""`memoryd-bench recall` end to end: the console script against a real `memoryd up`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import MemorydUp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny.jsonl"
SCRIPT = Path(sys.executable).with_name("memoryd-bench")


def test_recall_on_the_tiny_dataset(memoryd_stack: MemorydUp) -> None:
    # The installed script, as a user runs it; from another directory, so the
    # bench package must come from the install, not from the working dir.
    done = subprocess.run(
        [str(SCRIPT), "recall", "--dataset", str(TINY), "--target", memoryd_stack.address],
        capture_output=True,
        text=True,
        timeout=540,
        cwd="/",
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["recall@10"] > 0.5, report
    assert report["hit@10"] >= report["recall@10"]
    assert report["questions"] == 28
    assert set(report["modes"]) == {"hybrid", "keyword", "semantic"}
    for figures in report["modes"].values():
        assert set(figures) >= {"recall@10", "hit@10", "questions", "by_category"}
    assert set(report["by_category"]) == {"single-hop", "multi-hop", "temporal", "preference"}
    assert report["deduplicated"] == 0
    assert "said_at" in report["note"]


def test_recall_of_extracted_memories_beside_messages(memoryd_stack: MemorydUp) -> None:
    done = subprocess.run(
        [
            str(SCRIPT),
            "recall",
            "--dataset",
            str(TINY),
            "--target",
            memoryd_stack.address,
            "--mode",
            "extract",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd="/",
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ingest_mode"] == "extract" and report["questions"] == 28
    extraction = report["extraction"]
    assert extraction["extractor"] == "local"
    # Fewer, cleaner memories than one per message, every one citing its evidence.
    assert 0 < extraction["memories_per_message"] < 1
    assert extraction["unattributed_share"] == 0
    assert extraction["messages_per_s_per_worker"] > 0
    # Both ingest modes of the same run are reported, side by side.
    assert report["messages_mode"]["modes"]["hybrid"]["questions"] == 28
    assert set(report["modes"]) == {"hybrid", "keyword", "semantic"}
    assert report["recall@10"] > 0.3, report
    assert "messages" in done.stdout and "extract" in done.stdout
