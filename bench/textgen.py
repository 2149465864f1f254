"""Memory-like sentences from templates and vocabularies, from a seeded generator.

Search benchmarks need text whose embeddings cluster the way real memories do:
random vectors (or random word salad) spread uniformly over the sphere, where
HNSW looks broken and exact and approximate search disagree for no real
reason. Templates about a user's life, filled from topic vocabularies, give
sentences that share topics and phrasing like a real user's memories, while
the combinations keep 100k of them distinct.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

# One vocabulary per template slot; items are separated by "; ".
_VOCABULARY_TEXT = {
    "city": (
        "Lisbon; Kyoto; Berlin; Toronto; Mexico City; Nairobi; Seoul; Oslo; "
        "Buenos Aires; Prague; Melbourne; Istanbul; Vancouver; Marrakech; Dublin; "
        "Singapore; Chicago; Barcelona; Hanoi; Reykjavik"
    ),
    "food": (
        "sushi; ramen; vegan curry; margherita pizza; pad thai; falafel; tacos; dim sum; "
        "lentil soup; grilled salmon; mushroom risotto; pho; bibimbap; "
        "gluten-free pasta; shakshuka; dark chocolate; oat milk lattes; green tea"
    ),
    "hobby": (
        "rock climbing; watercolor painting; trail running; chess; sourdough baking; "
        "birdwatching; salsa dancing; woodworking; photography; cycling; yoga; "
        "playing the cello; gardening; board games; swimming; pottery; knitting"
    ),
    "subject": (
        "linear algebra; organic chemistry; Spanish; Japanese; statistics; "
        "machine learning; European history; microeconomics; Python programming; "
        "music theory; calculus; anatomy; French grammar; data structures"
    ),
    "product": (
        "laptop; wireless headphones; standing desk; e-reader; coffee grinder; "
        "running shoes; phone plan; smart thermostat; mechanical keyboard; "
        "electric toothbrush; backpack; router; blender; monitor"
    ),
    "issue": (
        "a late delivery; a double charge on the card; a cracked screen; "
        "a missing refund; a login that keeps failing; a battery that drains fast; "
        "a wrong size; a cancelled subscription that still bills; a broken zipper; "
        "a warranty claim; a package marked delivered but not received"
    ),
    "role": (
        "backend engineer; product manager; data analyst; UX designer; nurse; "
        "high school teacher; accountant; site reliability engineer; marketing lead; "
        "research scientist; sales representative; technical writer"
    ),
    "company": (
        "a fintech startup; a hospital network; a logistics company; a game studio; "
        "a public library; an energy utility; a climate nonprofit; a bank; "
        "an online retailer; a university lab; a consulting firm"
    ),
    "relation": (
        "sister; brother; mother; father; partner; best friend; grandmother; son; "
        "daughter; roommate; manager; neighbor"
    ),
    "name": (
        "Maya; Jonas; Priya; Luca; Amara; Kenji; Sofia; Mateo; Leila; Noah; Ingrid; "
        "Tariq; Chloe; Rafael; Mei; Oskar"
    ),
    "day": "Monday; Tuesday; Wednesday; Thursday; Friday; Saturday; Sunday",
    "month": (
        "January; February; March; April; May; June; July; August; September; October; "
        "November; December"
    ),
    "time": "early morning; lunchtime; late afternoon; the evening; late at night",
    "pet": "dog; cat; parrot; rabbit; two cats; golden retriever; turtle",
    "allergy": "peanuts; shellfish; gluten; lactose; pollen; penicillin; soy",
    "feeling": "excited; nervous; stressed; relieved; frustrated; curious; tired",
    "number": "two; three; four; five; six; ten; twelve; fifteen; twenty",
    "airline": "window seats; aisle seats; red-eye flights; direct flights only",
    "exam": "midterm; final exam; certification test; oral exam; quiz",
    "tool": "Notion; a paper planner; Anki flashcards; Google Calendar; Obsidian",
}
VOCABULARY: dict[str, tuple[str, ...]] = {
    slot: tuple(text.split("; ")) for slot, text in _VOCABULARY_TEXT.items()
}

TEMPLATES: tuple[str, ...] = (
    "The user is planning a trip to {city} in {month} and prefers {airline}.",
    "User mentioned they love {food} and try to find it in every city they visit.",
    "The user is allergic to {allergy}, so restaurant suggestions must avoid it.",
    "User works as a {role} at {company} and usually finishes work in {time}.",
    "The user's {relation} {name} lives in {city} and they visit every {month}.",
    "User has a {pet} named {name} that needs a sitter when they travel.",
    "The user is studying {subject} and has a {exam} next {day}.",
    "User feels {feeling} about the upcoming {exam} in {subject}.",
    "The user studies best in {time} and tracks their progress in {tool}.",
    "User ordered a {product} and reported {issue}.",
    "The user asked for a replacement {product} after {issue}.",
    "User spends weekends on {hobby} and wants to join a {hobby} club in {city}.",
    "The user is applying for {role} roles and has {number} interviews scheduled.",
    "User declined an offer from {company} because the salary was too low.",
    "The user wants to relocate to {city} for a job as a {role}.",
    "User's {relation} recommended {food} at a small place in {city}.",
    "The user budgets {number} hundred dollars a month for {hobby}.",
    "User prefers meetings on {day} in {time} and hates calls on {day}.",
    "The user's birthday is in {month} and they want to celebrate with {food}.",
    "User has been {feeling} since switching to a new {product}.",
    "The user reviews {subject} flashcards in {tool} for {number} minutes a day.",
    "User booked a hotel in {city} near the old town for {number} nights.",
    "The user is learning {hobby} from their {relation} {name}.",
    "User said the {product} support agent solved {issue} within {number} days.",
    "The user's manager at {company} asked them to mentor {number} new hires.",
    "User avoids {food} on {day} because of a standing dinner with their {relation}.",
    "The user wants reminders about the {exam} every {day} in {time}.",
    "User is comparing {product} models and cares most about battery life.",
)

_SLOT = re.compile(r"\{(\w+)\}")


class SentenceGenerator:
    """Sentences filled from TEMPLATES; the same seed gives the same sequence."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def sentence(self) -> str:
        template = self._rng.choice(TEMPLATES)
        return _SLOT.sub(lambda slot: self._rng.choice(VOCABULARY[slot.group(1)]), template)

    def distinct(self, count: int) -> list[str]:
        """`count` different sentences: identical content per user is stored once
        (deduplicated), which would quietly shrink the data set."""
        seen: set[str] = set()
        out: list[str] = []
        for text in self._stream():
            if text not in seen:
                seen.add(text)
                out.append(text)
                if len(out) == count:
                    break
        return out

    def _stream(self) -> Iterator[str]:
        while True:
            yield self.sentence()
