"""What the LLM extractor asks a model to return, and the checks its answer must pass.

The JSON schema goes to the endpoint (as a strict json_schema response format, or as
a json_object schema where the server only knows that); the pydantic models below
check the answer again, because schema-constrained decoding is not a guarantee: a
server may ignore the schema, and llama.cpp's grammar lets raw newlines into strings.
An answer that fails is rejected whole (the extractor asks again), never half-used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from server.extraction.candidates import Candidate, Stance
from server.memory_models import MemoryKind

MAX_CONTENT_CHARS = 500
MAX_REASON_CHARS = 300
MAX_TOPICS = 8
MAX_TOPIC_CHARS = 40
MAX_KEY_CHARS = 64
# A slot name, optionally qualified: home_city, timezone, child:daughter, pet:dog.
KEY_PATTERN = r"^[a-z][a-z0-9_]*(:[a-z0-9_]+)?$"
_KEY_RE = re.compile(KEY_PATTERN)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

_Text = Annotated[str, StringConstraints(strip_whitespace=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryOut(_Strict):
    """One memory as the model states it."""

    content: _Text = Field(min_length=1, max_length=MAX_CONTENT_CHARS)
    kind: Literal["fact", "semantic"]
    key: _Text = Field(max_length=MAX_KEY_CHARS)
    topics: list[_Text] = Field(max_length=MAX_TOPICS)
    source_message_ids: list[_Text] = Field(min_length=1)
    stance: Literal["assert", "retract"]
    confidence: float = Field(ge=0, le=1)
    reason: _Text = Field(max_length=MAX_REASON_CHARS)


class ExtractionOut(_Strict):
    """The whole answer: an empty list when the messages state nothing durable."""

    memories: list[MemoryOut]


def response_schema() -> dict[str, Any]:
    """The JSON schema sent to the endpoint.

    Written out rather than generated from the models: OpenAI's strict mode wants
    every property required and additionalProperties false at every level, and
    llama.cpp's grammar converter handles only plain constructs.
    """
    text: dict[str, Any] = {"type": "string"}
    memory = {
        "type": "object",
        "properties": {
            "content": {"type": "string", "minLength": 1, "maxLength": MAX_CONTENT_CHARS},
            "kind": {"type": "string", "enum": ["fact", "semantic"]},
            "key": {"type": "string", "maxLength": MAX_KEY_CHARS},
            "topics": {"type": "array", "items": text, "maxItems": MAX_TOPICS},
            "source_message_ids": {"type": "array", "items": text, "minItems": 1},
            "stance": {"type": "string", "enum": ["assert", "retract"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "reason": {"type": "string", "maxLength": MAX_REASON_CHARS},
        },
        "required": [
            "content",
            "kind",
            "key",
            "topics",
            "source_message_ids",
            "stance",
            "confidence",
            "reason",
        ],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"memories": {"type": "array", "items": memory}},
        "required": ["memories"],
        "additionalProperties": False,
    }


class InvalidOutput(Exception):
    """The model's answer is not usable; the message says why, for the retry log and
    the job's error."""


def parse_output(raw: str | None, *, message_ids: Mapping[str, str]) -> list[Candidate]:
    """Candidates from the model's raw answer, or InvalidOutput.

    `message_ids` maps the ids the model was shown to the stored message ids.
    """
    if raw is None or not raw.strip():
        raise InvalidOutput("the answer is empty")
    try:
        # Strict JSON: a raw newline inside a string is an error, not text.
        parsed = ExtractionOut.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidOutput(_summarise(exc)) from None
    return [
        _candidate(memory, index=i, message_ids=message_ids)
        for i, memory in enumerate(parsed.memories)
    ]


def _candidate(memory: MemoryOut, *, index: int, message_ids: Mapping[str, str]) -> Candidate:
    where = f"memories[{index}]"
    for name, value in [("content", memory.content), ("reason", memory.reason)]:
        if _CONTROL_RE.search(value):
            raise InvalidOutput(f"{where}.{name} contains a control character (a raw newline?)")
    key = memory.key.lower().replace(" ", "_").replace("-", "_")
    if memory.kind == "fact":
        if not key:
            raise InvalidOutput(f"{where} is a fact without a key")
        if not _KEY_RE.fullmatch(key):
            raise InvalidOutput(
                f"{where}.key {memory.key!r} is not a slot name like home_city or child:daughter"
            )
    elif key:
        raise InvalidOutput(f"{where} is semantic but has key {memory.key!r}")
    sources: list[str] = []
    for shown in memory.source_message_ids:
        if shown not in message_ids:
            raise InvalidOutput(f"{where}.source_message_ids names unknown message {shown!r}")
        stored = message_ids[shown]
        if stored not in sources:
            sources.append(stored)
    topics: list[str] = []
    for topic in memory.topics:
        topic = topic.lower()
        if len(topic) > MAX_TOPIC_CHARS or _CONTROL_RE.search(topic):
            raise InvalidOutput(f"{where}.topics has an invalid topic {topic[:50]!r}")
        if topic and topic not in topics:
            topics.append(topic)
    return Candidate(
        content=memory.content,
        kind=MemoryKind.FACT if memory.kind == "fact" else MemoryKind.SEMANTIC,
        key=key,
        topics=tuple(topics),
        source_message_ids=tuple(sources),
        stance=Stance.ASSERT if memory.stance == "assert" else Stance.RETRACT,
        reason=memory.reason,
        confidence=memory.confidence,
    )


def _summarise(exc: ValidationError) -> str:
    """The first few problems, each with where it is, short enough for a job error."""
    problems = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "the answer"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)
