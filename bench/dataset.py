"""The held-out evaluation format (DESIGN.md, "Held-out evaluation format"): pure
parsing and validation, no I/O beyond reading the file.

One conversation a line:
    {"id", "user_id", "sessions": [{"id", "started_at", "messages": [{"id", "role",
    "name", "content"}]}], "questions": [{"id", "query", "answer", "evidence":
    [message ids], "category"}]}

Optional keys the reader also takes: "agent_id" on a conversation or a session
(the agent the memories belong to). Unknown keys are ignored so that richer
datasets load as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_AGENT_ID = "memoryd-bench"


class DatasetError(ValueError):
    """A line that is not a conversation in the evaluation format; says where."""


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    role: str
    name: str
    content: str

    @property
    def speaker(self) -> str:
        """Who said it, as the memory's content prefix: the name, else the role."""
        return self.name or self.role.capitalize()


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    started_at: str  # as given (ISO 8601); kept verbatim for metadata.said_at
    agent_id: str
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    query: str
    answer: str
    evidence: tuple[str, ...]
    category: str


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    user_id: str
    sessions: tuple[Session, ...]
    questions: tuple[Question, ...]

    def message_ids(self) -> set[str]:
        return {m.id for s in self.sessions for m in s.messages}


def load(path: Path) -> list[Conversation]:
    """Every conversation in a JSONL file; blank lines are skipped."""
    with path.open(encoding="utf-8") as lines:
        return list(parse_lines(lines, source=str(path)))


def parse_lines(lines: Iterable[str], *, source: str = "<input>") -> Iterator[Conversation]:
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not JSON: {exc}") from None
        conversation = parse_conversation(document, where=where)
        if conversation.id in seen:
            raise DatasetError(f"{where}: conversation id {conversation.id!r} repeats")
        seen.add(conversation.id)
        yield conversation


def parse_conversation(document: Any, *, where: str = "<input>") -> Conversation:
    """One conversation, checked: ids present and unique, evidence names real messages."""
    obj = _object(document, where)
    conversation_id = _text(obj, "id", where)
    agent_id = str(obj.get("agent_id") or DEFAULT_AGENT_ID)
    sessions = tuple(
        _session(item, agent_id, f"{where}: session {index}")
        for index, item in enumerate(_list(obj, "sessions", where))
    )
    questions = tuple(
        _question(item, f"{where}: question {index}")
        for index, item in enumerate(_list(obj, "questions", where, required=False))
    )
    conversation = Conversation(
        id=conversation_id,
        user_id=_text(obj, "user_id", where),
        sessions=sessions,
        questions=questions,
    )
    _check_ids(conversation, where)
    return conversation


def _session(document: Any, agent_id: str, where: str) -> Session:
    obj = _object(document, where)
    started_at = _text(obj, "started_at", where)
    try:
        datetime.fromisoformat(started_at)
    except ValueError:
        raise DatasetError(f"{where}: started_at {started_at!r} is not ISO 8601") from None
    return Session(
        id=_text(obj, "id", where),
        started_at=started_at,
        agent_id=str(obj.get("agent_id") or agent_id),
        messages=tuple(
            _message(item, f"{where}: message {index}")
            for index, item in enumerate(_list(obj, "messages", where))
        ),
    )


def _message(document: Any, where: str) -> Message:
    obj = _object(document, where)
    return Message(
        id=_text(obj, "id", where),
        role=_text(obj, "role", where),
        name=str(obj.get("name") or ""),
        content=_text(obj, "content", where),
    )


def _question(document: Any, where: str) -> Question:
    obj = _object(document, where)
    evidence = _list(obj, "evidence", where, required=False)
    if not all(isinstance(item, str) and item for item in evidence):
        raise DatasetError(f"{where}: evidence must be a list of message ids")
    return Question(
        id=_text(obj, "id", where),
        query=_text(obj, "query", where),
        answer=str(obj.get("answer") or ""),
        evidence=tuple(evidence),
        category=str(obj.get("category") or "uncategorized"),
    )


def _check_ids(conversation: Conversation, where: str) -> None:
    # Evidence is matched by message id, so an id used twice or evidence
    # naming no message would silently skew recall.
    message_ids = [m.id for s in conversation.sessions for m in s.messages]
    if len(set(message_ids)) != len(message_ids):
        raise DatasetError(f"{where}: message ids repeat within the conversation")
    known = set(message_ids)
    for question in conversation.questions:
        unknown = [e for e in question.evidence if e not in known]
        if unknown:
            raise DatasetError(
                f"{where}: question {question.id!r} cites unknown message ids {unknown}"
            )


def _object(document: Any, where: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    return document


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # some datasets number their ids
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{where}: {key!r} must be a non-empty string")
    return value


def _list(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> list[Any]:
    value = obj.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise DatasetError(f"{where}: {key!r} must be a list")
    return value
