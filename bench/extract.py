"""`memoryd-bench recall --mode extract`: memories made by memoryd's extraction.

Each conversation's sessions are appended through AppendMessages (message ids
preserved, so memories cite the dataset's ids), in order, and each is
extracted (ExtractMemories, then GetJob until done) before the next is
appended, as sessions happen one after another. Conversations run in
parallel. Then the memories are measured by what they cite: memories per
message, and the share that cite no message of the dataset (no evidence).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import grpc

from bench.dataset import Conversation, Session
from bench.harness import progress
from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc

_POLL_S = 0.05
_DONE = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED)


class ExtractionJobFailed(Exception):
    """An extraction job ended FAILED; the figures would be meaningless."""


@dataclass
class ExtractStats:
    messages: int = 0
    jobs: int = 0
    # Appending and extracting every session, wall clock.
    elapsed_s: float = 0.0
    extractor: str = ""
    # Filled by measure(): the memories left at the end.
    memories: int = 0
    unattributed: int = 0
    sources: list[int] = field(default_factory=list)


def _messages(session: Session) -> list[spb.Message]:
    """The session's messages, said one second apart from its start."""
    start = _parse_time(session.started_at)
    out = []
    for index, message in enumerate(session.messages):
        said = spb.Message(
            id=message.id, role=message.role, name=message.name, content=message.content
        )
        if start is not None:
            said.create_time.FromDatetime(start + timedelta(seconds=index))
        out.append(said)
    return out


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


async def _wait(
    stub: memory_grpc.MemoryServiceAsyncStub, user_id: str, job_id: str, deadline_s: float
) -> pb.Job:
    async with asyncio.timeout(deadline_s):
        while True:
            reply = await stub.GetJob(pb.GetJobRequest(user_id=user_id, id=job_id))
            if reply.job.state in _DONE:
                return reply.job
            await asyncio.sleep(_POLL_S)


async def _conversation(
    channel: grpc.aio.Channel,
    conversation: Conversation,
    user_id: str,
    stats: ExtractStats,
    deadline_s: float,
) -> None:
    sessions = session_grpc.SessionServiceStub(channel)
    memories = memory_grpc.MemoryServiceStub(channel)
    for session in conversation.sessions:
        await sessions.AppendMessages(
            spb.AppendMessagesRequest(
                user_id=user_id,
                session_id=session.id,
                agent_id=session.agent_id,
                messages=_messages(session),
            ),
            timeout=deadline_s,
        )
        queued = await memories.ExtractMemories(
            pb.ExtractMemoriesRequest(user_id=user_id, session_id=session.id), timeout=deadline_s
        )
        job = await _wait(memories, user_id, queued.job.id, deadline_s)
        if job.state == pb.JOB_STATE_FAILED:
            raise ExtractionJobFailed(f"extraction of session {session.id} failed: {job.error}")
        stats.messages += len(session.messages)
        stats.jobs += 1
        stats.extractor = job.extractor or stats.extractor


async def ingest(
    channel: grpc.aio.Channel,
    conversations: Sequence[Conversation],
    user_of: Callable[[Conversation], str],
    *,
    concurrency: int,
    deadline_s: float,
) -> ExtractStats:
    stats = ExtractStats()
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(conversation: Conversation) -> None:
        nonlocal done
        async with gate:
            await _conversation(channel, conversation, user_of(conversation), stats, deadline_s)
        done += 1
        progress(f"extracted conversation {done}/{len(conversations)} ({stats.messages} messages)")

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for conversation in conversations:
                group.create_task(one(conversation))
    except ExceptionGroup as errors:
        failed, _ = errors.split(ExtractionJobFailed)
        if failed is not None:  # the job's error says more than the group's
            raise failed.exceptions[0] from errors
        raise
    stats.elapsed_s = time.perf_counter() - started
    return stats


async def measure(
    stub: memory_grpc.MemoryServiceAsyncStub,
    conversations: Sequence[Conversation],
    user_of: Callable[[Conversation], str],
    stats: ExtractStats,
    *,
    deadline_s: float,
) -> None:
    """Count the memories extraction left and what they cite."""
    for conversation in conversations:
        known = conversation.message_ids()
        token = ""
        while True:
            reply = await stub.ListMemories(
                pb.ListMemoriesRequest(
                    user_id=user_of(conversation), page_size=100, page_token=token
                ),
                timeout=deadline_s,
            )
            for memory in reply.memories:
                cited = set(memory.source_message_ids) & known
                stats.memories += 1
                stats.unattributed += not cited
                stats.sources.append(len(cited))
            token = reply.next_page_token
            if not token:
                break


def report(stats: ExtractStats, *, workers: int) -> dict[str, Any]:
    per_worker = stats.messages / stats.elapsed_s / workers if stats.elapsed_s else 0.0
    return {
        "extractor": stats.extractor,
        "messages": stats.messages,
        "jobs": stats.jobs,
        "memories": stats.memories,
        "memories_per_message": round(stats.memories / stats.messages, 4)
        if stats.messages
        else 0.0,
        "unattributed_share": round(stats.unattributed / stats.memories, 4)
        if stats.memories
        else 0.0,
        "mean_sources_per_memory": round(sum(stats.sources) / len(stats.sources), 3)
        if stats.sources
        else 0.0,
        "extract_s": round(stats.elapsed_s, 2),
        "workers": workers,
        "messages_per_s_per_worker": round(per_worker, 1),
    }
