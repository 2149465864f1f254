"""`memoryd worker` as a real process, and its jobs on the running stack's stores."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest

from server import stack_file
from server.settings import Settings
from tests.support.processes import MemorydUp, memoryd_env
from workers import jobs
from workers.settings import worker_settings

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _wait_for_line(process: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(seen)}")


def test_worker_stops_within_seconds_on_sigterm(memoryd_stack: MemorydUp) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "server.cli", "worker"],
        env=memoryd_env(memoryd_stack.data_dir, "127.0.0.1:0"),
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        try:
            # Past on_startup (model load): the startup sweep is the first job.
            _wait_for_line(worker, "sweep_unembedded", timeout=120)
            started = time.monotonic()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=10) == 0
            assert time.monotonic() - started < 5
        finally:
            if worker.poll() is None:
                worker.kill()


def _settings(stack: MemorydUp, **overrides: Any) -> Settings:
    info = stack_file.read(stack.data_dir)
    assert info is not None
    return Settings(
        data_dir=stack.data_dir,
        postgres_url=info.urls.postgres_url,
        redis_url=info.urls.redis_url,
        **overrides,
    )


async def _run_purge(settings: Settings) -> None:
    config = worker_settings(settings)
    ctx: dict[str, Any] = {}
    await config["on_startup"](ctx)
    try:
        await jobs.purge_idle_sessions(ctx)
    finally:
        await config["on_shutdown"](ctx)
    assert ctx == {}  # on_shutdown took the state and closed its pools


async def test_purge_idle_sessions_runs_on_the_real_stores(
    memoryd_stack: MemorydUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.jobs")
    # Nobody's sessions are ten years old: the purge runs for real and deletes none.
    await _run_purge(_settings(memoryd_stack, session_retention=timedelta(days=3650)))
    assert "purged 0 sessions" in caplog.text


async def test_purge_idle_sessions_does_nothing_when_retention_is_zero(
    memoryd_stack: MemorydUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workers.jobs")
    await _run_purge(_settings(memoryd_stack, session_retention=timedelta(0)))
    assert "purged" not in caplog.text
