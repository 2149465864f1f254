"""MemorydChatMessageHistory, LangChain's BaseChatMessageHistory over a memoryd
session, through the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from langchain_core.messages import AIMessage, ChatMessage, HumanMessage, SystemMessage, ToolMessage

from memoryd.client import AsyncMemoryClient
from memoryd.integrations.langchain import MemorydChatMessageHistory
from server.api.app import RunningServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
async def history(
    server: RunningServer, indexing: None, user_id: str
) -> AsyncIterator[MemorydChatMessageHistory]:
    opened = MemorydChatMessageHistory(user_id, "chat", address=server.address)
    yield opened
    await opened.aclose()
    opened.close()


async def test_add_get_clear_round_trips_messages(
    history: MemorydChatMessageHistory, server: RunningServer, user_id: str
) -> None:
    assert await history.aget_messages() == []
    await history.aclear()  # clearing an empty history is no error
    call = {"name": "lookup", "args": {"q": "weather"}, "id": "call-1", "type": "tool_call"}
    written = [
        SystemMessage("You are a helpful assistant."),
        HumanMessage("What's the weather in Oslo?", name="ada"),
        AIMessage("", tool_calls=[call]),
        ToolMessage("Sunny, 21 C", tool_call_id="call-1"),
        AIMessage("It is sunny in Oslo."),
    ]
    await history.aadd_messages(written)
    await history.aadd_messages([])
    assert await history.aget_messages() == written  # tool calls and names survive

    # Other clients see plain memoryd messages with roles and text.
    async with AsyncMemoryClient(server.address) as client:
        stored = await client.sessions.history(user_id, "chat")
        assert [(m.role, m.content) for m in stored] == [
            ("system", "You are a helpful assistant."),
            ("user", "What's the weather in Oslo?"),
            ("assistant", ""),
            ("tool", "Sunny, 21 C"),
            ("assistant", "It is sunny in Oslo."),
        ]
        # ... and messages they write read back as LangChain messages by role.
        await client.sessions.append(
            user_id, "chat", [{"role": "developer", "content": "be brief", "id": "d1"}]
        )
    last = (await history.aget_messages())[-1]
    assert isinstance(last, SystemMessage) and last.content == "be brief"

    await history.aclear()
    assert await history.aget_messages() == []


async def test_window_bounds_what_is_read(
    server: RunningServer, indexing: None, user_id: str
) -> None:
    history = MemorydChatMessageHistory(user_id, "long", address=server.address, last_messages=2)
    try:
        await history.aadd_messages([HumanMessage(f"message {i}") for i in range(5)])
        assert [m.content for m in await history.aget_messages()] == ["message 3", "message 4"]
    finally:
        await history.aclose()


def sync_round_trip(history: MemorydChatMessageHistory) -> None:
    history.add_user_message("I like jazz")
    history.add_ai_message("Noted: jazz.")
    history.add_messages([ChatMessage(role="assistant", content="Anything else?")])
    assert [(m.type, m.content) for m in history.messages] == [
        ("human", "I like jazz"),
        ("ai", "Noted: jazz."),
        ("chat", "Anything else?"),
    ]
    history.clear()
    assert history.messages == []


async def test_sync_methods(history: MemorydChatMessageHistory) -> None:
    await asyncio.to_thread(sync_round_trip, history)
