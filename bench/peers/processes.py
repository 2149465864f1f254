"""Starting and stopping the peers' processes: free ports, logs, readiness
polls, and a stop that always reaps (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from bench.harness import progress
from bench.peers.adapter import PeerUnavailable

_STOP_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def first_error_line(path: Path) -> str:
    """The line of a log that says what went wrong: the last exception line,
    else the last line."""
    text = tail(path, 200).splitlines()
    for line in reversed(text):
        stripped = line.strip()
        if stripped and (
            "Error" in stripped.split(":")[0] or stripped.startswith(("error", "ERROR", "FATAL"))
        ):
            return stripped
    return text[-1].strip() if text else "(no output)"


class Process:
    """A child process with its output in a log file, stopped by `stop`."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                list(command),
                env={**os.environ, **(env or {})},
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: children are stopped with it
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise PeerUnavailable(
                f"{self.name} exited with status {self.popen.returncode}: "
                f"{first_error_line(self.log_path)}"
            )

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        progress(f"stopping {self.name} (pid {self.pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait()


async def wait_until(
    what: str,
    ready: Callable[[], Awaitable[bool]],
    processes: Sequence[Process],
    timeout_s: float,
) -> None:
    """Poll `ready` until true; fail with the log line of a process that died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        with contextlib.suppress(Exception):
            if await ready():
                return
        await asyncio.sleep(0.3)
    logs = "; ".join(f"{p.name}: {first_error_line(p.log_path)}" for p in processes)
    raise PeerUnavailable(f"{what} not ready after {timeout_s:.0f} s ({logs})")
