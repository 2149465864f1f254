"""First person to third person: "I moved to Berlin" becomes "The user moved to Berlin."

A lexicon, not a tagger: in a user's statement about themselves the word after "I"
(past a few adverbs) is a verb, so agreement needs only to know which verbs are
modal, past or irregular. The first mention of the user is "the user"; later ones are
"they"/"their", which keep the verb's plural form and so need no agreement at all.
"""

from __future__ import annotations

import re


def word_set(text: str) -> frozenset[str]:
    """A lexicon written as whitespace-separated words."""
    return frozenset(text.split())


# Words that may sit between the subject and its verb: "I really dislike".
ADVERBS = word_set(
    """
    really also just only still never always usually often sometimes actually honestly
    finally definitely mostly rarely seriously absolutely totally currently already even
    generally normally probably recently mainly truly barely hardly
    seldom occasionally typically basically literally personally certainly now then
    simply genuinely especially particularly strongly
    """
)

MODALS = word_set(
    """
    can could will would should must may might shall cannot can't couldn't won't
    wouldn't shouldn't mustn't didn't
    """
)

IRREGULAR_PRESENT = {
    "am": "is",
    "have": "has",
    "do": "does",
    "go": "goes",
    "don't": "doesn't",
    "haven't": "hasn't",
    "am not": "is not",
}

IRREGULAR_PAST = word_set(
    """
    was wasn't got went made took had did said saw came knew thought told found gave left
    felt became began bought brought built caught chose drove ate fell flew forgot grew
    heard held kept lost met paid ran rode sang sat slept sold sent spent spoke stood stole
    swam taught tore threw understood woke won wore wrote broke drank shook struck lent
    led lay meant rang rose sought shot sank slid stuck swore swept swung spun bit blew
    bent bled dug dealt dreamt fed fought fled forgave froze hid hung knelt leapt learnt
    lit withdrew underwent overslept misunderstood put read set cut hit quit let hurt cost
    spread shut burnt
    """
)

# Present-tense verbs that end in "ed" like a past tense.
ED_PRESENT = word_set(
    "need feed bleed breed proceed succeed exceed speed seed shed wed embed shred weed"
)


def third_person_singular(verb: str) -> str:
    """'like' -> 'likes', 'am' -> 'is', 'moved' -> 'moved', 'can' -> 'can'."""
    low = verb.lower()
    if low in IRREGULAR_PRESENT:
        return _same_case(IRREGULAR_PRESENT[low], verb)
    if low in MODALS or low in IRREGULAR_PAST or not low.isalpha():
        return verb
    if low.endswith("ed") and low not in ED_PRESENT:
        return verb
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"


def _same_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


# Contractions and pronouns of the first person, longest first so "I'm" wins over "I".
_TOKEN = re.compile(
    r"\b(?:I'm|I've|I'd|I'll|I|me|my|mine|myself|we're|we've|we'd|we'll|we|us|our|ours"
    r"|ourselves)\b(?!-)",
    re.IGNORECASE,
)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})
_WORD = re.compile(r"[A-Za-z'\u2019-]+")
# "I'd" is "I had" before a past participle, "I would" otherwise.
_PARTICIPLE = re.compile(r"(?:\w+ed|been|had|done|gone|seen|got|gotten|made|taken|never)$")
_WE = "the user and others"


def to_third_person(text: str) -> str:
    """Rewrites a first-person clause about the user into a third-person sentence."""
    text = text.translate(_APOSTROPHES).strip()
    out: list[str] = []
    pos = 0
    mentioned = False
    for match in _TOKEN.finditer(text):
        word = match.group(0)
        low = word.lower()
        # "I" is only the pronoun in its capital form; "i" in chat is too, but not "US".
        if word == "US":
            continue
        out.append(text[pos : match.start()])
        rest = text[match.end() :]
        replacement, consumed = _replace(low, rest, mentioned=mentioned)
        at_start = not "".join(out).strip()
        if at_start:
            replacement = replacement[:1].upper() + replacement[1:]
        out.append(replacement)
        pos = match.end() + consumed
        # "we" is not the user alone: a later "I" still needs naming.
        mentioned = mentioned or not low.startswith(("we", "us", "our"))
    out.append(text[pos:])
    sentence = re.sub(r"\s+", " ", "".join(out)).strip()
    sentence = sentence.rstrip(" ,;:-")
    if not sentence:
        return ""
    sentence = sentence[0].upper() + sentence[1:]
    sentence = re.sub(r"[.!]+$", "", sentence)
    return sentence + "."


def _replace(low: str, rest: str, *, mentioned: bool) -> tuple[str, int]:
    """The third-person words for one first-person token, and how much of `rest` they
    also replaced (the verb that had to agree)."""
    subject = "they" if mentioned else "the user"
    if low in {"my", "mine"}:
        if low == "mine":
            return ("theirs" if mentioned else "the user's"), 0
        return ("their" if mentioned else "the user's"), 0
    if low in {"me"}:
        return ("them" if mentioned else "the user"), 0
    if low == "myself":
        return ("themselves" if mentioned else "the user themselves"), 0
    if low in {"our", "ours"}:
        if low == "ours":
            return "theirs", 0
        return ("their" if mentioned else "the user's"), 0
    if low in {"us"}:
        return ("them" if mentioned else _WE), 0
    if low == "ourselves":
        return "themselves", 0
    if low.startswith("we"):
        we = "they" if mentioned else _WE
        tail = {"we're": " are", "we've": " have", "we'd": " would", "we'll": " will"}
        return we + tail.get(low, ""), 0
    # The singular subject.
    if low == "i'm":
        return (subject + (" are" if mentioned else " is")), 0
    if low == "i've":
        return (subject + (" have" if mentioned else " has")), 0
    if low == "i'll":
        return subject + " will", 0
    if low == "i'd":
        words = [w.lower() for w in _WORD.findall(rest)[:3]]
        nxt = next((w for w in words if w not in ADVERBS), "")
        verb = "had" if _PARTICIPLE.match(nxt) else "would"
        return f"{subject} {verb}", 0
    if mentioned:
        return subject + _plural_be(rest), _plural_be_len(rest)
    return subject + _agree(rest), _agree_len(rest)


def _plural_be(rest: str) -> str:
    match = re.match(r"\s+(am|was)\b", rest)
    if not match:
        return ""
    return " are" if match.group(1) == "am" else " were"


def _plural_be_len(rest: str) -> int:
    match = re.match(r"\s+(am|was)\b", rest)
    return match.end() if match else 0


# The adverbs and the verb after "I": " really dislike", " no longer work".
_AGREEING = re.compile(
    r"((?:\s+(?:no\s+longer|" + "|".join(sorted(ADVERBS, key=len, reverse=True)) + r"))*)"
    r"\s+((?:am\s+not)|[A-Za-z']+)"
)


def _agreeing_span(rest: str) -> re.Match[str] | None:
    return _AGREEING.match(rest)


def _agree(rest: str) -> str:
    match = _agreeing_span(rest)
    if not match:
        return ""
    verb = match.group(2)
    if verb.lower() == "am not":
        return f"{match.group(1)} is not"
    return f"{match.group(1)} {third_person_singular(verb)}"


def _agree_len(rest: str) -> int:
    match = _agreeing_span(rest)
    return match.end() if match else 0
