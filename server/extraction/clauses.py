"""Cutting a user's message into sentences and clauses, and sorting the clauses.

A clause is what one memory can come from: "Yes, I'm vegetarian, and I'm allergic to
shellfish, so please flag restaurants carefully" holds two facts and a request. Each
clause is sorted as a statement about the user (first person), a detail of their
situation said in the third person ("The exam got moved to February 16"), or nothing
to remember (a question, a request, small talk, a fragment).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from server.extraction.person import word_set

ABBREVIATIONS = word_set(
    "dr mr mrs ms st vs etc approx e.g i.e prof jr sr no tel dept est fig inc ltd co"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})

FIRST_PERSON = re.compile(
    r"\b(?:I|i|I'm|i'm|I've|I'd|I'll|me|my|mine|myself|we|we're|we've|we'd|we'll|us|our|"
    r"ours|ourselves)\b(?!-)",
    re.IGNORECASE,
)
_SUBJECT_AHEAD = r"(?=(?:I|i|I'm|I've|I'd|I'll|i'm|my|My|we|We|we're|We're|our|Our)\b)"
# After a comma these open a question or request ("..., can you help?"); "which" and
# "who" are left out: after a comma they are far more often relative pronouns.
_ASKING = (
    r"(?:please|can you|could you|would you|will you|do you|did you|what|how|"
    r"is there|are there|is it|any (?:ideas|tips|suggestions|advice))\b"
)
# Where a sentence splits into clauses; the separators are kept to rebuild it.
_CLAUSE_SPLIT = re.compile(
    r"(\s*;\s*"
    rf"|,?\s+(?:and|but|so|because|though|although|while|whereas|plus|and so)\s+{_SUBJECT_AHEAD}"
    rf"|,\s+{_SUBJECT_AHEAD}"
    rf"|,\s+(?:so\s+|and\s+|but\s+)?(?={_ASKING})"
    r"|,\s+(?=(?:is|are|does|do|can|could|should|would|will)\s+(?:the|it|there|this|that|you|a|an|my)\b)"
    r"|\s+so\s+(?=please\b))",
    re.IGNORECASE,
)
# Fillers that close a sentence: "i live in leeds btw".
_TRAILER = re.compile(r"[\s,]+(?:btw|by the way|haha+|lol|fyi|tbh|just so you know)\s*$", re.I)
# Interjections and signposts that open a sentence and say nothing about the user.
_OPENER = re.compile(
    r"^(?:(?:yes|yeah|yep|yup|no(?!\s+longer)|nope|ok|okay|oh|ah|well|so|also|and|but|"
    r"actually|honestly|anyway|anyways|btw|by the way|great|good|cool|perfect|sure|right|"
    r"hmm+|um+|uh+|hi|hello|hey|thanks|thank you|sounds good|sounds great|"
    r"sounds amazing|quick update|update|bad news|good news|fyi|oh and|one more thing|"
    r"just so you know|for context|for the record|as I said|like I said|to be honest|tbh|"
    r"in fact|of course|alright|all right|wow|nice|lol|haha|now|oh well)\b[\s,.:!;-]*)+",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^(?:what|how|where|when|which|who|whom|whose|why|is|are|was|were|do|does|did|can|"
    r"could|would|will|should|shall|may|might|have you|has|any|anything|isn't|aren't|"
    r"don't you|won't|wouldn't)\b",
    re.IGNORECASE,
)
_REQUEST_START = re.compile(
    r"^(?:please|pls|kindly|let me|tell me|show me|help me|remind me|give me|send me|find me|"
    r"get me|make me|email me|text me|walk me|teach me|explain|draft|write|book|suggest|"
    r"recommend|decline|accept|cancel|schedule|check|look up|search|list|summarize|"
    r"summarise|translate|keep|add|remove|update|create|plan|compare|go ahead|let's|let us|"
    r"[Ii](?:'d| would) like to (?:speak|talk|know|ask|cancel|return|change|request|report|"
    r"reset|file|make a complaint|get a refund|order)|"
    r"[Ii](?:'d| would| need| want)(?: really)? (?:like |love )?(?:you|u) to)\b",
    re.IGNORECASE,
)
# "Quick question about my timetable", "I have a question": the question comes next.
_ANNOUNCES_QUESTION = re.compile(
    r"^(?:(?:a\s+)?quick\s+question|[Ii]\s+(?:have|had|got)\s+(?:a|another|one\s+more)\s+"
    r"(?:quick\s+)?question)\b",
    re.IGNORECASE,
)
# Words that carry nothing about the user on their own: a clause made only of these
# and function words is small talk ("I'm good, thanks", "I see", "I love that idea").
_EMPTY_WORDS = word_set(
    """
    i i'm i've i'd i'll me my mine myself we we're we've us our you your you're it it's
    that this these those there here so too also just really very quite pretty much lot
    a an the and or but of to in on at for with about from by as if then than now yet
    am is are was were be been being do does did doing done don't didn't doesn't have has
    had will would can could should shall may might must not no yes yeah ok okay sure
    thanks thank cheers fine good great cool nice awesome perfect alright well right
    know think see agree understand guess mean hope try ask let get got go going help
    question idea sounds sound seems seem looks look love like appreciate glad happy sorry
    ready back done wondering curious excited interested maybe probably definitely
    totally absolutely exactly anyway though actually honestly again more bit kind sort
    all any some thing things stuff one way time today tomorrow later soon something
    sense fun makes make check will able tonight later week weekend evening morning wait
    helpful useful amazing brilliant lovely wonderful excellent fantastic clear enough
    fair solved worked works working btw haha lol that's what's here's there's let's day
    night bye goodbye
    """
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|\d[\d,.:/-]*")
FUNCTION_START = word_set(
    "the a an it it's this that that's these those there there's here's what's they they're "
    "they'll he he's she she's "
    "his her its their some every each no all"
)
# Openers of an answer fragment: "About twelve days", "At least 130k", "Mostly the ones...".
_FRAGMENT_START = re.compile(
    r"^(?:about|around|approximately|roughly|at least|at most|mostly|maybe|probably|only|"
    r"just|down to|up to|almost|nearly|over|under|less than|more than|not really|a bit|"
    r"a few|no|yes|either|neither|both|same|second|third|first)\b",
    re.IGNORECASE,
)
# A finite verb that a lexicon can see: auxiliaries, modals, contractions, past forms.
_VERB_CUE = re.compile(
    r"\b(?:is|are|was|were|has|have|had|can|could|will|would|should|must|may|might|"
    r"does|did|got|went|came|made|took|found|gave|left|said|told|began|became|broke|"
    r"bought|brought|fell|felt|kept|lost|met|paid|ran|sent|spent|won|wrote)\b"
    r"|\b\w+(?:'s|'re|'ll|'ve|'d)\b|\b[a-z]{3,}ed\b",
    re.IGNORECASE,
)
# A present-tense verb after a name or a noun: "Emma eats", "the builder, Tomasz, starts".
_PRESENT_S = re.compile(r"(?:\b[A-Z][a-z]+,?|\b(?:the|my|our|a|an)\s+[a-z]+)\s+([a-z]{2,}s)\b")
_NOT_VERBS = word_set("is was has does its this his hers ours yours us less plus")
# "Got my laptop back": a past verb with its subject "I" left out.
_ELIDED_I = re.compile(
    r"^(?:got|did|had|went|made|took|bought|finished|booked|started|signed|passed|failed|"
    r"found|lost|ran|tried|managed|spent|sold|paid|moved|joined|quit|left|received|"
    r"applied|submitted|completed|renewed|visited)\s+(?:my|our|the|a|an|some|it|\d)\b",
    re.IGNORECASE,
)
MONTHS = sorted(
    word_set(
        "january february march april may june july august september october november "
        "december monday tuesday wednesday thursday friday saturday sunday"
    )
)
_SPECIFIC = re.compile(r"\d|\b(?:" + "|".join(m.capitalize() for m in MONTHS) + r")\b")


class ClauseKind(enum.Enum):
    SELF = "self"  # a first-person statement: "I moved to Berlin"
    CONTEXT = "context"  # a third-person detail: "The exam got moved to February 16"
    # A third-person remark that names nothing: "The refund arrived too". Often the
    # answer to the assistant's question, so often evidence, but vaguer on its own.
    REMARK = "remark"
    NOTHING = "nothing"  # a question, request, small talk or fragment


@dataclass(frozen=True, slots=True)
class Clause:
    text: str
    # The connector before it in its sentence (", and "), to rebuild the sentence.
    joiner: str
    kind: ClauseKind
    # The sentence ended in "?": its last clause is a question whatever its words.
    asked: bool = False


def sentences(text: str) -> list[str]:
    """Splits chat text into sentences, keeping "Dr. Okafor" whole."""
    text = text.translate(_APOSTROPHES)
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start()]
        last_word = before.rsplit(None, 1)[-1].rstrip(".").lower() if before.strip() else ""
        if "\n" not in match.group(0) and last_word in ABBREVIATIONS:
            continue
        out.append(before)
        start = match.end()
    out.append(text[start:])
    return [s.strip() for s in out if s.strip()]


def strip_opener(sentence: str) -> str:
    """'Yes, I'm vegetarian' -> "I'm vegetarian"; 'Quick update: my sister' -> 'my sister'."""
    return _OPENER.sub("", sentence).strip()


def clauses(sentence: str) -> list[Clause]:
    asked = sentence.rstrip().endswith("?")
    body = strip_opener(sentence).rstrip(" .!?")
    parts = _merge_bare_subjects(_CLAUSE_SPLIT.split(body))
    out: list[Clause] = []
    # re.split with one group alternates text, separator, text...
    for index in range(0, len(parts), 2):
        text = _TRAILER.sub("", strip_opener(parts[index].strip(" ,")))
        if _ELIDED_I.match(text) and not asked:
            text = "I " + text[0].lower() + text[1:]
        joiner = parts[index - 1] if index else ""
        last = index == len(parts) - 1
        kind = classify(text, asked=asked and last)
        out.append(Clause(text=text, joiner=joiner, kind=kind, asked=asked and last))
    return out


def _merge_bare_subjects(parts: list[str]) -> list[str]:
    """'Me', ' and ', 'my roommate Jess study together' is one clause with two subjects."""
    merged = list(parts)
    index = 0
    while index + 2 < len(merged):
        if _BARE_SUBJECT.match(merged[index].strip(" ,")):
            merged[index : index + 3] = ["".join(merged[index : index + 3])]
        else:
            index += 2
    return merged


_BARE_SUBJECT = re.compile(r"^(?:me|I|you|we|us|him|her|them|my\s+\w+|[A-Z][a-z]+)$", re.IGNORECASE)


def classify(text: str, *, asked: bool = False) -> ClauseKind:
    if (
        not text
        or asked
        or _QUESTION_START.match(text)
        or _REQUEST_START.match(text)
        or _ANNOUNCES_QUESTION.search(text)
    ):
        return ClauseKind.NOTHING
    words = _WORD.findall(text)
    if FIRST_PERSON.search(text):
        return ClauseKind.SELF if has_content(words) else ClauseKind.NOTHING
    if len(words) < 4 or _FRAGMENT_START.match(text) or not has_content(words):
        return ClauseKind.NOTHING
    if not _has_verb(text):
        return ClauseKind.NOTHING
    if _is_specific(text, words):
        return ClauseKind.CONTEXT
    return ClauseKind.REMARK if len(words) >= 5 else ClauseKind.NOTHING


def has_content(words: list[str]) -> bool:
    return any(w.lower() not in _EMPTY_WORDS for w in words)


def _has_verb(text: str) -> bool:
    """A sentence and not a list of nouns ("SQL and Python mostly")."""
    if _VERB_CUE.search(text):
        return True
    return any(m.group(1) not in _NOT_VERBS for m in _PRESENT_S.finditer(text))


def _is_specific(text: str, words: list[str]) -> bool:
    """A third-person detail worth keeping names something: a number, a date, a name."""
    if _SPECIFIC.search(text):
        return True
    first, rest = words[0], words[1:]
    if first[:1].isupper() and first.lower() not in FUNCTION_START:
        return True
    return any(w[:1].isupper() for w in rest)


def rebuild(parts: list[Clause]) -> str:
    """The kept clauses of one sentence, joined by their own connectors."""
    text = ""
    for clause in parts:
        text = clause.text if not text else text + clause.joiner + clause.text
    return text
