"""The default extractor: rules over the user's own words, no network and no model.

Only user messages are read. Each is cut into clauses (clauses.py); a first-person
clause that states a known slot becomes a keyed fact (slots.py), a withdrawal ("I'm not
vegetarian any more", "forget that I live in Berlin") a RETRACT candidate, and what is
left of the sentence a semantic memory in the third person (person.py). Third-person
details of the user's situation ("The exam got moved to February 16") are kept too, at
low confidence, because a transcript's evidence often lies in them.

Why rules and not a parser: with spaCy's small English pipeline deciding sentence ends,
finite verbs and named things instead of the lexicon, the labelled sets score the same
or lower and the extractor runs about 50 times slower (bench/extraction_spacy.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace

from server.extraction.candidates import Candidate, Stance
from server.extraction.clauses import (
    FIRST_PERSON,
    FUNCTION_START,
    Clause,
    ClauseKind,
    clauses,
    rebuild,
    sentences,
)
from server.extraction.patterns import PROPER
from server.extraction.person import to_third_person, word_set
from server.extraction.slot_rules import SlotMatch
from server.extraction.slots import match_slots, slot_named
from server.memory_models import MemoryKind
from server.models import Role, StoredMessage

# Above this many characters of user text a batch runs in a worker thread: the rules
# take about 0.4 ms of CPU for a chat message (bench/extraction_quality.py), so a batch
# of one or two messages costs less than the hop to a thread and runs inline.
INLINE_CHARS = 400

# How sure the extractor is, by what it recognised. The reconciler drops weak ones.
FACT_CONFIDENCE = 0.9
RETRACT_CONFIDENCE = 0.9
DENIAL_CONFIDENCE = 0.75  # "I'm not vegetarian": no word says it used to be true
PREFERENCE_CONFIDENCE = 0.8
STATEMENT_CONFIDENCE = 0.7
CONTEXT_CONFIDENCE = 0.5
REMARK_CONFIDENCE = 0.4
HEDGE_PENALTY = 0.15

_WITHDRAWAL = re.compile(
    r"\b(?:any\s?more|no\s+longer|not\s+\w+\s+after\s+all)\b"
    r"|^(?:please\s+)?(?:forget|ignore|disregard|scratch)\b",
    re.IGNORECASE,
)
_FORGET = re.compile(
    r"^(?:please\s+)?(?:forget|ignore|disregard|scratch)\s+(?:about\s+|that\s+|what\s+I\s+said\s+"
    r"about\s+|the\s+(?:part|bit)\s+about\s+)?(?:the\s+fact\s+that\s+)?",
    re.IGNORECASE,
)
# Undoing a negation gives the statement being withdrawn or denied.
_UNNEGATE = (
    (re.compile(r"\s*\bany\s?more\b", re.I), ""),
    (re.compile(r"\s*\bafter\s+all\b", re.I), ""),
    # "I'm not in Edinburgh any more" withdraws a home, not a visit.
    (
        re.compile(r"\b(?:I'm|I\s+am)\s+(?:not|no\s+longer)\s+(?:living\s+)?in\s+(?=[A-Z])"),
        "I live in ",
    ),
    (re.compile(r"\b(I'm|I\s+am|I\s+was)\s+(?:not|no\s+longer)\s+", re.I), r"\1 "),
    (re.compile(r"\b(I)\s+no\s+longer\s+", re.I), r"\1 "),
    (re.compile(r"\b(I)\s+(?:don't|do\s+not|didn't|did\s+not|never)\s+", re.I), r"\1 "),
    (re.compile(r"\b(I)\s+(?:haven't|have\s+not)\s+", re.I), r"\1 have "),
    (
        re.compile(r"\b(my\s+[\w\s]+?)\s+(?:is|are)(?:n't|\s+not|\s+no\s+longer)\s+", re.I),
        r"\1 is ",
    ),
)
_LEFT_JOB = re.compile(
    rf"\b[Ii]\s+(?:just\s+|recently\s+|finally\s+)?(?:quit|left)\s+(?:my\s+(?:job|position|role)\s+at\s+)?(?P<value>{PROPER})"
)
_NEGATION = re.compile(r"\b(?:not|n't|never|no\s+longer)\b", re.IGNORECASE)
_HEDGE = re.compile(
    r"\b(?:maybe|perhaps|probably|might|I\s+think|I\s+guess|kind\s+of|sort\s+of)\b", re.I
)
_PREFERENCE = re.compile(
    r"\b(?:prefer|love|like|enjoy|hate|dislike|can't\s+stand|want|need|plan|hope|always|"
    r"never|usually|favou?rite|goal|trying\s+to|going\s+to|would\s+love|'d\s+love|'d\s+like)\b",
    re.IGNORECASE,
)
_TOPIC_TRIGGERS = (
    (
        re.compile(r"\b(?:prefer|love|like|enjoy|hate|dislike|can't stand|favou?rite)\b", re.I),
        "preference",
    ),
    (
        re.compile(
            r"\b(?:want|plan(?:ning)? to|hope|goal|going to|trying to|'d love|'d like"
            r"|would like)\b",
            re.I,
        ),
        "goal",
    ),
)
# Capitalised words past the first: names, places, products ("Kyoto", "Aero X2", "SN1").
_PROPER_NOUN = re.compile(r"(?<!^)(?<![.!?:]\s)\b([A-Z][\w-]*(?:\s+[A-Z0-9][\w-]*)*)")
_NOT_TOPICS = word_set("i i'm i've i'd i'll dr mr mrs ms prof")


class LocalExtractor:
    """Rule-based extraction of what a user says about themselves. Stateless and cheap."""

    name = "local"

    async def extract(self, messages: Sequence[StoredMessage]) -> list[Candidate]:
        size = sum(len(m.content) for m in messages if m.role == Role.USER)
        if size <= INLINE_CHARS:
            return extract_candidates(messages)
        return await asyncio.to_thread(extract_candidates, messages)

    async def aclose(self) -> None:
        """Nothing to release: the rules hold no clients or models."""


def extract_candidates(messages: Sequence[StoredMessage]) -> list[Candidate]:
    """Candidates from the user's messages, oldest first, duplicates merged."""
    found: list[Candidate] = []
    for message in messages:
        if message.role != Role.USER:
            continue
        found.extend(from_text(message.content, message_id=message.id))
    return merge_duplicates(found)


def from_text(text: str, *, message_id: str) -> list[Candidate]:
    out: list[Candidate] = []
    for sentence in sentences(text):
        out.extend(_from_sentence(sentence, (message_id,) if message_id else ()))
    return out


def _from_sentence(sentence: str, ids: tuple[str, ...]) -> list[Candidate]:
    out: list[Candidate] = []
    leftover: list[Clause] = []
    for clause in clauses(sentence):
        if _FORGET.match(clause.text) and not clause.asked:
            out.extend(_retraction(clause.text, ids) or [])
            continue
        if clause.kind is ClauseKind.NOTHING:
            # A request can still state a fact: "please contact me by email".
            if not clause.asked:
                out.extend(_facts(clause.text, ids, only_requests=True))
            continue
        if clause.kind is ClauseKind.SELF:
            handled = _retraction(clause.text, ids)
            if handled is None:
                handled = _facts(clause.text, ids)
            if handled:
                out.extend(handled)
                continue
        leftover.append(clause)
    if leftover:
        semantic = _semantic(leftover, ids)
        if semantic:
            out.append(semantic)
    return out


def _facts(text: str, ids: tuple[str, ...], *, only_requests: bool = False) -> list[Candidate]:
    matches = list(match_slots(text))
    if only_requests:
        matches = [m for m in matches if m.slot == "contact_channel"]
    facts = [_fact(m, ids) for m in matches]
    if not only_requests and facts and _has_more_to_say(text, matches):
        # "My wife Leyla wants an induction hob": the name is a fact, the wish is not.
        more = _semantic([Clause(text, "", ClauseKind.SELF)], ids)
        if more:
            facts.append(more)
    return facts


def _fact(match: SlotMatch, ids: tuple[str, ...]) -> Candidate:
    return Candidate(
        content=match.content,
        kind=MemoryKind.FACT,
        key=match.key,
        topics=_slot_topics(match),
        source_message_ids=ids,
        reason=match.reason,
        confidence=match.confidence,
    )


def _slot_topics(match: SlotMatch) -> tuple[str, ...]:
    return tuple(dict.fromkeys((match.slot, *match.topics)))


def _has_more_to_say(text: str, matches: list[SlotMatch]) -> bool:
    """True when the relation slots named someone but the clause says more about them."""
    if not all(m.slot in {"partner", "child", "sibling", "parent", "pet"} for m in matches):
        return False
    return not any(m.content == to_third_person(text) for m in matches)


def _retraction(text: str, ids: tuple[str, ...]) -> list[Candidate] | None:
    """RETRACT candidates for a withdrawal or denial, or None when the clause is neither.

    "I don't eat meat" is an assertion of a diet, not a withdrawal: slots that state a
    negative are tried first by the caller's order (see `_negative_assertion`).
    """
    left = _LEFT_JOB.search(text)
    if left:
        return [
            Candidate(
                content=f"The user works at {left.group('value')}.",
                kind=MemoryKind.FACT,
                key="employer",
                topics=("employer", "work"),
                source_message_ids=ids,
                stance=Stance.RETRACT,
                reason="user withdrew: stated they left their employer",
                confidence=RETRACT_CONFIDENCE,
            )
        ]
    withdrawal = bool(_WITHDRAWAL.search(text))
    if not withdrawal and not _NEGATION.search(text):
        return None
    if _negative_assertion(text):
        return None
    positive = _positive(text)
    matches = match_slots(positive)
    if matches:
        confidence = RETRACT_CONFIDENCE if withdrawal else DENIAL_CONFIDENCE
        return [
            Candidate(
                content=m.content,
                kind=MemoryKind.FACT,
                key=m.key,
                topics=_slot_topics(m),
                source_message_ids=ids,
                stance=Stance.RETRACT,
                reason=f"user withdrew: {m.reason.removeprefix('user ')}",
                confidence=confidence,
            )
            for m in matches
        ]
    if not withdrawal:
        return None  # "I'm not comfortable flashing the BIOS": a statement, kept as one
    key = slot_named(positive)
    if positive and not FIRST_PERSON.search(positive):
        # "ignore what I said about the email address": name the topic, not a claim.
        positive = positive[0].lower() + positive[1:]
        content = f"What the user said about {positive.rstrip('.')}."
    else:
        content = to_third_person(positive) if positive else ""
    retract = Candidate(
        content=content,
        kind=MemoryKind.FACT if key else MemoryKind.SEMANTIC,
        key=key,
        topics=(key,) if key else (),
        source_message_ids=ids,
        stance=Stance.RETRACT,
        reason="user withdrew an earlier statement",
        confidence=RETRACT_CONFIDENCE if key else STATEMENT_CONFIDENCE,
    )
    if _FORGET.match(text) or key:
        return [retract] if content else []
    # "I don't drink coffee any more": the old habit goes, the new state is worth keeping.
    current = _semantic([Clause(text, "", ClauseKind.SELF)], ids)
    return [retract, current] if current else [retract]


def _negative_assertion(text: str) -> bool:
    """A slot stated in the negative: "I don't eat meat (any more)" is a diet."""
    return any(m.slot == "diet" for m in match_slots(text))


def _positive(text: str) -> str:
    """The statement a withdrawal takes back, up to its first comma: "forget my old
    address, it's not valid any more" takes back "my old address"."""
    positive = _FORGET.sub("", text).split(",")[0]
    for pattern, replacement in _UNNEGATE:
        positive = pattern.sub(replacement, positive)
    return positive.strip(" ,")


def _semantic(parts: list[Clause], ids: tuple[str, ...]) -> Candidate | None:
    text = rebuild(parts)
    if not text:
        return None
    own = any(c.kind is ClauseKind.SELF for c in parts)
    if own:
        content = to_third_person(text)
        preference = bool(_PREFERENCE.search(text))
        confidence = PREFERENCE_CONFIDENCE if preference else STATEMENT_CONFIDENCE
        reason = (
            "user stated a preference or goal"
            if preference
            else "user stated something about themselves"
        )
    else:
        content = _reported(text)
        specific = any(c.kind is ClauseKind.CONTEXT for c in parts)
        confidence = CONTEXT_CONFIDENCE if specific else REMARK_CONFIDENCE
        reason = "user mentioned a detail of their situation"
    if _HEDGE.search(text):
        confidence -= HEDGE_PENALTY
    return Candidate(
        content=content,
        kind=MemoryKind.SEMANTIC,
        topics=_topics(text),
        source_message_ids=ids,
        reason=reason,
        confidence=round(confidence, 2),
    )


def _reported(text: str) -> str:
    """A third-person detail as something the user said."""
    first, _, rest = text.partition(" ")
    if first.lower() in FUNCTION_START:
        text = first.lower() + (" " + rest if rest else "")
    body = to_third_person(text)
    if text[:1].islower():
        body = body[:1].lower() + body[1:]
    return f"The user said that {body}"


def _topics(text: str) -> tuple[str, ...]:
    topics = [label for pattern, label in _TOPIC_TRIGGERS if pattern.search(text)]
    for name in _PROPER_NOUN.findall(text):
        if name.lower() not in _NOT_TOPICS and name.lower() not in topics:
            topics.append(name.lower())
    return tuple(topics[:5])


def merge_duplicates(found: Iterable[Candidate]) -> list[Candidate]:
    """One candidate per (stance, key, content), with every message that stated it.

    A repeated statement moves to its latest place: order is what the reconciler
    replays, so "Berlin, Lisbon, Berlin again" must end on Berlin.
    """
    merged: dict[tuple[Stance, str, str], Candidate] = {}
    for candidate in found:
        ident = (candidate.stance, candidate.key, candidate.content.lower())
        seen = merged.get(ident)
        if seen is None:
            merged[ident] = candidate
            continue
        ids = seen.source_message_ids + tuple(
            i for i in candidate.source_message_ids if i not in seen.source_message_ids
        )
        del merged[ident]
        merged[ident] = replace(
            seen, source_message_ids=ids, confidence=max(seen.confidence, candidate.confidence)
        )
    return list(merged.values())
