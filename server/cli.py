"""The `memoryd` command: up, serve, worker, migrate.

`memoryd up` is the one command for one machine: it starts the embedded stores
that no URL names, applies migrations, runs `serve` and `worker` as children and
stops all of it on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import psycopg
from pydantic import ValidationError

from server import stack_file, tracing
from server.logs import configure_logging
from server.settings import Settings
from server.supervisor import Children, StopSignal

log = logging.getLogger("memoryd")


# How long `up` waits for the server to report SERVING before saying it still waits.
_READY_HINT_S = 60.0
_POLL_S = 0.2


class CliError(Exception):
    """A problem the person running memoryd can fix; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[Settings, argparse.Namespace], int] = args.run
    try:
        settings = Settings()
        _configure_logging(settings, args.command)
        code = command(settings, args)
    except ValidationError as exc:
        print(f"memoryd: invalid MEMORYD_* setting:\n{exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"memoryd {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command in ("serve", "worker"):
        _exit_skipping_teardown(code)
    return code


def _exit_skipping_teardown(code: int) -> NoReturn:
    """Exit without the interpreter's teardown.

    By now serve has finished its calls and worker its jobs, and both have
    closed their stores: nothing is left to save. Finalizing torch, ONNX
    Runtime and gRPC is all that remains, and on a busy 2-core machine it took
    longer than `up`'s grace period, which then killed them and exited 1.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memoryd",
        description="Memory sidecar for AI agents. Settings come from MEMORYD_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, run, help_text in [
        ("up", _up, "start everything: embedded stores (if no URLs), migrations, server, worker"),
        ("serve", _serve, "run the gRPC server"),
        ("worker", _worker, "run the background worker (arq)"),
        ("migrate", _migrate, "apply database migrations and exit"),
        (
            "rekey",
            _rekey,
            "seal every stored content with the first MEMORYD_ENCRYPTION_KEY key "
            "(after a rotation, or to encrypt data written without a key)",
        ),
    ]:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        if name == "rekey":
            sub.add_argument(
                "--batch", type=int, default=500, help="rows per transaction (default 500)"
            )
            sub.add_argument(
                "--background",
                action="store_true",
                help="queue it for a worker (its log shows the progress) and return",
            )
    return parser


def _configure_logging(settings: Settings, command: str) -> None:
    try:
        configure_logging(settings.log_level, settings.log_format, command)
    except ValueError as exc:
        raise CliError(f"MEMORYD_LOG_LEVEL: {exc}") from None


def _resolve_store_urls(settings: Settings, *, need_redis: bool = True) -> Settings:
    """Fill missing store URLs from the stack.json of a running `memoryd up`."""
    if settings.postgres_url and (settings.redis_url or not need_redis):
        return settings
    try:
        info = stack_file.read(settings.data_dir)
    except stack_file.StackFileError as exc:
        raise CliError(str(exc)) from None
    todo = (
        "Start everything with `memoryd up`, or set MEMORYD_POSTGRES_URL and "
        "MEMORYD_REDIS_URL to your servers."
    )
    where = stack_file.path(settings.data_dir)
    if info is None:
        raise CliError(
            f"no store URLs: MEMORYD_POSTGRES_URL/MEMORYD_REDIS_URL are unset and "
            f"{where} does not exist (no `memoryd up` running there). {todo}"
        )
    if not info.owner_alive():
        raise CliError(
            f"{where} is stale: the `memoryd up` that wrote it (pid "
            f"{info.owner_pid}) is not running. {todo}"
        )
    update = {
        "postgres_url": settings.postgres_url or info.urls.postgres_url,
        "redis_url": settings.redis_url or info.urls.redis_url,
    }
    missing = [
        name for name, url in update.items() if not url and (need_redis or name != "redis_url")
    ]
    if missing:
        raise CliError(f"{where} has no {' or '.join(missing)}. {todo}")
    log.info("using the stores of the `memoryd up` in %s", settings.data_dir)
    return settings.model_copy(update=update)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    settings = _resolve_store_urls(settings)
    from server.api.app import serve  # imported late: `up` need not load the server
    from server.errors import FailedPrecondition

    tracing.configure(settings, command="serve")
    try:
        asyncio.run(serve(settings))
    except FailedPrecondition as exc:  # the keys do not match the stored data
        raise CliError(exc.message) from None
    finally:
        tracing.uninstall()
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    settings = _resolve_store_urls(settings)
    from server.errors import FailedPrecondition
    from workers.settings import run

    tracing.configure(settings, command="worker")
    try:
        run(settings)
    except FailedPrecondition as exc:  # the keys do not match the stored data
        raise CliError(exc.message) from None
    finally:
        tracing.uninstall()
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    settings = _resolve_store_urls(settings, need_redis=False)
    _apply_migrations(settings)
    return 0


def _rekey(settings: Settings, args: argparse.Namespace) -> int:
    from server.crypto import Cipher
    from server.errors import FailedPrecondition
    from server.rekey import Rekeyer
    from server.stores.migrations import pending_migrations

    settings = _resolve_store_urls(settings)
    assert settings.postgres_url is not None  # resolved above
    if args.batch < 1:
        raise CliError("--batch must be at least 1")
    cipher = Cipher(settings.encryption_keys())
    if not cipher.enabled:
        raise CliError(
            "MEMORYD_ENCRYPTION_KEY (or MEMORYD_ENCRYPTION_KEY_FILE) is not set: "
            "rekey seals data with its first key"
        )

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(settings.postgres_url or "") as conn:
            pending = await pending_migrations(conn)
        if pending:
            raise CliError(
                f"migrations {', '.join(pending)} are not applied; run `memoryd migrate`"
            )
        rekeyer = Rekeyer(
            postgres_url=settings.postgres_url or "",
            redis_url=settings.redis_url,
            cipher=cipher,
            batch=args.batch,
            report=lambda line: print(line, flush=True),
        )
        result = await rekeyer.run()
        for table, ids in result.skipped.items():
            print(
                f"{table}: {len(ids)} rows left as they were (their content is stored "
                f"twice for the same user): {', '.join(ids[:10])}",
                flush=True,
            )

    try:
        asyncio.run(run())
    except FailedPrecondition as exc:
        raise CliError(exc.message) from None
    except psycopg.OperationalError as exc:
        raise CliError(f"Postgres is unreachable: {exc}") from None
    return 0


async def _queue_rekey(settings: Settings) -> None:
    from arq.connections import ArqRedis
    from redis.asyncio import ConnectionPool

    from server.job_queue import QUEUE_NAME, enqueue_rekey

    arq = ArqRedis(
        connection_pool=ConnectionPool.from_url(settings.redis_url or ""),
        default_queue_name=QUEUE_NAME,
    )
    try:
        queued = await enqueue_rekey(arq)
    finally:
        await arq.aclose(close_connection_pool=True)
    print(
        "rekey queued: a worker runs it (its log shows the progress)"
        if queued
        else "a rekey is already queued or running",
        flush=True,
    )


def _apply_migrations(settings: Settings) -> None:
    from server.stores.migrations import apply_migrations

    assert settings.postgres_url is not None  # resolved by the caller
    try:
        applied = asyncio.run(apply_migrations(settings.postgres_url))
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot apply migrations: Postgres is unreachable: {exc}") from None
    log.info("migrations: %s", ", ".join(applied) if applied else "schema is up to date")


def _up(settings: Settings, args: argparse.Namespace) -> int:
    from server.embedded import EmbeddedStack, StackLocked

    # First: a Ctrl-C during a slow first start must still stop what was started.
    stop = StopSignal()
    children = Children()
    with contextlib.ExitStack() as cleanup:
        need_postgres, need_redis = settings.postgres_url is None, settings.redis_url is None
        if need_postgres or need_redis:
            stack = EmbeddedStack(settings.data_dir, postgres=need_postgres, redis=need_redis)
            try:
                urls = stack.start()
            except StackLocked as exc:
                raise CliError(str(exc)) from None
            cleanup.callback(stack.stop)
            settings = settings.model_copy(
                update={
                    "postgres_url": settings.postgres_url or urls.postgres_url,
                    "redis_url": settings.redis_url or urls.redis_url,
                }
            )
        if stop.is_set():
            return 0
        _apply_migrations(settings)

        env = {
            **os.environ,
            "MEMORYD_POSTGRES_URL": settings.postgres_url or "",
            "MEMORYD_REDIS_URL": settings.redis_url or "",
        }
        # Children stop (in the finally) before the stores they use (ExitStack).
        try:
            for name in ("serve", "worker"):
                children.spawn(name, [sys.executable, "-m", "server.cli", name], env=env)
            code = _supervise(children, stop, settings)
        finally:
            clean = children.stop(grace=settings.grace_period.total_seconds() + 2.0)
    if code == 0 and not clean:
        return 1
    log.info("stopped")
    return code


def _supervise(children: Children, stop: StopSignal, settings: Settings) -> int:
    """Wait for a stop signal (exit 0) or for a child to die (exit 1)."""
    from server.health_probe import HealthProbe, dial_target, probe_listen

    listen = probe_listen(
        listen=settings.listen,
        health_listen=settings.health_listen,
        tls=settings.tls_cert is not None,
    )
    target = dial_target(listen) if listen else None
    probe = HealthProbe(target) if target else None
    if listen is None:
        print(
            f"memoryd is starting on {settings.listen} with TLS: set MEMORYD_HEALTH_LISTEN "
            "(a plaintext health-only address) for `up` to report when it serves"
        )
    elif target is None:
        print(f"memoryd is starting on {listen}: the port is chosen at bind time (see the log)")
    started, hinted = time.monotonic(), False
    try:
        while not stop.wait(_POLL_S):
            dead = children.first_exited()
            if dead is not None:
                log.error(
                    "memoryd %s stopped unexpectedly (%s); stopping everything",
                    dead.name,
                    dead.exit_description(),
                )
                return 1
            if probe is not None and probe.serving(timeout=_POLL_S):
                where = settings.listen if settings.health_listen else target
                print(f"memoryd is up: gRPC on {where} (Ctrl-C to stop)", flush=True)
                probe.close()
                probe = None
            elif probe is not None and not hinted and time.monotonic() - started > _READY_HINT_S:
                log.warning("still waiting for the server on %s to report SERVING", target)
                hinted = True
        log.info("received %s: stopping", stop.received)
        return 0
    finally:
        if probe is not None:
            probe.close()


if __name__ == "__main__":
    sys.exit(main())
