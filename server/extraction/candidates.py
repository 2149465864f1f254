"""The contract between an extractor and the reconciler that acts on its output.

An extractor reads a slice of transcript and proposes candidate memories; it never
touches storage. The reconciler compares each candidate with the user's most similar
stored memories and decides ADD, UPDATE, DELETE or NOOP. Keeping the two apart lets a
local extractor and an LLM extractor share one set of decision rules and one audit
trail.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from server.memory_models import MemoryKind
from server.models import StoredMessage


class Stance(enum.Enum):
    """Whether the transcript asserts the candidate or takes it back."""

    # "I live in Lisbon now": store it, superseding what it contradicts.
    ASSERT = "assert"
    # "I'm not vegetarian any more" / "forget my old address": delete the matching
    # memory, but only when one matches strongly (never on weak evidence).
    RETRACT = "retract"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One memory an extractor proposes, in the third person ("The user lives in Lisbon")."""

    content: str
    kind: MemoryKind
    # A stable slot name for facts ("home_city", "timezone", "diet"); empty for
    # semantic memories.
    key: str = ""
    topics: tuple[str, ...] = ()
    # Ids of the messages that state it: every candidate points at its evidence.
    source_message_ids: tuple[str, ...] = ()
    stance: Stance = Stance.ASSERT
    # Why the extractor proposed it, recorded in the memory's history.
    reason: str = ""
    # 0 to 1: how sure the extractor is. The reconciler drops weak candidates.
    confidence: float = 1.0


class ExtractionFailed(Exception):
    """The extractor could not produce valid output after its retries."""


class Extractor(Protocol):
    """Turns transcript into candidates. Implementations: local (default) and LLM."""

    # Recorded with each decision ("local", "llm:<model>").
    name: str

    async def extract(self, messages: Sequence[StoredMessage]) -> list[Candidate]:
        """Candidates stated by the user in `messages` (oldest first).

        Small talk and questions yield nothing. Raises ExtractionFailed when the
        extractor cannot produce valid output; callers fail the job cleanly.
        """
        ...

    async def aclose(self) -> None:
        """Releases clients and models."""
        ...
