"""The fact slots the local extractor recognises: one table entry per slot.

A slot turns a first-person clause ("I moved to Berlin last year") into a keyed fact
("home_city": "The user lives in Berlin."). Two statements of the same slot share a
key, so the reconciler supersedes the older one. Adding a slot is one `Slot(...)` in
SLOTS: a name, the patterns that recognise it, and how to word the fact.

Patterns run on the clause as the user wrote it (apostrophes straightened). Parts that
must be case-insensitive say so inline with (?i:...); captured names and places must be
capitalised, which is what keeps "I live in the city centre" from becoming a home city.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from server.extraction.person import to_third_person, word_set

# Building blocks. The pronoun "I" is matched in either case: chat is often lowercase.
SELF = r"\b[Ii]"
SELF_BE = r"\b[Ii](?:'m|\s+am)"
ADV = r"(?:(?:just|now|currently|still|recently|finally|also|really|actually|already)\s+)*"
CAP = r"[A-Z][\w'.&-]*"
# A capitalised name of a place or organisation: "Berlin", "New York", "Rio de Janeiro".
# Lowercase joiners are few on purpose: "on" would make "Wise on Monday" an employer.
PROPER = rf"{CAP}(?:[ -](?:de|del|da|do|am|upon|of|&)(?=[ -]?[A-Z]))*(?:[ -]{CAP})*"
# A place, possibly described: "a small town in Vermont".
PLACE = rf"(?:(?:a|an|the)\s+(?:[a-z-]+\s+){{0,3}}?(?:in|near|outside(?:\s+of)?)\s+)?{PROPER}"
NAME = r"[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?"
END = r"(?=$|[,.;:!?)]|\s+(?:and|but|so|because|since|though|too|as well)\b)"

DIETS = (
    "vegetarian|vegan|pescatarian|pescetarian|gluten-free|dairy-free|lactose-free|keto|"
    "paleo|halal|kosher|plant-based|flexitarian|low-carb|carnivore"
)
JOBS = (
    "engineer|developer|analyst|designer|teacher|nurse|doctor|student|manager|scientist|"
    "accountant|lawyer|attorney|consultant|programmer|writer|researcher|architect|chef|"
    "cook|pharmacist|dentist|electrician|plumber|mechanic|pilot|driver|barista|cashier|"
    "salesperson|recruiter|freelancer|contractor|lecturer|professor|tutor|therapist|"
    "paramedic|firefighter|technician|administrator|assistant|editor|journalist|"
    "photographer|artist|musician|marketer|intern|specialist|coordinator|director|founder|"
    "cleaner|carpenter|farmer|veterinarian|vet|economist|statistician|physician|surgeon|"
    "midwife|caregiver|librarian|clerk|secretary|receptionist|translator|chemist|"
    "biologist|physicist|mathematician|officer|executive|entrepreneur|retiree|pensioner|"
    "paralegal|psychologist|social worker|police officer|soldier|waiter|waitress|"
    "bartender|baker|butcher|hairdresser|trainer|coach|sysadmin|devops engineer"
)
CHILD = "son|daughter|kid|child|baby|boy|girl|stepson|stepdaughter"
PARTNER = "wife|husband|partner|girlfriend|boyfriend|fiancee|fiance|fiancée|fiancé|spouse"
SIBLING = "sister|brother|twin"
PARENT = "mom|mum|mother|dad|father|stepmom|stepdad"
ANIMAL = (
    r"(?:[\w-]+\s+){0,2}?(?:dog|cat|puppy|kitten|rabbit|bunny|hamster|parrot|bird|horse|"
    r"greyhound|labrador|retriever|terrier|poodle|beagle|spaniel|collie|shepherd|bulldog|"
    r"dachshund|husky|pug|guinea pig|turtle|tortoise|snake|lizard|gecko|ferret)"
)
MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
DATE = rf"(?:(?:{_DAY}\s+(?:of\s+)?{MONTH}|{MONTH}\s+{_DAY})(?:,?\s+\d{{4}})?)"
_JOINER = r"(?:and|or|so|but|too|as|since|because|which|that|though|when|if)\b"
_ITEM = rf"[\w-]+(?:\s(?!{_JOINER})[\w-]+)?"
# "peanuts", "tree nuts", "peanuts, eggs and shellfish".
ITEMS = rf"(?:{_ITEM}(?:,\s*{_ITEM})*,?\s+(?:and|or)\s+{_ITEM}|{_ITEM})"
_LIST_SEPARATOR = re.compile(r",?\s+(?:and|or)\s+|,\s*")
DEGREE = r"(?:degree|master's|masters|PhD|bachelor's)"
SUBJECT = r"[\w -]+?"
# "I study best in the morning" says when, not what.
NOT_SUBJECTS = r"(?:best|better|hard|well|for|at|in|on|with|every|each|alone|late|early)\b"
# "I'm X" is a name only when X is not one of these.
NOT_NAMES = word_set(
    "Fine Good Great Ok Okay Sorry Back Here Ready Done Sure Busy Tired Happy Excited "
    "Vegan Vegetarian Not Also Just Still So Very Really Glad Home Free New"
)


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


def _relation(groups: dict[str, str], clause: str, span: str) -> str:
    """A family member or pet: their age or naming is the fact, anything else about
    them ("my wife Leyla wants an induction hob") is left to the semantic memory."""
    if re.search(r"\b(?:is|turned|turns|was born|will be)\s+(?:\w+\s+)?\d", clause):
        return to_third_person(clause)
    rel = groups["rel"].lower()
    name = groups.get("value")
    a = "an" if rel[:1] in "aeiou" else "a"
    return f"The user has {a} {rel} named {name}." if name else f"The user has {a} {rel}."


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
    compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", tuple(re.compile(p) for p in self.patterns))

    def match(self, clause: str) -> list[SlotMatch]:
        for pattern in self.compiled:
            found = pattern.search(clause)
            if not found:
                continue
            groups = {k: v.strip() for k, v in found.groupdict().items() if v}
            value = groups.get("value", "")
            if self.name == "name" and value.split(" ")[0] in NOT_NAMES:
                continue
            values = _LIST_SEPARATOR.split(value) if self.listed else [value]
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


def _contact_wording(groups: dict[str, str], clause: str, span: str) -> str:
    value = groups["value"].lower()
    channel = next((c for w, c in _CHANNELS if w in value), value)
    return f"The user prefers to be contacted by {channel}."


_CHANNELS = (("call", "phone"), ("phone", "phone"), ("mail", "email"), ("text", "text message"))


def _diet_wording(groups: dict[str, str], clause: str, span: str) -> str:
    value = groups["value"].lower()
    if value in {"keto", "paleo", "low-carb", "carnivore"}:
        return f"The user follows a {value} diet."
    if value in {"halal", "kosher"}:
        return f"The user eats {value}."
    if value in {"meat", "any meat", "animal products"}:
        return f"The user doesn't eat {value}."
    return f"The user is {value}."


SLOTS: tuple[Slot, ...] = (
    Slot(
        "home_city",
        (
            rf"{SELF}(?:'m|\s+am)?\s+{ADV}(?:live|living|reside|residing)\s+in\s+(?P<value>{PLACE})",
            rf"{SELF}(?:'ve|\s+have)?\s+{ADV}(?:moved|relocated)\s+(?:back\s+)?(?:home\s+)?to\s+(?P<value>{PLACE})",
            rf"{SELF_BE}\s+{ADV}based\s+(?:in|out\s+of)\s+(?P<value>{PLACE})",
        ),
        template("The user lives in {value}."),
        "user stated their home city",
        ("location",),
    ),
    Slot(
        "origin",
        (
            rf"{SELF_BE}\s+(?:originally\s+)?from\s+(?P<value>{PROPER})",
            rf"{SELF}\s+grew\s+up\s+in\s+(?P<value>{PLACE})",
            rf"{SELF}\s+was\s+born\s+in\s+(?P<value>{PROPER})",
        ),
        template("The user is originally from {value}."),
        "user stated where they are from",
        ("location",),
    ),
    Slot(
        "address",
        (
            r"\b[Mm]y\s+(?:new\s+|home\s+|shipping\s+|current\s+)?address\s+"
            r"(?:is\s+(?:now\s+)?|changed[^,]*,\s*it'?s\s+(?:now\s+)?)(?P<value>\d[^;!?]*?)\s*$",
        ),
        template("The user's address is {value}."),
        "user stated their address",
        ("location",),
    ),
    Slot(
        "timezone",
        (
            r"\b[Mm]y\s+time\s*zone\s+is\s+(?P<value>[\w+:/-]+(?:\s[\w+:/-]+)?)",
            rf"{SELF_BE}\s+(?:in|on)\s+(?:the\s+)?(?P<value>{CAP}(?:\s{CAP})?)\s+(?:time\s*zone|time)\b",
            rf"{SELF_BE}\s+(?:in|on)\s+(?P<value>(?:UTC|GMT)\s?[+-]\s?\d{{1,2}}(?::\d\d)?)",
        ),
        template("The user's timezone is {value}."),
        "user stated their timezone",
        ("schedule",),
    ),
    Slot(
        "diet",
        (
            rf"{SELF_BE}\s+(?:(?:a|now|strictly|fully|mostly|also)\s+)*(?P<value>{DIETS})\b(?!\s+(?:food|restaurant|place|option))",
            rf"{SELF}\s+{ADV}(?:eat|follow|keep)\s+(?:a\s+)?(?P<value>{DIETS})\b",
            rf"{SELF_BE}\s+on\s+(?:a\s+)?(?P<value>{DIETS})\s+diet",
            rf"{SELF}\s+(?:don't|do\s+not|never)\s+eat\s+(?P<value>meat|any\s+meat|animal\s+products)\b",
        ),
        _diet_wording,
        "user stated their diet",
        ("food", "diet"),
    ),
    Slot(
        "allergy",
        (
            rf"{SELF_BE}\s+(?:(?:very|severely|really|mildly|also|a\s+bit|seriously)\s+)*allergic\s+to\s+(?P<value>{ITEMS})",
            rf"{SELF}\s+have\s+(?:a|an)\s+(?:severe\s+|mild\s+|bad\s+)?(?P<value>[\w-]+(?:\s[\w-]+)?)\s+allergy",
            r"\b[Mm]y\s+(?P<value>[\w-]+)\s+allergy",
        ),
        template("The user is allergic to {value}."),
        "user stated an allergy",
        ("health", "food"),
        key="allergy:{value}",
        listed=True,
    ),
    Slot(
        "intolerance",
        (rf"{SELF_BE}\s+{ADV}(?P<value>lactose|gluten|fructose|histamine)[\s-]intolerant",),
        template("The user is {value} intolerant."),
        "user stated a food intolerance",
        ("health", "food"),
        key="intolerance:{value}",
    ),
    Slot(
        "name",
        (
            rf"\b[Mm]y\s+name\s+is\s+(?P<value>{NAME})",
            rf"\b(?i:call\s+me)\s+(?P<value>{NAME})\b",
            rf"{SELF}\s+go\s+by\s+(?P<value>{NAME})",
        ),
        template("The user's name is {value}."),
        "user stated their name",
        ("identity",),
    ),
    Slot(
        "name",
        (r"^(?:[Ii]'m|[Ii]\s+am)\s+(?P<value>[A-Z][a-z]+)$",),
        template("The user's name is {value}."),
        "user introduced themselves",
        ("identity",),
        confidence=0.7,
    ),
    Slot(
        "age",
        (
            rf"{SELF_BE}\s+(?P<value>\d{{1,2}})(?:\s+years?\s+old|\s+y/?o)?{END}",
            rf"{SELF}\s+{ADV}turned\s+(?P<value>\d{{1,2}})\b",
        ),
        template("The user is {value} years old."),
        "user stated their age",
        ("identity",),
    ),
    Slot(
        "birthday",
        (
            rf"\b[Mm]y\s+birthday\s+is\s+(?:on\s+)?(?P<value>{DATE})",
            rf"{SELF}\s+was\s+born\s+(?:on\s+)?(?P<value>{DATE}|(?:in\s+)?\d{{4}})",
        ),
        matched_span,
        "user stated their birthday",
        ("identity",),
    ),
    Slot(
        "occupation",
        (
            rf"{SELF_BE}\s+(?:now\s+|currently\s+|still\s+)?(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,3}}?(?:{JOBS}))\b(?!\s+(?:role|job|position))",
            rf"{SELF}\s+{ADV}work\s+as\s+(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,3}}?[\w-]+){END}",
            rf"{SELF}\b(?:(?!want|like|hope|plan|wish|would|looking|dream|become)[^,;])*\bas\s+(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,2}}?(?:{JOBS}))\b",
        ),
        template("The user is {a} {value}."),
        "user stated their occupation",
        ("work",),
    ),
    Slot(
        "employer",
        (
            rf"{SELF}\s+{ADV}work\s+(?:full-time\s+|part-time\s+|remotely\s+)?(?:at|for)\s+(?P<value>{PROPER})",
            rf"{SELF_BE}\s+{ADV}(?:employed|working)\s+(?:at|by|for)\s+(?P<value>{PROPER})",
            rf"{SELF}\s+{ADV}(?:joined|started\s+(?:a\s+(?:new\s+)?job\s+)?at)\s+(?P<value>{PROPER})",
        ),
        template("The user works at {value}."),
        "user stated their employer",
        ("work",),
    ),
    Slot(
        "target_role",
        (
            rf"{SELF}(?:'m|'d|\s+am|\s+would)?\s+{ADV}(?:want|looking|like|hoping|trying|applying|planning|aiming)\s+(?:to\s+)?(?:[\w-]+\s+){{0,2}}?(?:into|for|as|to\s+be|become)\s+(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,4}}?[\w-]+)\s+(?:role|job|position|career)s?\b",
            rf"{SELF}(?:'d|\s+would)?\s+{ADV}(?:want|like|hope|plan)\s+to\s+(?:work|start|become|be)\s+(?:as\s+)?(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,3}}?[\w-]+){END}",
        ),
        template("The user wants to work as {a} {value}."),
        "user stated the role they are looking for",
        ("work", "career"),
    ),
    Slot(
        "work_arrangement",
        (
            rf"{SELF}(?:'m|\s+am)?\s+{ADV}(?:only\s+)?(?:want|prefer|need|looking\s+for)\s+(?:a\s+|only\s+)?(?:fully\s+)?(?P<value>remote|hybrid|on-site|onsite|in-office|part-time|full-time)\s+(?:jobs?|roles?|work|positions?)",
        ),
        template("The user wants {value} work."),
        "user stated the work arrangement they want",
        ("work", "career"),
    ),
    Slot(
        "income",
        (
            rf"{SELF}\s+{ADV}(?:make|earn|take\s+home|get\s+paid|bring\s+in)\s+(?:about\s+|around\s+|roughly\s+)?[$€£]?\d[\d,.]*(?:\s?[kK]\b|\s+(?:dollars|euros|pounds|bucks))?(?:\s+(?:a|per)\s+(?:month|year|week|hour))?",
        ),
        matched_span,
        "user stated their income",
        ("money",),
    ),
    Slot(
        "field_of_study",
        (
            rf"{SELF_BE}\s+{ADV}(?:studying|majoring\s+in|doing\s+(?:a|my)\s+{DEGREE}\s+in)\s+"
            rf"(?P<value>{SUBJECT}){END}",
            rf"{SELF}\s+{ADV}(?:study|major\s+in)\s+(?!{NOT_SUBJECTS})(?P<value>{SUBJECT}){END}",
        ),
        template("The user studies {value}."),
        "user stated what they study",
        ("education",),
    ),
    Slot(
        "learning",
        (
            rf"{SELF_BE}\s+{ADV}learning\s+(?P<value>[A-Z][\w+#-]*(?:\s[A-Z][\w+#-]*)?\b|[a-z]+{END})",
        ),
        template("The user is learning {value}."),
        "user stated something they are learning",
        ("education",),
        key="learning:{value}",
    ),
    Slot(
        "learning_style",
        (
            rf"{SELF_BE}\s+(?:a|an)\s+(?P<value>visual|auditory|kinesthetic|kinaesthetic|hands-on|reading/writing)\s+learner",
            rf"{SELF}\s+{ADV}learn\s+(?:best|better|most)\b[^,;]*",
        ),
        matched_span,
        "user stated how they learn best",
        ("learning",),
    ),
    Slot(
        "focus_time",
        (rf"{SELF}\s+{ADV}(?:focus|study|concentrate|work)\s+(?:best|better)\s+[^,;]+",),
        matched_span,
        "user stated when they work best",
        ("schedule", "learning"),
    ),
    Slot(
        "language",
        (
            rf"{SELF}\s+{ADV}speak\s+(?P<value>{CAP}(?:(?:,\s*|\s+and\s+){CAP})*)",
            rf"\b[Mm]y\s+(?:native|first|mother)\s+(?:language|tongue)\s+is\s+(?P<value>{CAP})",
        ),
        template("The user speaks {value}."),
        "user stated the languages they speak",
        ("language",),
    ),
    Slot(
        "contact_channel",
        (
            r"(?i:\b(?:contact|reach|email|text|message|call)\s+me\s+(?:by|via|through|on|over))\s+"
            r"(?P<value>(?i:e-?mail|phone|text|sms|whatsapp|telegram|slack|signal))",
            rf"{SELF}(?:'d|\s+would)?\s+{ADV}prefer\s+(?:to\s+be\s+contacted\s+)?(?:by\s+|via\s+|a\s+)?(?P<value>(?i:e-?mail|phone(?:\s+call)?|call(?:\s?back)?|text(?:\s+messages?)?|sms))\b",
        ),
        _contact_wording,
        "user stated how they want to be contacted",
        ("contact",),
    ),
    Slot(
        "partner",
        (
            rf"\b(?:[Mm]y|[Oo]ur)\s+(?P<rel>{PARTNER})(?:'s\s+name\s+is|,?\s+(?:named|called))?,?\s+(?P<value>{NAME})\b",
            rf"{SELF}\s+(?:have|'ve\s+got)\s+(?:a|an)\s+(?P<rel>{PARTNER})(?:\s+(?:named|called)\s+(?P<value>{NAME}))?",
        ),
        _relation,
        "user stated who their partner is",
        ("family",),
    ),
    Slot(
        "child",
        (
            rf"\b(?:[Mm]y|[Oo]ur)\s+(?P<rel>{CHILD})(?:'s\s+name\s+is|,?\s+(?:named|called))?,?\s+(?P<value>{NAME})\b",
            rf"{SELF}\s+(?:have|'ve\s+got)\s+(?:a|an)\s+(?P<rel>{CHILD})\s+(?:named|called)\s+(?P<value>{NAME})",
        ),
        _relation,
        "user stated a child's name",
        ("family",),
        key="child:{value}",
    ),
    Slot(
        "sibling",
        (
            rf"\b[Mm]y\s+(?:(?:older|younger|little|big|twin)\s+)?(?P<rel>{SIBLING})(?:'s\s+name\s+is|,?\s+(?:named|called))?,?\s+(?P<value>{NAME})\b",
        ),
        _relation,
        "user stated a sibling's name",
        ("family",),
        key="sibling:{value}",
    ),
    Slot(
        "parent",
        (
            rf"\b[Mm]y\s+(?P<rel>{PARENT})(?:'s\s+name\s+is|,?\s+(?:named|called))?,?\s+(?P<value>{NAME})\b",
        ),
        _relation,
        "user stated a parent's name",
        ("family",),
        key="parent:{rel}",
    ),
    Slot(
        "pet",
        (
            rf"\b(?:[Mm]y|[Oo]ur|a|an)\s+(?P<rel>{ANIMAL})\s+(?:named|called)\s+(?P<value>{NAME})\b",
            rf"\b(?:[Mm]y|[Oo]ur)\s+(?P<rel>{ANIMAL}),?\s+(?P<value>{NAME})\b",
        ),
        _relation,
        "user stated a pet's name",
        ("pets",),
        key="pet:{value}",
    ),
)


def match_slots(clause: str) -> list[SlotMatch]:
    """Every slot the clause states, each once ("I'm a vegan nurse": diet, occupation)."""
    found: dict[str, list[SlotMatch]] = {}
    for slot in SLOTS:
        if slot.name in found:
            continue
        matches = slot.match(clause)
        if matches:
            found[slot.name] = matches
    return [m for matches in found.values() for m in matches]


# Words that name a slot in a withdrawal that gives no value: "forget my old address".
SLOT_WORDS: tuple[tuple[str, str], ...] = (
    (r"(?<!mail\s)\baddress\b", "address"),
    (r"\b(?:diet|vegetarian|vegan|pescatarian)\b", "diet"),
    (r"\b(?:home\s*town|city|where I live)\b", "home_city"),
    (r"\btime\s*zone\b", "timezone"),
    (r"\bbirthday\b", "birthday"),
    (r"\bemployer\b", "employer"),
    (r"\b(?:job title|occupation)\b", "occupation"),
    (r"\bname\b", "name"),
)


def slot_named(text: str) -> str:
    """The key of the slot a value-less withdrawal refers to, or ""."""
    for pattern, key in SLOT_WORDS:
        if re.search(pattern, text, re.IGNORECASE):
            return key
    return ""
