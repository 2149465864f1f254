"""A slot: the patterns that recognise a fact and how to word it in the third person."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from server.extraction.patterns import LIST_SEPARATOR
from server.extraction.person import to_third_person


@dataclass(frozen=True, slots=True)
class SlotMatch:
    """A recognised fact: its key, its third-person wording and why it was proposed."""

    slot: str
    key: str
    content: str
    reason: str
    topics: tuple[str, ...]
    confidence: float


# Words a fact from what the pattern captured (its named groups), the whole clause and
# the matched span.
Wording = Callable[[dict[str, str], str, str], str]


def template(text: str) -> Wording:
    """Words the fact from the captured groups: "The user lives in {value}."."""

    def word(groups: dict[str, str], clause: str, span: str) -> str:
        value = groups.get("value", "")
        article = "an" if value[:1].lower() in "aeiou" else "a"
        return text.format_map(_Default({**groups, "a": article}))

    return word


def matched_span(groups: dict[str, str], clause: str, span: str) -> str:
    """Words the fact as the user said it, cut to the part the pattern recognised."""
    return to_third_person(span)


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    patterns: tuple[str, ...]
    wording: Wording
    reason: str
    topics: tuple[str, ...] = ()
    # The key; "{value}"/"{rel}" are filled with the slug of the captured group, so
    # allergies and children each get their own key.
    key: str = ""
    confidence: float = 0.9
    # The value may be a list ("peanuts and shellfish"): one fact per item.
    listed: bool = False
    # Words without which no pattern can match (lowercase, regex): a cheap first test,
    # since most clauses state no slot.
    cue: str = ""
    # Captured values that are not this slot's ("I'm Fine" is no name).
    reject: frozenset[str] = frozenset()
    compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    compiled_cue: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", tuple(re.compile(p) for p in self.patterns))
        object.__setattr__(
            self, "compiled_cue", re.compile(self.cue, re.IGNORECASE) if self.cue else None
        )

    def match(self, clause: str) -> list[SlotMatch]:
        if self.compiled_cue is not None and not self.compiled_cue.search(clause):
            return []
        for pattern in self.compiled:
            found = pattern.search(clause)
            if not found:
                continue
            groups = {k: v.strip() for k, v in found.groupdict().items() if v}
            value = groups.get("value", "")
            if value.split(" ")[0] in self.reject:
                continue
            values = LIST_SEPARATOR.split(value) if self.listed else [value]
            return [self._fact({**groups, "value": v}, clause, found.group(0)) for v in values]
        return []

    def _fact(self, groups: dict[str, str], clause: str, span: str) -> SlotMatch:
        if not groups["value"]:
            del groups["value"]
        slugs = {k: slug(v) for k, v in groups.items()}
        return SlotMatch(
            slot=self.name,
            key=(self.key or self.name).format_map(_Default(slugs)),
            content=self.wording(groups, clause, span),
            reason=self.reason,
            topics=self.topics,
            confidence=self.confidence,
        )


class _Default(dict[str, str]):
    def __missing__(self, name: str) -> str:
        return ""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
