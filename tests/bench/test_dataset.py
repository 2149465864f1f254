"""The evaluation-format reader: pure, no servers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.dataset import DEFAULT_AGENT_ID, DatasetError, load, parse_conversation, parse_lines

TINY = Path(__file__).parents[2] / "bench" / "data" / "tiny.jsonl"

CONVERSATION: dict[str, Any] = {
    "id": "c1",
    "user_id": "u1",
    "sessions": [
        {
            "id": "s1",
            "started_at": "2024-03-02T09:15:00+00:00",
            "messages": [
                {"id": "m1", "role": "user", "name": "Alice", "content": "I am vegetarian."},
                {"id": "m2", "role": "assistant", "name": "", "content": "Noted."},
            ],
        }
    ],
    "questions": [
        {"id": "q1", "query": "Diet?", "answer": "veg", "evidence": ["m1"], "category": "x"}
    ],
}


def variant(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(CONVERSATION)
    document.update(changes)
    return document


def test_parses_a_conversation() -> None:
    conversation = parse_conversation(CONVERSATION)
    assert conversation.user_id == "u1"
    session = conversation.sessions[0]
    assert session.agent_id == DEFAULT_AGENT_ID
    assert [m.speaker for m in session.messages] == ["Alice", "Assistant"]
    assert conversation.questions[0].evidence == ("m1",)
    assert conversation.message_ids() == {"m1", "m2"}


def test_agent_id_comes_from_the_session_or_the_conversation() -> None:
    document = variant(agent_id="travel")
    assert parse_conversation(document).sessions[0].agent_id == "travel"
    document["sessions"][0]["agent_id"] = "other"
    assert parse_conversation(document).sessions[0].agent_id == "other"


def test_questions_default_category_and_may_be_absent() -> None:
    document = variant()
    del document["questions"][0]["category"]
    assert parse_conversation(document).questions[0].category == "uncategorized"
    del document["questions"]
    assert parse_conversation(document).questions == ()


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        (variant(id=""), "'id'"),
        (variant(sessions={}), "'sessions' must be a list"),
        (
            variant(questions=[{"id": "q", "query": "?", "evidence": ["nope"], "category": "x"}]),
            "unknown message ids ['nope']",
        ),
        (variant(questions=[{"id": "q", "query": "?", "evidence": [3]}]), "evidence"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_rejects_malformed_conversations(document: Any, complaint: str) -> None:
    with pytest.raises(DatasetError, match=complaint.replace("[", r"\[").replace("]", r"\]")):
        parse_conversation(document)


def test_rejects_repeated_message_ids() -> None:
    document = variant()
    document["sessions"][0]["messages"][1]["id"] = "m1"
    with pytest.raises(DatasetError, match="repeat"):
        parse_conversation(document)


def test_rejects_a_start_time_that_is_not_iso() -> None:
    document = variant()
    document["sessions"][0]["started_at"] = "last Tuesday"
    with pytest.raises(DatasetError, match="ISO 8601"):
        parse_conversation(document)


def test_lines_name_where_they_fail_and_skip_blanks() -> None:
    line = json.dumps(CONVERSATION)
    assert [c.id for c in parse_lines([line, "", "  "], source="f")] == ["c1"]
    with pytest.raises(DatasetError, match="f:2: not JSON"):
        list(parse_lines([line, "{"], source="f"))
    with pytest.raises(DatasetError, match="f:2: conversation id 'c1' repeats"):
        list(parse_lines([line, line], source="f"))


def test_tiny_dataset_is_well_formed() -> None:
    conversations = load(TINY)
    assert 6 <= len(conversations) <= 10
    questions = [q for c in conversations for q in c.questions]
    assert 15 <= len(questions) <= 30
    assert all(q.evidence for q in questions)
    assert {q.category for q in questions} == {"single-hop", "multi-hop", "temporal", "preference"}
    for conversation in conversations:
        assert 2 <= len(conversation.sessions) <= 3
        # The server stores identical content once per user: a repeated line
        # would lose its message id and cap recall below 1.
        contents = [f"{m.speaker}: {m.content}" for s in conversation.sessions for m in s.messages]
        assert len(contents) == len(set(contents)), conversation.id
