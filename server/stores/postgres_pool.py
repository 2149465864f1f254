"""The Postgres pool, with each checkout bounded by the call's deadline.

While a gRPC call is served (server.deadlines), waiting for a connection is
bounded by the time the call has left, and so is every statement: the
connection's statement_timeout is lowered to that time, so Postgres itself
cancels a statement that would outlive the deadline (a lock wait, a slow
scan) and the transaction rolls back. Without a deadline, or with one later
than the store timeout, statements keep the store timeout set at connect and
the checkout costs no round trip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg.errors
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server import deadlines
from server.errors import DeadlineExceeded

_DEADLINE_MESSAGE = "the call's deadline passed while {}; nothing was written"


class DeadlineConnection(AsyncConnection[TupleRow]):
    """A connection that remembers its statement_timeout (None: as connected)."""

    statement_timeout_ms: int | None = None


class DeadlinePool(AsyncConnectionPool[AsyncConnection[TupleRow]]):
    """An AsyncConnectionPool whose connections are DeadlineConnections that
    connected with `-c statement_timeout=<statement_timeout_ms>`."""

    def __init__(self, conninfo: str, *, statement_timeout_ms: int, **kwargs: object) -> None:
        super().__init__(conninfo, connection_class=DeadlineConnection, **kwargs)  # type: ignore[arg-type]
        self._default_timeout_ms = statement_timeout_ms

    @asynccontextmanager
    async def connection(  # psycopg_pool's signature, `timeout` included
        self,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[AsyncConnection[TupleRow]]:
        wait = self.timeout if timeout is None else timeout
        wait_bounded = deadlines.limited_by_deadline(wait)
        try:
            async with super().connection(deadlines.bound(wait)) as conn:
                bounded = await self._bound_statements(conn)
                try:
                    yield conn
                except psycopg.errors.QueryCanceled as exc:
                    if bounded:
                        raise DeadlineExceeded(
                            _DEADLINE_MESSAGE.format("a Postgres statement ran")
                        ) from exc
                    raise
        except PoolTimeout as exc:
            if wait_bounded:
                raise DeadlineExceeded(
                    _DEADLINE_MESSAGE.format("waiting for a Postgres connection")
                ) from exc
            raise

    async def _bound_statements(self, conn: AsyncConnection[TupleRow]) -> bool:
        """Give `conn` the statement_timeout the current call needs; True when
        it is the call's deadline rather than the store timeout."""
        if not isinstance(conn, DeadlineConnection):
            return False
        wanted = self._default_timeout_ms
        left = deadlines.time_left()
        if left is not None and left * 1000 < wanted:
            wanted = _quantize_ms(left)
        current = conn.statement_timeout_ms or self._default_timeout_ms
        if current != wanted:
            # Outside any transaction (SET would open one and turn the caller's
            # transaction() into a savepoint): autocommit only for this statement.
            autocommit = conn.autocommit
            await conn.set_autocommit(True)
            try:
                await conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)", (f"{wanted}ms",)
                )
            finally:
                await conn.set_autocommit(autocommit)
            conn.statement_timeout_ms = wanted
        return wanted != self._default_timeout_ms


def _quantize_ms(seconds: float) -> int:
    """The time left, rounded down to a step (100 ms above a second, 10 ms
    below), so calls with the same deadline reuse a connection's setting
    rather than pay a round trip to change it; never more than the time left."""
    ms = int(seconds * 1000)
    step = 100 if ms >= 1000 else 10
    return max(1, ms - ms % step) if ms >= step else max(1, ms)
