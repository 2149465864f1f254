"""The request id of the work in progress: a call's, or that of the call
whose job a worker is running. Log records carry it (server.logs)."""

from __future__ import annotations

import contextvars

# "-" outside any call or job (startup, cron jobs, health probes of the stores).
NO_REQUEST = "-"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "request_id", default=NO_REQUEST
)
