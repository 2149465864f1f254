"""`memoryd up` as a person runs it: start, serve, stop on SIGTERM, start again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from tests.support.processes import (
    UP_STOP_TIMEOUT_S,
    MemorydUp,
    is_serving,
    run_cli,
    start_up,
    store_processes,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _stop_and_check_nothing_left(stack: MemorydUp) -> None:
    started = time.monotonic()
    code = stack.stop()
    took = time.monotonic() - started
    assert code == 0, f"exit code {code}:\n{stack.log()}"
    assert took < UP_STOP_TIMEOUT_S
    assert store_processes(stack.data_dir) == []


def test_up_serves_then_stops_on_sigterm_leaving_no_process(data_dir: Path) -> None:
    stack = start_up(data_dir)
    try:
        stack.wait_serving()
        info = json.loads((stack.data_dir / "stack.json").read_text())
        assert info["postgres_url"].startswith("postgresql://")
        assert info["redis_url"].startswith("redis://")
        assert len(store_processes(stack.data_dir)) >= 2  # postmaster and valkey
    finally:
        _stop_and_check_nothing_left(stack)
    assert not (stack.data_dir / "stack.json").exists()


def test_up_again_on_the_same_data_dir_reuses_it(data_dir: Path) -> None:
    first = start_up(data_dir)
    try:
        first.wait_serving()
        cluster_id = (data_dir / "postgres" / "global" / "pg_control").stat().st_ino
    finally:
        _stop_and_check_nothing_left(first)

    second = start_up(data_dir)
    try:
        second.wait_serving()
        assert "first start only" in first.log()
        assert "first start only" not in second.log()
        assert (data_dir / "postgres" / "global" / "pg_control").stat().st_ino == cluster_id
    finally:
        _stop_and_check_nothing_left(second)


def test_up_refuses_a_data_dir_in_use(memoryd_stack: MemorydUp) -> None:
    second = start_up(memoryd_stack.data_dir)
    assert second.process.wait(timeout=30) == 2
    assert "in use by another memoryd" in second.log()
    assert is_serving(memoryd_stack.address)


def test_serve_without_urls_or_stack_fails_fast_saying_what_to_do(tmp_path: Path) -> None:
    result = run_cli("serve", tmp_path)
    assert result.returncode == 2
    assert "memoryd up" in result.stderr
    assert "MEMORYD_POSTGRES_URL" in result.stderr


def test_serve_uses_the_stack_of_a_running_up(memoryd_stack: MemorydUp) -> None:
    # `memoryd migrate` resolves URLs the same way as serve and exits by itself.
    result = run_cli("migrate", memoryd_stack.data_dir, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "schema is up to date" in result.stderr


def test_up_stops_everything_and_fails_when_a_child_dies(data_dir: Path) -> None:
    stack = start_up(data_dir)
    try:
        stack.wait_serving()
        children = psutil.Process(stack.process.pid).children()
        [serve] = [c for c in children if "serve" in c.cmdline()]
        serve.kill()
        assert stack.process.wait(timeout=UP_STOP_TIMEOUT_S) == 1
    finally:
        if stack.process.poll() is None:
            stack.kill()
    assert "memoryd serve stopped unexpectedly (killed by SIGKILL)" in stack.log()
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert store_processes(data_dir) == []


def test_up_recovers_after_it_was_killed_with_sigkill(data_dir: Path) -> None:
    first = start_up(data_dir)
    try:
        first.wait_serving()
        children = psutil.Process(first.process.pid).children()
        first.process.kill()
        first.process.wait()
        # serve and worker follow their parent (PR_SET_PDEATHSIG); the store
        # daemons stay, as they would after any crash of `memoryd up`.
        psutil.wait_procs(children, timeout=UP_STOP_TIMEOUT_S)
        assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
        stale = run_cli("migrate", data_dir)
        assert stale.returncode == 2
        assert "is stale" in stale.stderr
    except BaseException:
        first.kill()
        raise

    second = start_up(data_dir)
    try:
        second.wait_serving()
        assert "left running by a previous memoryd" in second.log()
    finally:
        _stop_and_check_nothing_left(second)
