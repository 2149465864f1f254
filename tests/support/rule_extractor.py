"""TEMPORARY stand-in until LocalExtractor is merged."""

from __future__ import annotations

import re
from collections.abc import Sequence

from server.extraction.candidates import Candidate, Stance
from server.memory_models import MemoryKind
from server.models import Role, StoredMessage

_CITY = re.compile(r"\bI (?:live in|moved to|just moved to) ([A-Z][a-z]+)")
_NOT_VEG = re.compile(r"\bI'?m not (?:a )?vegetarian", re.I)
_VEG = re.compile(r"\bI'?m (?:a )?vegetarian", re.I)
_LIKE = re.compile(r"\bI (?:love|like|enjoy) ([a-z ]+)", re.I)


class RuleExtractor:
    name = "rules"

    async def extract(self, messages: Sequence[StoredMessage]) -> list[Candidate]:
        out: list[Candidate] = []
        for m in messages:
            if m.role is not Role.USER or m.content.rstrip().endswith("?"):
                continue
            src = (m.id,)
            if city := _CITY.search(m.content):
                out.append(
                    Candidate(
                        f"The user lives in {city.group(1)}.",
                        MemoryKind.FACT,
                        key="home_city",
                        source_message_ids=src,
                    )
                )
            if _NOT_VEG.search(m.content):
                out.append(
                    Candidate(
                        "The user is vegetarian.",
                        MemoryKind.FACT,
                        key="diet",
                        source_message_ids=src,
                        stance=Stance.RETRACT,
                    )
                )
            elif _VEG.search(m.content):
                out.append(
                    Candidate(
                        "The user is vegetarian.",
                        MemoryKind.FACT,
                        key="diet",
                        source_message_ids=src,
                    )
                )
            if like := _LIKE.search(m.content):
                out.append(
                    Candidate(
                        f"The user likes {like.group(1).strip()}.",
                        MemoryKind.SEMANTIC,
                        source_message_ids=src,
                    )
                )
        return out

    async def aclose(self) -> None:
        pass
