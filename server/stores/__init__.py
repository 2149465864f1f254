"""Stores own their SQL and Redis keys and return domain objects."""

from __future__ import annotations

import psycopg
import redis.exceptions

# Raised by the drivers when Postgres or Redis cannot be reached or time out.
# psycopg_pool.PoolTimeout and statement timeouts are OperationalErrors.
STORE_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
)
