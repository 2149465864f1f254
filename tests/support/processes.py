"""Running memoryd as real processes in tests: free ports, health waits, `memoryd up`.

Every helper fails with the process's log attached, so a red test says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Startup loads the embedding model and, on a fresh data dir, runs initdb.
UP_START_TIMEOUT_S = 120.0
# SIGTERM to exit: children's grace period + 2 s, then the stores' shutdown.
UP_STOP_TIMEOUT_S = 15.0


@contextlib.contextmanager
def scratch_dir(prefix: str = "memoryd-test-") -> Iterator[Path]:
    """A temp dir for store data, outside pytest's basetemp.

    As root, pgserver runs Postgres as the 'pgserver' user, which must traverse
    every parent of the data dir. pytest chmods /tmp/pytest-of-<user> back to 0700
    whenever any pytest run starts, and prunes old runs' dirs, so a concurrent run
    would pull the data dir from under a running Postgres.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_cli(
    command: str, data_dir: Path, *, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run one `memoryd` subcommand on its own data dir, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", command],
        env=memoryd_env(data_dir, "127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memoryd_env(data_dir: Path, listen: str, **extra: str) -> dict[str, str]:
    """The environment for a memoryd process on its own data dir and address,
    with no store URLs inherited from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    env.update(MEMORYD_DATA_DIR=str(data_dir), MEMORYD_LISTEN=listen, **extra)
    return env


def is_serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def store_processes(data_dir: Path) -> list[psutil.Process]:
    """Live postgres and valkey-server processes working on `data_dir`.

    Matched by working directory: both chdir into their data dir, while their
    cmdlines (rewritten to "postgres: checkpointer", "valkey-server host:port")
    need not name it.
    """
    data_dir = data_dir.resolve()
    found = []
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] not in ("postgres", "valkey-server"):
            continue
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue  # exited; only waiting for PID 1 to reap it
        try:
            if Path(proc.cwd()).is_relative_to(data_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@dataclass
class MemorydUp:
    """A running `memoryd up`, its output going to `log_path`."""

    address: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, timeout: float = UP_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise AssertionError(f"memoryd up exited with {code} before serving:\n{self.log()}")
            if is_serving(self.address, timeout=0.5):
                return
            time.sleep(0.2)
        raise AssertionError(
            f"memoryd up not SERVING on {self.address} after {timeout} s:\n{self.log()}"
        )

    def stop(self, timeout: float = UP_STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code. Kills it (and fails) if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"memoryd up did not exit within {timeout} s:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        """Last resort for teardown: kill up, its children and its stores."""
        for proc in [*_descendants(self.process.pid), *store_processes(self.data_dir)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self.process.kill()
        self.process.wait()


def start_up(data_dir: Path, *, port: int | None = None, **env: str) -> MemorydUp:
    """Start `memoryd up` on `data_dir`; does not wait for it to serve."""
    address = f"127.0.0.1:{port or free_port()}"
    data_dir.mkdir(parents=True, exist_ok=True)
    # One log per run: a restart on the same data dir must not read the last run's.
    log_path = data_dir.parent / f"{data_dir.name}-up-{time.time_ns()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "up"],
            env=memoryd_env(data_dir, address, **env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return MemorydUp(address=address, data_dir=data_dir, log_path=log_path, process=process)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []
