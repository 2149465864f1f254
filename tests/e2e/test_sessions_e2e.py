"""Session memory through the real processes of `memoryd up`: grpcurl (as a
user following the README would) and the generated Python stubs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

from memoryd.v1 import session_service_pb2 as pb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from tests.support.processes import MemorydUp, start_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def grpcurl(
    address: str, method: str, body: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    args = [GRPCURL, "-plaintext"]
    if body is not None:
        args += ["-d", json.dumps(body)]
    return subprocess.run([*args, address, method], capture_output=True, text=True, timeout=30)


def test_grpcurl_lists_services_by_reflection(memoryd_stack: MemorydUp) -> None:
    listed = grpcurl(memoryd_stack.address, "list")
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert "memoryd.v1.SessionService" in services
    assert "memoryd.v1.MemoryService" in services
    assert "grpc.health.v1.Health" in services


def test_grpcurl_appends_and_reads_a_session(memoryd_stack: MemorydUp) -> None:
    appended = grpcurl(
        memoryd_stack.address,
        "memoryd.v1.SessionService/AppendMessages",
        {
            "user_id": "alice",
            "session_id": "e2e-trip",
            "messages": [
                {"role": "user", "content": "I am planning a trip to Lisbon."},
                {"role": "assistant", "content": "How many days?", "run_id": "r1"},
            ],
        },
    )
    assert appended.returncode == 0, appended.stderr
    assert json.loads(appended.stdout)["appended_count"] == 2

    history = grpcurl(
        memoryd_stack.address,
        "memoryd.v1.SessionService/GetHistory",
        {"user_id": "alice", "session_id": "e2e-trip", "last_runs": 1},
    )
    assert history.returncode == 0, history.stderr
    messages = json.loads(history.stdout)["messages"]
    assert [m["content"] for m in messages] == ["How many days?"]

    # Another user asking for the same session id sees nothing.
    other = grpcurl(
        memoryd_stack.address,
        "memoryd.v1.SessionService/GetHistory",
        {"user_id": "mallory", "session_id": "e2e-trip"},
    )
    assert json.loads(other.stdout or "{}").get("messages", []) == []


def test_grpcurl_shows_invalid_argument_with_the_field(memoryd_stack: MemorydUp) -> None:
    bad = grpcurl(
        memoryd_stack.address,
        "memoryd.v1.SessionService/AppendMessages",
        {"session_id": "s", "messages": [{"role": "user", "content": "x"}]},
    )
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stdout + bad.stderr
    assert "user_id: is required" in bad.stdout + bad.stderr


async def test_stubs_append_concurrently_and_read_back_in_order(memoryd_stack: MemorydUp) -> None:
    async with grpc.aio.insecure_channel(memoryd_stack.address) as channel:
        stub = session_grpc.SessionServiceStub(channel)

        async def append(i: int) -> None:
            await stub.AppendMessages(
                pb.AppendMessagesRequest(
                    user_id="bob",
                    session_id="e2e-busy",
                    messages=[pb.Message(role="user", content=f"message {i}")],
                )
            )

        await asyncio.gather(*(append(i) for i in range(30)))
        reply = await stub.GetHistory(
            pb.GetHistoryRequest(user_id="bob", session_id="e2e-busy", last_messages=100)
        )
    assert [m.seq for m in reply.messages] == list(range(1, 31))
    assert sorted(m.content for m in reply.messages) == sorted(f"message {i}" for i in range(30))


def test_sessions_survive_a_restart_on_the_same_data_dir(data_dir: Path) -> None:
    first = start_up(data_dir)
    try:
        first.wait_serving()
        assert (
            grpcurl(
                first.address,
                "memoryd.v1.SessionService/AppendMessages",
                {
                    "user_id": "carol",
                    "session_id": "kept",
                    "messages": [{"role": "user", "content": "remember me"}],
                },
            ).returncode
            == 0
        )
    finally:
        assert first.stop() == 0, first.log()
    second = start_up(data_dir)
    try:
        second.wait_serving()
        history = grpcurl(
            second.address,
            "memoryd.v1.SessionService/GetHistory",
            {"user_id": "carol", "session_id": "kept"},
        )
        assert [m["content"] for m in json.loads(history.stdout)["messages"]] == ["remember me"]
    finally:
        assert second.stop() == 0, second.log()
