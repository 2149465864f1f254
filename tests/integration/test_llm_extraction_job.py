"""Whole ExtractMemories jobs through the gRPC server with the LLM extractor.

The first test needs the real llama.cpp server (`make test-llm`); the second points
the extractor at a closed port and runs in the default suite.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.extraction.llm import LlmExtractor
from server.resources import Resources
from tests.integration.conftest import isolated_stack
from tests.integration.test_extraction import append, assistant, extract, memories, user
from tests.support.llama import LlamaServer, running_llama_server
from tests.support.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CONVERSATION = [
    user("Hi! I moved to Lisbon last month and I work as a nurse."),
    assistant("Welcome to Lisbon! How are you finding it?"),
    user("I'm vegetarian, so the food took some exploring."),
]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServer]:
    with running_llama_server() as server:
        yield server


def llm_overrides(base_url: str, model: str, **more: Any) -> dict[str, Any]:
    return {
        "llm_base_url": base_url,
        "llm_model": model,
        "llm_timeout": timedelta(seconds=120),
        "llm_retry_backoff": timedelta(milliseconds=10),
        # One job attempt: the extractor retries inside it, and a second attempt
        # would only repeat them on a slow machine.
        "extract_max_tries": 1,
        "extract_timeout": timedelta(minutes=10),
        **more,
    }


async def run_job(
    resources: Resources, overrides: dict[str, Any], user_id: str
) -> tuple[pb.Job, list[pb.Memory], list[str]]:
    settings = resources.settings.model_copy(update=overrides)
    extractor = LlmExtractor(settings)
    session_id = f"s-{uuid.uuid4().hex[:8]}"
    try:
        async with isolated_stack(resources, extractor, **overrides) as (channel, _):
            stub = memory_grpc.MemoryServiceStub(channel)
            sessions = session_grpc.SessionServiceStub(channel)
            ids = await append(sessions, user_id, session_id, *CONVERSATION)
            queued = await extract(stub, user_id, session_id=session_id)
            async with asyncio.timeout(800):
                while True:
                    request = pb.GetJobRequest(user_id=user_id, id=queued.id)
                    job = (await stub.GetJob(request)).job
                    if job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED):
                        break
                    await asyncio.sleep(0.2)
            return job, await memories(stub, user_id), ids
    finally:
        await extractor.aclose()


@pytest.mark.llm
async def test_a_job_through_the_llm_endpoint_succeeds_or_fails_without_half_writes(
    resources: Resources, user_id: str, llama_server: LlamaServer
) -> None:
    # Short answers and a long timeout: a 135M model on a busy 2-core machine
    # generates slowly, and a timed-out request keeps the server busy.
    overrides = llm_overrides(
        llama_server.base_url,
        llama_server.model,
        llm_max_tokens=384,
        llm_max_output_retries=1,
        llm_timeout=timedelta(minutes=10),
    )
    job, stored, ids = await run_job(resources, overrides, user_id)
    if job.state == pb.JOB_STATE_SUCCEEDED:
        # SmolLM2-135M may well find nothing; what it stores must be attributed.
        assert job.created_count == len(stored)
        for memory in stored:
            assert memory.content.strip()
            assert set(memory.source_message_ids) <= set(ids)
    else:
        # The extractor's own error: invalid output after its re-asks, or (on a
        # starved machine) the endpoint timing out after its retries.
        assert f"extractor llm:{llama_server.model} failed" in job.error, job.error
        assert "invalid output" in job.error or "MEMORYD_LLM_TIMEOUT" in job.error, job.error
        assert (job.created_count, job.updated_count, job.deleted_count) == (0, 0, 0)
        assert stored == []


async def test_an_unreachable_llm_endpoint_fails_the_job_with_a_clear_error(
    resources: Resources, user_id: str
) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    overrides = llm_overrides(base_url, "any-model", llm_max_retries=1)
    job, stored, _ = await run_job(resources, overrides, user_id)
    assert job.state == pb.JOB_STATE_FAILED
    assert base_url in job.error, job.error
    assert "check MEMORYD_LLM_BASE_URL" in job.error, job.error
    assert (job.created_count, job.updated_count, job.deleted_count) == (0, 0, 0)
    assert stored == []
