"""Worker jobs and ctx handling, without servers: the domain service is faked."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from server.job_queue import EMBED_MEMORIES, EXTRACT_MEMORIES
from server.resources import Resources
from server.settings import Settings
from workers import jobs
from workers.context import WorkerState, install_state, take_state, worker_state
from workers.settings import QUEUE_NAME, worker_settings


@dataclass
class FakeSessionService:
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, resources: Resources) -> FakeSessionService:
        return self

    async def delete_sessions_before(
        self, cutoff: datetime, *, user_id: str | None, all_users: bool
    ) -> int:
        self.calls.append({"cutoff": cutoff, "user_id": user_id, "all_users": all_users})
        return 3


def _ctx(settings: Settings) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    install_state(ctx, WorkerState(settings=settings, resources=cast(Resources, object())))
    return ctx


@pytest.fixture
def fake_sessions(monkeypatch: pytest.MonkeyPatch) -> FakeSessionService:
    fake = FakeSessionService()
    monkeypatch.setattr(jobs, "SessionService", fake)
    return fake


async def test_purge_deletes_every_users_sessions_idle_past_retention(
    fake_sessions: FakeSessionService,
) -> None:
    before = datetime.now(UTC)
    await jobs.purge_idle_sessions(_ctx(Settings(session_retention=timedelta(days=7))))
    [call] = fake_sessions.calls
    assert call["user_id"] is None and call["all_users"] is True
    assert before - timedelta(days=7) <= call["cutoff"] <= datetime.now(UTC) - timedelta(days=7)


async def test_purge_keeps_everything_when_retention_is_zero(
    fake_sessions: FakeSessionService,
) -> None:
    await jobs.purge_idle_sessions(_ctx(Settings(session_retention=timedelta(0))))
    assert fake_sessions.calls == []


def test_a_job_without_worker_state_fails_loudly() -> None:
    with pytest.raises(RuntimeError, match="on_startup"):
        worker_state({})


def test_take_state_tolerates_a_failed_startup() -> None:
    assert take_state({}) is None


def test_worker_settings_use_our_queue_and_unique_crons() -> None:
    config = worker_settings(Settings(redis_url="redis://127.0.0.1:6390/2"))
    assert config["queue_name"] == QUEUE_NAME
    assert config["redis_settings"].port == 6390
    assert config["redis_settings"].database == 2
    # Each job runs inside workers.instrument's wrapper.
    crons = {inspect.unwrap(job.coroutine): job for job in config["cron_jobs"]}
    assert all(job.unique for job in crons.values())
    assert crons[jobs.purge_idle_sessions].minute == 0
    assert crons[jobs.sweep_unembedded].second == set(range(0, 60, 10))
    assert crons[jobs.purge_expired_memories].second == 0


def test_the_embed_job_is_registered_under_the_name_the_server_enqueues() -> None:
    config = worker_settings(Settings(redis_url="redis://127.0.0.1:6390/2"))
    functions = {function.name: function for function in config["functions"]}
    embed, extract = functions[EMBED_MEMORIES], functions[EXTRACT_MEMORIES]
    assert inspect.unwrap(embed.coroutine) is jobs.embed_memories
    # Its id can be reused as soon as it finishes (a memory's content changed).
    assert embed.keep_result_s == 0
    assert inspect.unwrap(extract.coroutine) is jobs.extract_memories
    # A session's job id is free again as soon as its run ends (the next trigger).
    assert extract.keep_result_s == 0
    # arq retries a killed run beyond the extractor's own tries.
    assert extract.max_tries > Settings().extract_max_tries


def test_worker_settings_need_a_redis_url() -> None:
    with pytest.raises(ValueError, match="redis_url"):
        worker_settings(Settings())
