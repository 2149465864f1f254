"""The system under test: Postgres and Valkey plus a real memoryd server process.

The server runs in its own process so that the benchmark's client, which is
CPU-bound Python too, never shares an event loop with it: the server is what
is measured. Benchmarks of long-term memory also start a `memoryd worker`
(`running_server(worker=True)`): the server only enqueues embedding jobs.
Everything started here is stopped on the way out, also on an error or
Ctrl-C (the embedded stores are daemons; nothing else would stop them).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import progress
from server.embedded import EmbeddedStack
from server.stack_file import StoreUrls
from server.stores.migrations import apply_migrations

# Loading the embedding model takes over a minute on a busy 2-core machine.
_SERVING_TIMEOUT_S = 180.0
_STOP_TIMEOUT_S = 10.0

# Used only while server.cli (and so `memoryd serve`) does not exist yet:
# the same serve() the CLI calls, with logging set from MEMORYD_LOG_LEVEL.
_INLINE_SERVER = """
import asyncio, logging
from server.api.app import serve
from server.settings import Settings
settings = Settings()
logging.basicConfig(level=settings.log_level)
asyncio.run(serve(settings))
"""


@dataclass(frozen=True)
class ServerProcess:
    """A running memoryd server and the stores it uses."""

    address: str
    pid: int
    launch: str  # how the server was started, for the report
    postgres_url: str
    redis_url: str
    # True when the stores were started here (local processes whose CPU the
    # benchmark can meter), False for MEMORYD_*_URL stores.
    embedded_stores: bool
    # The `memoryd worker` process, when one was asked for.
    worker_pid: int | None = None


@contextlib.contextmanager
def running_server(
    *,
    data_dir: Path | None = None,
    log_level: str = "WARNING",
    worker: bool = False,
    serving_timeout_s: float = _SERVING_TIMEOUT_S,
) -> Iterator[ServerProcess]:
    """Stores (MEMORYD_POSTGRES_URL/MEMORYD_REDIS_URL if both are set, else the
    embedded ones in `data_dir` or a temp dir), migrations, and a server
    process on a free port that reports SERVING; with `worker`, also a
    `memoryd worker` on the same stores (stopped before them)."""
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="memoryd-bench-")))
        urls, embedded = _store_urls(stack, data_dir or scratch / "data")
        assert urls.postgres_url is not None and urls.redis_url is not None
        progress("applying migrations")
        asyncio.run(apply_migrations(urls.postgres_url))

        address = f"127.0.0.1:{_free_port()}"
        command, launch = _server_command()
        log_path = scratch / "server.log"
        progress(f"starting the server ({launch}) on {address}")
        process = _start(command, urls, address, log_path, log_level)
        stack.callback(_report_log, log_path)
        stack.callback(_stop, process)
        worker_pid = None
        if worker:
            # Started before waiting for the server: both load the embedding model.
            worker_log = scratch / "worker.log"
            progress("starting `memoryd worker`")
            worker_process = _start(_worker_command(), urls, address, worker_log, log_level)
            stack.callback(_report_log, worker_log, "worker")
            stack.callback(_stop, worker_process, "worker")
            worker_pid = worker_process.pid
        _wait_serving(address, process, log_path, serving_timeout_s)
        progress(f"server pid {process.pid} is SERVING")
        yield ServerProcess(
            address=address,
            pid=process.pid,
            launch=launch,
            postgres_url=urls.postgres_url,
            redis_url=urls.redis_url,
            embedded_stores=embedded,
            worker_pid=worker_pid,
        )


def _store_urls(stack: contextlib.ExitStack, data_dir: Path) -> tuple[StoreUrls, bool]:
    postgres_url = os.environ.get("MEMORYD_POSTGRES_URL")
    redis_url = os.environ.get("MEMORYD_REDIS_URL")
    if postgres_url and redis_url:
        progress("using the stores in MEMORYD_POSTGRES_URL / MEMORYD_REDIS_URL")
        return StoreUrls(postgres_url=postgres_url, redis_url=redis_url), False
    progress(f"starting embedded Postgres and Valkey in {data_dir}")
    embedded = EmbeddedStack(data_dir)
    urls = embedded.start()
    stack.callback(_stop_stack, embedded)
    return urls, True


def _stop_stack(embedded: EmbeddedStack) -> None:
    progress("stopping embedded Postgres and Valkey")
    embedded.stop()


def _free_port() -> int:
    # The port could be taken between here and the server's bind; the server
    # then fails to start and _wait_serving reports its log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _server_command() -> tuple[list[str], str]:
    script = Path(sys.executable).with_name("memoryd")
    if script.exists() and importlib.util.find_spec("server.cli") is not None:
        return [str(script), "serve"], "memoryd serve"
    return [sys.executable, "-c", _INLINE_SERVER], "inline serve(), server.cli is missing"


def _worker_command() -> list[str]:
    script = Path(sys.executable).with_name("memoryd")
    if script.exists():
        return [str(script), "worker"]
    return [sys.executable, "-m", "server.cli", "worker"]


def _start(
    command: list[str], urls: StoreUrls, address: str, log_path: Path, log_level: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MEMORYD_POSTGRES_URL": urls.postgres_url or "",
        "MEMORYD_REDIS_URL": urls.redis_url or "",
        "MEMORYD_LISTEN": address,
        # Per-call INFO logs would be measured as server cost.
        "MEMORYD_LOG_LEVEL": log_level,
    }
    with log_path.open("wb") as log:
        # The child keeps its own copy of the log's file descriptor.
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_serving(
    address: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    request = health_pb2.HealthCheckRequest()
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {process.returncode}:\n{_tail(log_path)}"
                )
            try:
                reply = stub.Check(request, timeout=1.0)
            except grpc.RpcError:
                reply = None
            if reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.2)
    raise RuntimeError(f"the server was not SERVING after {timeout_s:.0f} s:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen[bytes], name: str = "server") -> None:
    if process.poll() is not None:
        return
    progress(f"stopping the {name} (pid {process.pid})")
    process.send_signal(signal.SIGTERM)  # graceful: drains, closes its pools
    try:
        process.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _report_log(log_path: Path, name: str = "server") -> None:
    # At WARNING the log is empty on a clean run; anything in it (errors,
    # NOT_SERVING) may explain odd figures, so show it before it is deleted.
    tail = _tail(log_path)
    if tail:
        progress(f"the {name} logged (last lines):\n{tail}")


def _tail(log_path: Path, lines: int = 30) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def exit_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, which unwinds through running_server's
    context managers: the server, the worker and the embedded stores
    (daemons) are stopped as on Ctrl-C."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
