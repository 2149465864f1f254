"""The fact slots the local extractor recognises: one table entry per slot.

A slot turns a first-person clause ("I moved to Berlin last year") into a keyed fact
("home_city": "The user lives in Berlin."). Two statements of the same slot share a
key, so the reconciler supersedes the older one. Adding a slot is one `Slot(...)` in
SLOTS: a name, the patterns that recognise it (built from patterns.py), and how to
word the fact (slot_rules.py).
"""

from __future__ import annotations

import re

from server.extraction.patterns import (
    ADV,
    ANIMAL,
    CAP,
    CHILD,
    DATE,
    DEGREE,
    DIETS,
    END,
    ITEMS,
    JOBS,
    NAME,
    NOT_NAMES,
    NOT_PLACES,
    NOT_SUBJECTS,
    PARENT,
    PARTNER,
    PLACE,
    PROPER,
    SELF,
    SELF_BE,
    SELF_OR_WE,
    SIBLING,
    SUBJECT,
)
from server.extraction.person import to_third_person
from server.extraction.slot_rules import Slot, SlotMatch, matched_span, template


def _relation(groups: dict[str, str], clause: str, span: str) -> str:
    """A family member or pet: their age or naming is the fact, anything else about
    them ("my wife Leyla wants an induction hob") is left to the semantic memory."""
    if re.search(r"\b(?:is|turned|turns|was born|will be)\s+(?:\w+\s+)?\d", clause):
        return to_third_person(clause)
    rel = groups["rel"].lower()
    name = groups.get("value")
    a = "an" if rel[:1] in "aeiou" else "a"
    return f"The user has {a} {rel} named {name}." if name else f"The user has {a} {rel}."


def _capitalised_place(groups: dict[str, str], clause: str, span: str) -> str:
    return f"The user lives in {groups['value'].capitalize()}."


def _contact_wording(groups: dict[str, str], clause: str, span: str) -> str:
    value = groups["value"].lower()
    channel = next((c for w, c in _CHANNELS if w in value), value)
    return f"The user prefers to be contacted by {channel}."


_CHANNELS = (
    ("call", "phone"),
    ("phone", "phone"),
    ("mail", "email"),
    ("text", "text message"),
    ("whatsapp", "WhatsApp"),
)


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
            rf"{SELF_OR_WE}(?:'m|'re|\s+am|\s+are)?\s+{ADV}(?:live|living|reside|residing)\s+in\s+(?P<value>{PLACE})",
            rf"{SELF_OR_WE}(?:'ve|\s+have)?\s+{ADV}(?:moved|relocated)\s+(?:back\s+)?(?:home\s+)?to\s+(?P<value>{PLACE})",
            rf"{SELF_BE}\s+{ADV}based\s+(?:in|out\s+of)\s+(?P<value>{PLACE})",
        ),
        template("The user lives in {value}."),
        "user stated their home city",
        ("location",),
        cue=r"live|living|resid|moved|relocated|based",
    ),
    Slot(
        # Chat is often lowercase ("i live in leeds btw"): a lone lowercase word that
        # ends the clause is taken as a place, less surely, unless it is a common noun.
        "home_city",
        (
            rf"{SELF_OR_WE}(?:'m|'re|\s+am|\s+are)?\s+{ADV}(?:live|living|based)\s+in\s+"
            rf"(?!{NOT_PLACES})(?P<value>[a-z]{{3,}})\s*$",
        ),
        _capitalised_place,
        "user stated their home city",
        ("location",),
        confidence=0.7,
        cue=r"live|living|resid|moved|relocated|based",
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
        cue=r"from|grew up|born",
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
        cue=r"address",
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
        cue=r"time",
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
        cue=r"vegetarian|vegan|pesc|gluten|dairy|lactose|keto|paleo|halal|kosher|plant|flexitarian|low-carb|carnivore|meat|animal",
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
        cue=r"allerg",
    ),
    Slot(
        "intolerance",
        (rf"{SELF_BE}\s+{ADV}(?P<value>lactose|gluten|fructose|histamine)[\s-]intolerant",),
        template("The user is {value} intolerant."),
        "user stated a food intolerance",
        ("health", "food"),
        key="intolerance:{value}",
        cue=r"intolerant",
    ),
    Slot(
        "name",
        (
            rf"\b[Mm]y\s+name(?:\s+is|'s)\s+(?P<value>{NAME})",
            rf"\b(?i:call\s+me)\s+(?P<value>{NAME})\b",
            rf"{SELF}\s+go\s+by\s+(?P<value>{NAME})",
        ),
        template("The user's name is {value}."),
        "user stated their name",
        ("identity",),
        reject=NOT_NAMES,
    ),
    Slot(
        "name",
        (r"^(?:[Ii]'m|[Ii]\s+am)\s+(?P<value>[A-Z][a-z]+)$",),
        template("The user's name is {value}."),
        "user introduced themselves",
        ("identity",),
        confidence=0.7,
        reject=NOT_NAMES,
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
        cue=r"\d",
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
        cue=r"birthday|born",
    ),
    Slot(
        "occupation",
        (
            rf"{SELF_BE}\s+(?:now\s+|currently\s+|still\s+)?(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,3}}?(?:{JOBS}))\b(?!\s+(?:role|job|position))",
            rf"{SELF}\s+{ADV}work\s+as\s+(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,3}}?[\w-]+){END}",
            rf"{SELF}\b(?:(?!want|like|hope|plan|wish|would|looking|dream|become)(?:[^,;]|(?<=\d),(?=\d)))*\bas\s+(?:a|an)\s+(?P<value>(?:[\w-]+\s+){{0,2}}?(?:{JOBS}))\b",
        ),
        template("The user is {a} {value}."),
        "user stated their occupation",
        ("work",),
        cue=r" a | an ",
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
        cue=r" at | for | by | joined",
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
        cue=r"role|job|position|career|work as|start as|become|be a",
    ),
    Slot(
        "work_arrangement",
        (
            rf"{SELF}(?:'m|\s+am)?\s+{ADV}(?:only\s+)?(?:want|prefer|need|looking\s+for)\s+(?:a\s+|only\s+)?(?:fully\s+)?(?P<value>remote|hybrid|on-site|onsite|in-office|part-time|full-time)\s+(?:jobs?|roles?|work|positions?)",
        ),
        template("The user wants {value} work."),
        "user stated the work arrangement they want",
        ("work", "career"),
        cue=r"remote|hybrid|site|office|part-time|full-time",
    ),
    Slot(
        "income",
        (
            rf"{SELF}\s+{ADV}(?:make|earn|take\s+home|get\s+paid|bring\s+in)\s+(?:about\s+|around\s+|roughly\s+)?[$€£]?\d[\d,.]*(?:\s?[kK]\b|\s+(?:dollars|euros|pounds|bucks))?(?:\s+(?:a|per)\s+(?:month|year|week|hour))?",
        ),
        matched_span,
        "user stated their income",
        ("money",),
        cue=r"make|earn|take home|paid|bring in",
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
        cue=r"stud|major|degree|master|phd|bachelor",
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
        cue=r"learning",
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
        cue=r"learn",
    ),
    Slot(
        "focus_time",
        (rf"{SELF}\s+{ADV}(?:focus|study|concentrate|work)\s+(?:best|better)\s+[^,;]+",),
        matched_span,
        "user stated when they work best",
        ("schedule", "learning"),
        cue=r"best|better",
    ),
    Slot(
        "language",
        (
            rf"{SELF}\s+{ADV}speak\s+(?P<value>{CAP}(?:(?:,\s*|\s+and\s+){CAP})*)",
            rf"{SELF_BE}\s+{ADV}(?:fluent|native)\s+in\s+(?P<value>{CAP}(?:(?:,\s*|\s+and\s+){CAP})*)",
            rf"{SELF_BE}\s+(?:a\s+)?native\s+(?P<value>{CAP})\s+speaker",
            rf"\b[Mm]y\s+(?:native|first|mother)\s+(?:language|tongue)\s+is\s+(?P<value>{CAP})",
        ),
        template("The user speaks {value}."),
        "user stated the languages they speak",
        ("language",),
        cue=r"speak|language|tongue|fluent|native",
    ),
    Slot(
        "contact_channel",
        (
            r"(?i:\b(?P<value>text|e-?mail|call|phone|message|whatsapp)\s+me\s+"
            r"(?:instead|rather|only|preferably))\b",
            r"(?i:\b(?:contact|reach|email|text|message|call)\s+me\s+(?:by|via|through|on|over))\s+"
            r"(?P<value>(?i:e-?mail|phone|text|sms|whatsapp|telegram|slack|signal))",
            rf"{SELF}(?:'d|\s+would)?\s+{ADV}prefer\s+(?:to\s+be\s+contacted\s+)?(?:by\s+|via\s+|a\s+)?(?P<value>(?i:e-?mail|phone(?:\s+call)?|call(?:\s?back)?|text(?:\s+messages?)?|sms))\b",
        ),
        _contact_wording,
        "user stated how they want to be contacted",
        ("contact",),
        cue=r"contact|reach|mail|text|message|call|phone|sms",
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
        cue=r"wife|husband|partner|friend|fianc|spouse",
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
        cue=r"son|daughter|kid|child|baby|boy|girl",
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
        cue=r"sister|brother|twin",
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
        cue=r"mom|mum|mother|dad|father",
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
        cue=r"named|called|dog|cat|pupp|kitten|rabbit|bunny|hamster|parrot|bird|horse|hound|lab|retriever|terrier|poodle|beagle|spaniel|collie|shepherd|bulldog|dachshund|husky|pug|pig|turtle|tortoise|snake|lizard|gecko|ferret",
    ),
)


def match_slots(clause: str) -> tuple[SlotMatch, ...]:
    """Every slot the clause states, each once ("I'm a vegan nurse": diet, occupation)."""
    found: dict[str, list[SlotMatch]] = {}
    for slot in SLOTS:
        if slot.name in found:
            continue
        matches = slot.match(clause)
        if matches:
            found[slot.name] = matches
    return tuple(m for matches in found.values() for m in matches)


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
