"""Fixtures shared by the e2e suites: a real `memoryd up` (embedded stores,
server, worker) for the whole run, and scratch data dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import MemorydUp, scratch_dir, start_up


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data dir for one test's own `memoryd up`."""
    with scratch_dir() as root:
        yield root / "data"


@pytest.fixture(scope="session")
def memoryd_stack() -> Iterator[MemorydUp]:
    """`memoryd up` on a fresh data dir; `.address` is host:port, `.data_dir` its data."""
    with scratch_dir() as root:
        stack = start_up(root / "data")
        try:
            stack.wait_serving()
            yield stack
        finally:
            code = stack.stop()
        assert code == 0, f"memoryd up exited with {code}:\n{stack.log()}"
