"""Memory extraction through the gRPC API: real server, real arq worker, real
Postgres + pgvector and Valkey, the default extractor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import pytest
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.extraction.factory import build_extractor
from server.extraction.llm import LlmExtractor
from server.extraction.models import Job, JobState, Trigger
from server.job_queue import QUEUE_NAME, extraction_job_id
from server.resources import Resources
from server.settings import Settings
from server.stores import extraction_store
from tests.integration.conftest import isolated_stack, make_test_extractor
from tests.integration.test_session_api import expect_error
from tests.support.extractors import FailingExtractor, GatedExtractor
from tests.support.processes import free_port
from workers import jobs
from workers.context import WorkerState, install_state

if TYPE_CHECKING:
    Stub = memory_grpc.MemoryServiceAsyncStub
    SessionStub = session_grpc.SessionServiceAsyncStub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_T = TypeVar("_T")
DONE = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED)


@pytest.fixture
def stub(channel: grpc.aio.Channel, embedding_worker: None) -> Stub:
    return memory_grpc.MemoryServiceStub(channel)


@pytest.fixture
def session_id() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


def user(content: str, message_id: str = "") -> spb.Message:
    return spb.Message(role="user", content=content, id=message_id or uuid.uuid4().hex[:10])


def assistant(content: str) -> spb.Message:
    return spb.Message(role="assistant", content=content, id=uuid.uuid4().hex[:10])


async def append(
    sessions: SessionStub, user_id: str, session_id: str, *messages: spb.Message
) -> list[str]:
    reply = await sessions.AppendMessages(
        spb.AppendMessagesRequest(user_id=user_id, session_id=session_id, messages=messages)
    )
    return [m.id for m in reply.messages]


async def extract(stub: Stub, user_id: str, **fields: Any) -> pb.Job:
    reply = await stub.ExtractMemories(pb.ExtractMemoriesRequest(user_id=user_id, **fields))
    return reply.job


async def wait_job(stub: Stub, user_id: str, job_id: str) -> pb.Job:
    async with asyncio.timeout(60):
        while True:
            job = (await stub.GetJob(pb.GetJobRequest(user_id=user_id, id=job_id))).job
            if job.state in DONE:
                return job
            await asyncio.sleep(0.05)


async def until(check: Callable[[], Awaitable[_T]]) -> _T:
    """The first truthy result of `check`, polled."""
    async with asyncio.timeout(60):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.05)


async def _finished(job: ArqJob) -> bool:
    return await job.status() is JobStatus.not_found


async def memories(stub: Stub, user_id: str) -> list[pb.Memory]:
    reply = await stub.ListMemories(pb.ListMemoriesRequest(user_id=user_id, page_size=100))
    return list(reply.memories)


async def history(stub: Stub, user_id: str, memory_id: str) -> list[pb.MemoryEvent]:
    reply = await stub.GetMemoryHistory(pb.GetMemoryHistoryRequest(user_id=user_id, id=memory_id))
    return list(reply.events)


CONVERSATION = [
    user("Hi! I live in Berlin."),
    assistant("Nice to meet you. How can I help?"),
    user("I love hiking in the mountains on weekends."),
    assistant("Great hobby."),
]


async def test_a_session_becomes_attributed_memories(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    ids = await append(session_stub, user_id, session_id, *CONVERSATION)
    queued = await extract(stub, user_id, session_id=session_id)
    assert queued.id and queued.session_id == session_id
    assert queued.state in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING, pb.JOB_STATE_SUCCEEDED)
    job = await wait_job(stub, user_id, queued.id)
    assert job.state == pb.JOB_STATE_SUCCEEDED, job.error
    assert job.message_count == 4 and job.extractor
    stored = await memories(stub, user_id)
    assert job.created_count == len(stored) >= 2
    contents = " ".join(m.content for m in stored)
    assert "Berlin" in contents and "hiking" in contents
    for memory in stored:
        assert memory.source_message_ids and set(memory.source_message_ids) <= {ids[0], ids[2]}
        assert memory.session_id == session_id
        # Stored with the vector computed for reconciliation: no embedding job needed.
        assert memory.state == pb.MEMORY_STATE_READY
        [event] = await history(stub, user_id, memory.id)
        assert event.op == pb.MEMORY_OP_ADD and event.actor == job.id and event.reason


async def test_a_changed_fact_supersedes_the_stale_one(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    await append(session_stub, user_id, session_id, user("I moved to Berlin last year."))
    first = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert first.created_count == 1, first
    [berlin] = await memories(stub, user_id)
    lisbon_id = (await append(session_stub, user_id, session_id, user("I live in Lisbon now.")))[0]
    second = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert (second.created_count, second.updated_count) == (0, 1), second
    [current] = await memories(stub, user_id)
    assert current.id == berlin.id and "Lisbon" in current.content
    assert list(current.source_message_ids) == [lisbon_id]
    fact = (await stub.GetFact(pb.GetFactRequest(user_id=user_id, key=current.key))).memory
    assert "Lisbon" in fact.content
    events = await history(stub, user_id, current.id)
    assert [e.op for e in events] == [pb.MEMORY_OP_ADD, pb.MEMORY_OP_UPDATE]
    assert "Berlin" in events[1].old_content and "Lisbon" in events[1].new_content
    assert events[1].actor == second.id and "supersedes" in events[1].reason


async def test_small_talk_and_questions_make_no_memories(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    await append(
        session_stub,
        user_id,
        session_id,
        user("Hey, how are you today?"),
        assistant("Doing well, thanks! What's up?"),
        user("Not much. What's the weather like?"),
        assistant("I can't check the weather, sorry."),
    )
    job = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.created_count == 0
    assert await memories(stub, user_id) == []


async def test_messages_are_extracted_once(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    await append(session_stub, user_id, session_id, *CONVERSATION)
    first = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    stored = await memories(stub, user_id)
    assert first.created_count == len(stored) > 0
    again = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert again.state == pb.JOB_STATE_SUCCEEDED and again.id != first.id
    assert (again.message_count, again.created_count, again.updated_count, again.noop_count) == (
        0,
        0,
        0,
        0,
    )
    assert [m.id for m in await memories(stub, user_id)] == [m.id for m in stored]


async def test_a_repeated_statement_is_a_noop_that_adds_its_evidence(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    [first_id] = await append(session_stub, user_id, session_id, user("I love hiking."))
    await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    [again_id] = await append(session_stub, user_id, session_id, user("I love hiking."))
    job = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert (job.created_count, job.noop_count) == (0, 1), job
    [memory] = await memories(stub, user_id)
    assert list(memory.source_message_ids) == [first_id, again_id]
    events = await history(stub, user_id, memory.id)
    assert [e.op for e in events] == [pb.MEMORY_OP_ADD, pb.MEMORY_OP_NOOP]
    assert events[1].actor == job.id and "already known" in events[1].reason


async def test_given_messages_are_extracted_without_a_session(stub: Stub, user_id: str) -> None:
    queued = await extract(stub, user_id, messages=[user("I live in Paris.", "m-1")])
    job = await wait_job(stub, user_id, queued.id)
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.session_id == ""
    [memory] = await memories(stub, user_id)
    assert "Paris" in memory.content and list(memory.source_message_ids) == ["m-1"]


async def test_a_session_is_extracted_automatically_after_enough_messages(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str, resources: Resources
) -> None:
    every = resources.settings.extract_after_messages
    filler = [assistant(f"Noted ({i}).") for i in range(every - 1)]
    await append(session_stub, user_id, session_id, user("I live in Madrid."))
    assert await memories(stub, user_id) == []
    await append(session_stub, user_id, session_id, *filler)  # reaches `every`
    found = await until(lambda: memories(stub, user_id))
    assert "Madrid" in found[0].content
    # The job the append triggered ran as any other, with its decisions' actor.
    [event] = await history(stub, user_id, found[0].id)
    job = await wait_job(stub, user_id, event.actor)
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.message_count == every


# --- bad input ---------------------------------------------------------------


async def test_bad_requests_are_rejected_naming_the_field(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    await append(session_stub, user_id, session_id, user("I live in Rome."))
    cases: list[tuple[pb.ExtractMemoriesRequest, grpc.StatusCode, str]] = [
        (
            pb.ExtractMemoriesRequest(session_id=session_id),
            grpc.StatusCode.INVALID_ARGUMENT,
            "user_id",
        ),
        (
            pb.ExtractMemoriesRequest(user_id=user_id),
            grpc.StatusCode.INVALID_ARGUMENT,
            "session_id",
        ),
        (
            pb.ExtractMemoriesRequest(
                user_id=user_id, session_id=session_id, messages=[user("I live in Oslo.")]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "messages",
        ),
        (
            pb.ExtractMemoriesRequest(
                user_id=user_id, messages=[spb.Message(role="nobody", content="hi")]
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "messages[0].role",
        ),
        (
            pb.ExtractMemoriesRequest(user_id=user_id, session_id="no-such-session"),
            grpc.StatusCode.NOT_FOUND,
            "no-such-session",
        ),
        (
            # Another user's session is no session of this user's.
            pb.ExtractMemoriesRequest(user_id=f"{user_id}-other", session_id=session_id),
            grpc.StatusCode.NOT_FOUND,
            session_id,
        ),
    ]
    for request, code, named in cases:
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            await expect_error(stub.ExtractMemories(request), code, named)
        else:
            error = await expect_error(stub.ExtractMemories(request), code)
            assert named in (error.details() or "")


async def test_jobs_are_private_to_their_user(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    await append(session_stub, user_id, session_id, user("I live in Rome."))
    job = await extract(stub, user_id, session_id=session_id)
    error = await expect_error(
        stub.GetJob(pb.GetJobRequest(user_id=f"{user_id}-other", id=job.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert job.id in (error.details() or "")
    await expect_error(
        stub.GetJob(pb.GetJobRequest(user_id=user_id, id="not-a-uuid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "id",
    )
    await expect_error(
        stub.GetJob(pb.GetJobRequest(id=job.id)), grpc.StatusCode.INVALID_ARGUMENT, "user_id"
    )
    await wait_job(stub, user_id, job.id)


# --- failures, retries, races ------------------------------------------------


async def _watermark(resources: Resources, user_id: str, session_id: str) -> int:
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute(
            "SELECT extracted_seq FROM sessions WHERE user_id = %s AND session_id = %s",
            (user_id, session_id),
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_an_unreachable_llm_fails_the_job_after_its_tries_and_writes_nothing(
    resources: Resources, user_id: str, session_id: str
) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # a closed port: connection refused
    llm_settings = Settings(
        llm_base_url=base_url,
        llm_model="any",
        llm_max_retries=1,
        llm_retry_backoff=timedelta(milliseconds=10),
    )
    extractor = build_extractor(llm_settings, resources.embedder)
    assert isinstance(extractor, LlmExtractor)
    async with isolated_stack(
        resources,
        extractor,
        extract_max_tries=2,
        extract_retry_delay=timedelta(milliseconds=100),
    ) as (channel, _):
        stub = memory_grpc.MemoryServiceStub(channel)
        sessions = session_grpc.SessionServiceStub(channel)
        await append(sessions, user_id, session_id, *CONVERSATION)
        queued = await extract(stub, user_id, session_id=session_id)
        job = await wait_job(stub, user_id, queued.id)
        assert job.state == pb.JOB_STATE_FAILED
        assert job.extractor == "llm:any"
        assert base_url in job.error and "MEMORYD_LLM_BASE_URL" in job.error, job.error
        # Two job attempts, each the first request and one retry.
        assert extractor.requests_sent == 4
        assert (job.created_count, job.updated_count, job.deleted_count) == (0, 0, 0)
        assert await memories(stub, user_id) == []
        # Nothing was marked extracted: the messages are tried again next time.
        assert await _watermark(resources, user_id, session_id) == 0
    await extractor.aclose()


async def test_an_extractor_failure_of_given_messages_fails_their_job(
    resources: Resources, user_id: str
) -> None:
    failing = FailingExtractor()
    async with isolated_stack(resources, failing, extract_max_tries=1) as (channel, _):
        stub = memory_grpc.MemoryServiceStub(channel)
        queued = await extract(stub, user_id, messages=[user("I live in Lisbon.")])
        job = await wait_job(stub, user_id, queued.id)
        assert job.state == pb.JOB_STATE_FAILED and failing.calls == 1
        assert "failing" in job.error and "no valid JSON" in job.error, job.error
        assert await memories(stub, user_id) == []


async def test_an_attempt_racing_a_retry_of_the_same_job_writes_nothing_twice(
    resources: Resources, user_id: str, session_id: str
) -> None:
    """A worker stalls mid-job (as one killed or timed out does); arq retries
    the job elsewhere, and the retry commits. When the stalled attempt resumes,
    it finds the job done and rolls back: the memories exist once."""
    gated = GatedExtractor(make_test_extractor(resources.settings, resources.embedder))
    async with isolated_stack(resources, gated) as (channel, own):
        stub = memory_grpc.MemoryServiceStub(channel)
        sessions = session_grpc.SessionServiceStub(channel)
        await append(sessions, user_id, session_id, *CONVERSATION)
        queued = await extract(stub, user_id, session_id=session_id)
        await asyncio.wait_for(gated.entered.wait(), 30)  # the worker's attempt is mid-way
        # The retry: the same job run again, by another "worker" with a working extractor.
        ctx: dict[str, Any] = {"job_id": "retry", "job_try": 2}
        install_state(ctx, WorkerState(settings=own.settings, resources=own, extractor=gated.inner))
        assert await jobs.extract_memories(ctx, user_id=user_id, session_id=session_id) == 1
        done = await wait_job(stub, user_id, queued.id)
        stored = await memories(stub, user_id)
        assert done.state == pb.JOB_STATE_SUCCEEDED and done.created_count == len(stored) >= 2
        gated.gate.set()  # the stalled attempt resumes and must write nothing
        arq_job = ArqJob(
            extraction_job_id(user_id=user_id, session_id=session_id), own.arq, QUEUE_NAME
        )
        await until(lambda: _finished(arq_job))
        assert [m.id for m in await memories(stub, user_id)] == [m.id for m in stored]
        assert (await wait_job(stub, user_id, queued.id)).created_count == len(stored)
        # And running the finished job once more finds nothing to do.
        await jobs.extract_memories(
            ctx, user_id=user_id, session_id=session_id, trigger=Trigger.MESSAGES
        )
        assert len(await memories(stub, user_id)) == len(stored)
        assert await _watermark(resources, user_id, session_id) == len(CONVERSATION)


async def test_messages_appended_during_a_run_are_picked_up_by_a_follow_up(
    resources: Resources, user_id: str, session_id: str
) -> None:
    gated = GatedExtractor(make_test_extractor(resources.settings, resources.embedder))
    async with isolated_stack(resources, gated) as (channel, own):
        stub = memory_grpc.MemoryServiceStub(channel)
        sessions = session_grpc.SessionServiceStub(channel)
        await append(sessions, user_id, session_id, user("I live in Berlin."))
        first = await extract(stub, user_id, session_id=session_id)
        await asyncio.wait_for(gated.entered.wait(), 30)
        # Arrives while the job runs: past its high seq, and its trigger
        # (ExtractMemories) coalesces with the running session job.
        await append(sessions, user_id, session_id, user("I love sailing on the lake."))
        second = await extract(stub, user_id, session_id=session_id)
        assert second.id != first.id and second.state == pb.JOB_STATE_QUEUED
        gated.gate.set()
        one = await wait_job(stub, user_id, first.id)
        two = await wait_job(stub, user_id, second.id)
        assert (one.message_count, two.message_count) == (1, 1)
        contents = sorted(m.content for m in await memories(stub, user_id))
        assert len(contents) == 2 and any("Berlin" in c for c in contents)
        assert any("sailing" in c for c in contents)
        assert await _watermark(own, user_id, session_id) == 2


async def _stalled_job(
    own: Resources,
    sessions: SessionStub,
    user_id: str,
    session_id: str,
    content: str,
    state: JobState,
) -> Job:
    """A session job in `state` whose arq job Redis no longer holds, untouched
    just past the sweep's requeue grace."""
    await append(sessions, user_id, session_id, user(content))
    async with own.postgres.connection() as conn:
        job = await extraction_store.queue_session_job(
            conn, user_id=user_id, session_id=session_id, trigger=Trigger.API
        )
        await conn.execute(
            "UPDATE extraction_jobs SET state = %s,"
            " update_time = now() - %s - interval '1 second' WHERE id = %s",
            (int(state), own.settings.extract_requeue_after, job.id),
        )
        await conn.commit()
    return job


async def test_the_sweep_extracts_idle_sessions_and_jobs_whose_enqueue_was_lost(
    resources: Resources, user_id: str, session_id: str
) -> None:
    extractor = make_test_extractor(resources.settings, resources.embedder)
    async with isolated_stack(
        resources, extractor, extract_idle=timedelta(0), extract_after_messages=1000
    ) as (channel, own):
        stub = memory_grpc.MemoryServiceStub(channel)
        sessions = session_grpc.SessionServiceStub(channel)
        ctx: dict[str, Any] = {"job_id": "cron", "job_try": 1}
        install_state(ctx, WorkerState(settings=own.settings, resources=own, extractor=extractor))
        # Idle with messages not yet extracted: the sweep extracts it.
        await append(sessions, user_id, session_id, user("I live in Vienna."))
        assert await jobs.extract_idle_sessions(ctx) >= 1
        [memory] = await until(lambda: memories(stub, user_id))
        assert "Vienna" in memory.content
        # A job stored QUEUED whose enqueue never reached Redis.
        lost = await _stalled_job(
            own, sessions, user_id, f"{session_id}-2", "I love climbing.", JobState.QUEUED
        )
        assert await jobs.extract_idle_sessions(ctx) >= 1
        job = await wait_job(stub, user_id, lost.id)
        assert job.state == pb.JOB_STATE_SUCCEEDED and job.created_count == 1
        # A job left RUNNING when its worker and Redis both went: requeued
        # after the same grace, not after the longest job timeout.
        orphan = await _stalled_job(
            own, sessions, user_id, f"{session_id}-3", "I play the cello.", JobState.RUNNING
        )
        assert await jobs.extract_idle_sessions(ctx) >= 1
        job = await wait_job(stub, user_id, orphan.id)
        assert job.state == pb.JOB_STATE_SUCCEEDED and job.created_count == 1


async def test_automatic_extraction_can_be_turned_off(
    resources: Resources, user_id: str, session_id: str
) -> None:
    extractor = make_test_extractor(resources.settings, resources.embedder)
    async with isolated_stack(
        resources,
        extractor,
        extract_auto=False,
        extract_after_messages=1,
        extract_idle=timedelta(0),
    ) as (channel, own):
        stub = memory_grpc.MemoryServiceStub(channel)
        sessions = session_grpc.SessionServiceStub(channel)
        await append(sessions, user_id, session_id, user("I live in Porto."))
        ctx: dict[str, Any] = {"job_id": "cron", "job_try": 1}
        install_state(ctx, WorkerState(settings=own.settings, resources=own, extractor=extractor))
        await jobs.extract_idle_sessions(ctx)
        # Neither the append nor the idle sweep queued anything for the session.
        arq_job = ArqJob(
            extraction_job_id(user_id=user_id, session_id=session_id), own.arq, QUEUE_NAME
        )
        assert await arq_job.status() is JobStatus.not_found
        assert await _watermark(own, user_id, session_id) == 0
        # ExtractMemories still works.
        job = await wait_job(
            stub, user_id, (await extract(stub, user_id, session_id=session_id)).id
        )
        assert job.created_count == 1


async def test_a_retraction_deletes_only_a_strongly_matching_memory(
    stub: Stub, session_stub: SessionStub, user_id: str, session_id: str
) -> None:
    # Nothing stored to take back: weak evidence, nothing deleted.
    await append(session_stub, user_id, session_id, user("I love hiking."))
    await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    await append(session_stub, user_id, session_id, user("I'm not vegetarian any more."))
    job = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert (job.deleted_count, job.noop_count) == (0, 1), job
    [hiking] = await memories(stub, user_id)
    # Stored, then taken back: the fact under that key is deleted, with its reason.
    await append(session_stub, user_id, session_id, user("I'm vegetarian."))
    await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    [diet] = [m for m in await memories(stub, user_id) if m.id != hiking.id]
    await append(session_stub, user_id, session_id, user("I'm not vegetarian any more."))
    job = await wait_job(stub, user_id, (await extract(stub, user_id, session_id=session_id)).id)
    assert job.deleted_count == 1, job
    assert [m.id for m in await memories(stub, user_id)] == [hiking.id]
    events = await history(stub, user_id, diet.id)
    assert [e.op for e in events] == [pb.MEMORY_OP_ADD, pb.MEMORY_OP_DELETE]
    assert "retracted" in events[1].reason and events[1].actor == job.id
