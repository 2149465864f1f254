"""Regex building blocks for the slot table: who speaks, names, places, dates, lists.

Patterns run on the clause as the user wrote it (apostrophes straightened). Parts that
must be case-insensitive say so inline with (?i:...); captured names and places must be
capitalised, which is what keeps "I live in the city centre" from becoming a home city.
"""

from __future__ import annotations

import re

from server.extraction.person import word_set

# Building blocks. The pronoun "I" is matched in either case: chat is often lowercase.
SELF = r"\b[Ii]"
# A household moves together: "We moved to Bristol".
SELF_OR_WE = r"\b(?:[Ii]|[Ww]e)"
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
LIST_SEPARATOR = re.compile(r",?\s+(?:and|or)\s+|,\s*")
NOT_PLACES = (
    r"(?:fear|peace|poverty|hope|denial|harmony|comfort|luxury|hiding|town|the|a|an|"
    r"city|suburbs|countryside|dorms|halls|flat|apartment|house|student|shared|hell|"
    r"misery|limbo|sin|style|debt|squalor)\b"
)
DEGREE = r"(?:degree|master's|masters|PhD|bachelor's)"
SUBJECT = r"[\w -]+?"
# "I study best in the morning" says when, not what.
NOT_SUBJECTS = r"(?:best|better|hard|well|for|at|in|on|with|every|each|alone|late|early)\b"
# "I'm X" is a name only when X is not one of these.
NOT_NAMES = word_set(
    "Fine Good Great Ok Okay Sorry Back Here Ready Done Sure Busy Tired Happy Excited "
    "Vegan Vegetarian Not Also Just Still So Very Really Glad Home Free New"
)
