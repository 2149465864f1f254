"""Extraction through the real processes of `memoryd up`, with grpcurl as a
user following the README would: append a conversation, call nothing else,
and find its memories a few seconds later."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.e2e.test_sessions_e2e import grpcurl
from tests.support.processes import MemorydUp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def call(address: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
    done = grpcurl(address, f"memoryd.v1.{method}", body)
    assert done.returncode == 0, done.stderr
    reply: dict[str, Any] = json.loads(done.stdout or "{}")
    return reply


def test_an_appended_conversation_becomes_memories_without_another_call(
    memoryd_stack: MemorydUp,
) -> None:
    address = memoryd_stack.address
    user = f"alice-{uuid.uuid4().hex[:6]}"
    call(
        address,
        "SessionService/AppendMessages",
        {
            "userId": user,
            "sessionId": "trip",
            "messages": [
                {"id": "m1", "role": "user", "content": "I live in Lisbon and I'm vegetarian."},
                {"id": "m2", "role": "assistant", "content": "Noted! Where to next?"},
                {"id": "m3", "role": "user", "content": "What's the weather in Rome?"},
            ],
        },
    )
    # The session goes idle; the worker's sweep extracts it (MEMORYD_EXTRACT_IDLE).
    deadline = time.monotonic() + 120
    memories: list[dict[str, Any]] = []
    while not memories and time.monotonic() < deadline:
        time.sleep(0.5)
        memories = call(address, "MemoryService/ListMemories", {"userId": user}).get("memories", [])
    assert memories, "no memories within 120 s of the append"
    text = " ".join(m["content"] for m in memories)
    assert "Lisbon" in text and "vegetarian" in text
    assert "Rome" not in text  # a question is no memory
    assert all(m.get("source_message_ids") == ["m1"] for m in memories), memories
    # Asked explicitly now, the session has nothing new: the job reads nothing.
    job = call(address, "MemoryService/ExtractMemories", {"userId": user, "sessionId": "trip"})
    job_id = job["job"]["id"]
    while job["job"].get("state") not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"):
        time.sleep(0.2)
        job = call(address, "MemoryService/GetJob", {"userId": user, "id": job_id})
    assert job["job"]["state"] == "JOB_STATE_SUCCEEDED"
    assert "created_count" not in job["job"]  # zero: omitted from the JSON
    history = call(
        address, "MemoryService/GetMemoryHistory", {"userId": user, "id": memories[0]["id"]}
    )
    [added] = history["events"]
    assert added["op"] == "MEMORY_OP_ADD" and added["reason"]
