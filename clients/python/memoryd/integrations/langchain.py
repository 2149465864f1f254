"""A LangChain chat message history kept in a memoryd session.

    from memoryd.integrations.langchain import MemorydChatMessageHistory

    history = MemorydChatMessageHistory("alice", "chat-1", address="localhost:50051")
    history.add_messages([HumanMessage("hi"), AIMessage("hello!")])
    history.messages        # -> [HumanMessage('hi'), AIMessage('hello!')]

Each LangChain message is one memoryd message: human -> "user", ai ->
"assistant", system -> "system", tool and function -> "tool", a ChatMessage
keeps its role when memoryd knows it. The content is the message's text
(what memoryd counts tokens of and extracts memories from); the full
LangChain message (tool calls, content blocks, kwargs) rides in the
message's metadata, so it reads back as it was written. Messages written by
other clients read back as Human/AI/System/ChatMessage by role.

Reads are bounded like memoryd's GetHistory: by default the session's last
20 messages; pass last_messages=, last_runs= or max_tokens= for another
window. clear() deletes the session.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    message_to_dict,
    messages_from_dict,
)

from memoryd.client import AsyncMemoryClient, MemoryClient, NotFound
from memoryd.v1 import session_service_pb2 as spb

METADATA_KEY = "langchain"
_ROLE_BY_TYPE = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
}
_ROLES = frozenset({"user", "assistant", "system", "tool", "developer"})
_TYPE_BY_ROLE: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
    "developer": SystemMessage,
}


def to_memoryd(message: BaseMessage) -> dict[str, Any]:
    """The memoryd message (as a client dict) for a LangChain message."""
    role = _ROLE_BY_TYPE.get(message.type)
    if role is None and isinstance(message, ChatMessage) and message.role in _ROLES:
        role = message.role
    out: dict[str, Any] = {
        "role": role or "user",
        "content": message.text,
        "metadata": {METADATA_KEY: json.dumps(message_to_dict(message), ensure_ascii=False)},
    }
    if message.name:
        out["name"] = message.name
    return out


def from_memoryd(message: spb.Message) -> BaseMessage:
    """The LangChain message a memoryd message holds (rebuilt by role if it
    was not written through LangChain)."""
    if METADATA_KEY in message.metadata.fields:
        try:
            return messages_from_dict([json.loads(str(message.metadata[METADATA_KEY]))])[0]
        except (ValueError, KeyError, TypeError):
            pass  # not ours after all: rebuild by role below
    name = message.name or None
    message_type = _TYPE_BY_ROLE.get(message.role)
    if message_type is None:
        return ChatMessage(content=message.content, role=message.role, name=name, id=message.id)
    return message_type(content=message.content, name=name, id=message.id)


class MemorydChatMessageHistory(BaseChatMessageHistory):
    """BaseChatMessageHistory over one memoryd session of one user."""

    def __init__(
        self,
        user_id: str,
        session_id: str,
        *,
        address: str = "localhost:50051",
        agent_id: str | None = None,
        last_messages: int | None = None,
        last_runs: int | None = None,
        max_tokens: int | None = None,
        client: MemoryClient | None = None,
        aclient: AsyncMemoryClient | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.agent_id = agent_id
        self._window = {
            "last_messages": last_messages,
            "last_runs": last_runs,
            "max_tokens": max_tokens,
        }
        self._address = address
        self._options = dict(client_options or {})
        self._client = client
        self._aclient = aclient

    @property
    def client(self) -> MemoryClient:
        if self._client is None:
            self._client = MemoryClient(self._address, **self._options)
        return self._client

    @property
    def aclient(self) -> AsyncMemoryClient:
        if self._aclient is None:  # made in the running event loop
            self._aclient = AsyncMemoryClient(self._address, **self._options)
        return self._aclient

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        stored = self.client.sessions.history(self.user_id, self.session_id, **self._window)
        return [from_memoryd(m) for m in stored]

    async def aget_messages(self) -> list[BaseMessage]:
        sessions = self.aclient.sessions
        stored = await sessions.history(self.user_id, self.session_id, **self._window)
        return [from_memoryd(m) for m in stored]

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            converted = [to_memoryd(m) for m in messages]
            self.client.sessions.append(
                self.user_id, self.session_id, converted, agent_id=self.agent_id
            )

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            converted = [to_memoryd(m) for m in messages]
            await self.aclient.sessions.append(
                self.user_id, self.session_id, converted, agent_id=self.agent_id
            )

    def clear(self) -> None:
        with contextlib.suppress(NotFound):  # nothing stored yet: already clear
            self.client.sessions.delete(self.user_id, self.session_id)

    async def aclear(self) -> None:
        with contextlib.suppress(NotFound):
            await self.aclient.sessions.delete(self.user_id, self.session_id)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.close()
