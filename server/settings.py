"""The one settings object, read from MEMORYD_* environment variables.

Defaults start the embedded stack: with no Postgres or Redis URL given,
`memoryd up` starts both under `data_dir`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMORYD_", frozen=True)

    # Where the embedded Postgres and Valkey keep their data.
    data_dir: Path = Path(".memoryd")
    # External servers; when unset, the embedded ones are started.
    postgres_url: str | None = None
    redis_url: str | None = None

    # host:port for TCP, or unix:/path/to.sock for a unix socket.
    listen: str = "127.0.0.1:50051"
    grace_period: timedelta = timedelta(seconds=5)
    log_level: str = "INFO"
    # How often health probes Postgres and Redis.
    health_interval: timedelta = timedelta(seconds=1)

    postgres_pool_min: int = Field(default=2, ge=1)
    postgres_pool_max: int = Field(default=10, ge=1)
    # Postgres and Redis calls fail as UNAVAILABLE after this.
    store_timeout: timedelta = timedelta(seconds=5)

    # Session memory.
    session_ttl: timedelta = timedelta(hours=24)
    session_window: int = Field(default=1000, ge=1)
    default_history_messages: int = Field(default=20, ge=1)
    max_history_messages: int = Field(default=10_000, ge=1)
    max_message_bytes: int = Field(default=64 * 1024, ge=1)
    max_messages_per_append: int = Field(default=500, ge=1)
    max_id_length: int = Field(default=128, ge=1)
    tokenizer: str = "o200k_base"
    # Sessions idle longer than this are purged by the worker; 0 keeps them.
    session_retention: timedelta = timedelta(0)
