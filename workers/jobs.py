"""Job and cron functions. Each is idempotent and carries ids, not payloads."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from server.sessions import SessionService
from workers.context import worker_state

log = logging.getLogger(__name__)


async def purge_idle_sessions(ctx: dict[str, Any]) -> None:
    """Delete every user's sessions idle longer than settings.session_retention.

    Safe to cancel or rerun: deletion goes in batches, each its own transaction,
    so a cancelled run (worker stopping) leaves the rest for the next one.
    """
    state = worker_state(ctx)
    retention = state.settings.session_retention
    if not retention:  # 0 keeps sessions forever
        return
    cutoff = datetime.now(UTC) - retention
    deleted = await SessionService(state.resources).delete_sessions_before(
        cutoff, user_id=None, all_users=True
    )
    log.info("purged %d sessions idle since before %s", deleted, cutoff.isoformat())
