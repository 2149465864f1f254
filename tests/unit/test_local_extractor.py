"""LocalExtractor: what a user says about themselves becomes candidates, nothing else does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.extraction.candidates import Candidate, Extractor, Stance
from server.extraction.clauses import sentences
from server.extraction.local import INLINE_CHARS, LocalExtractor, extract_candidates
from server.extraction.person import third_person_singular, to_third_person
from server.memory_models import MemoryKind
from server.models import Role, StoredMessage


def message(content: str, *, id: str = "m1", role: Role = Role.USER) -> StoredMessage:
    return StoredMessage(
        seq=0,
        id=id,
        role=role,
        content=content,
        name="",
        run_id="",
        create_time=datetime.now(UTC),
        token_count=0,
    )


async def extract(*contents: str) -> list[Candidate]:
    messages = [message(c, id=f"m{i}") for i, c in enumerate(contents, 1)]
    return await LocalExtractor().extract(messages)


def facts(candidates: list[Candidate]) -> dict[str, Candidate]:
    return {c.key: c for c in candidates if c.kind is MemoryKind.FACT}


def test_it_is_an_extractor() -> None:
    extractor: Extractor = LocalExtractor()
    assert extractor.name == "local"


async def test_a_move_and_a_later_home_share_one_key_so_the_later_supersedes() -> None:
    found = await extract("I moved to Berlin last year.", "I live in Lisbon now.")
    homes = [c for c in found if c.key == "home_city"]
    assert [c.content for c in homes] == ["The user lives in Berlin.", "The user lives in Lisbon."]
    assert [c.source_message_ids for c in homes] == [("m1",), ("m2",)]
    assert all(c.stance is Stance.ASSERT and c.kind is MemoryKind.FACT for c in homes)
    assert homes[0].reason == "user stated their home city"


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        "Hello!",
        "how are you?",
        "thanks!",
        "Thank you so much, that helps a lot.",
        "what's the weather?",
        "ok cool",
        "Sounds good, let's do that.",
        "I'm good, thanks",
        "I see.",
        "I love that idea!",
        "Got it, thanks. I'll try that tonight.",
        "Should I keep using Anki the night before?",
        "Can you suggest a vegetarian place near Kyoto station?",
        "Could you send me the report by email?",
        "Please draft a short note to the recruiter.",
        "Will I get a loaner?",
        "About twelve days.",
        "Down to 3,100 dollars.",
        "Quick question about my timetable",
        "That's so helpful, thank you!!",
        "Let's start with the first chapter.",
        "I'd like to speak to a manager.",
        "that's all, have a nice day",
    ],
)
async def test_small_talk_questions_and_requests_yield_nothing(text: str) -> None:
    assert await extract(text) == []


@pytest.mark.parametrize("role", [Role.ASSISTANT, Role.SYSTEM, Role.TOOL, Role.DEVELOPER])
async def test_only_the_user_is_listened_to(role: Role) -> None:
    said = message("I'm vegetarian and I live in Paris. My son Leo is 5.", role=role)
    assert await LocalExtractor().extract([said]) == []


async def test_a_diet_is_a_fact_and_giving_it_up_retracts_it() -> None:
    stated = facts(await extract("Yes, I'm vegetarian."))["diet"]
    assert stated.content == "The user is vegetarian."
    assert stated.stance is Stance.ASSERT

    [withdrawn] = await extract("I'm not vegetarian anymore.")
    assert withdrawn.stance is Stance.RETRACT
    assert withdrawn.key == "diet"
    assert withdrawn.content == "The user is vegetarian."  # names what is taken back
    assert withdrawn.confidence >= 0.9


async def test_not_eating_meat_is_a_diet_not_a_withdrawal() -> None:
    [fact] = await extract("I don't eat meat anymore.")
    assert (fact.key, fact.stance, fact.content) == (
        "diet",
        Stance.ASSERT,
        "The user doesn't eat meat.",
    )


async def test_a_plain_denial_of_a_slot_retracts_with_less_confidence() -> None:
    [denied] = await extract("I'm not vegetarian.")
    assert (denied.key, denied.stance) == ("diet", Stance.RETRACT)
    assert denied.confidence < 0.9


@pytest.mark.parametrize(
    ("text", "key", "content"),
    [
        ("I no longer work at Acme.", "employer", "The user works at Acme."),
        ("I quit my job at Acme last week.", "employer", "The user works at Acme."),
        ("Forget that I live in Berlin.", "home_city", "The user lives in Berlin."),
        ("Please forget my old address.", "address", "The user's old address."),
        ("I'm not in Edinburgh any more.", "home_city", "The user lives in Edinburgh."),
    ],
)
async def test_withdrawals_retract_the_slot_they_name(text: str, key: str, content: str) -> None:
    retracts = [c for c in await extract(text) if c.stance is Stance.RETRACT]
    assert [(c.key, c.content) for c in retracts] == [(key, content)]


async def test_a_withdrawn_habit_retracts_it_and_keeps_the_new_state() -> None:
    found = await extract("I don't drink coffee anymore.")
    assert [(c.stance, c.kind, c.content) for c in found] == [
        (Stance.RETRACT, MemoryKind.SEMANTIC, "The user drinks coffee."),
        (Stance.ASSERT, MemoryKind.SEMANTIC, "The user doesn't drink coffee anymore."),
    ]


async def test_a_withdrawal_then_a_new_employer_in_one_message() -> None:
    found = await extract("I no longer work at Zalando, I joined Delivery Hero last week.")
    assert [(c.stance, c.key, c.content) for c in found] == [
        (Stance.RETRACT, "employer", "The user works at Zalando."),
        (Stance.ASSERT, "employer", "The user works at Delivery Hero."),
    ]


async def test_a_child_is_a_fact_keyed_by_name() -> None:
    child = facts(await extract("My son Leo just turned 5!"))["child:leo"]
    assert child.content == "The user's son Leo just turned 5."
    assert "family" in child.topics


async def test_a_named_relative_is_a_fact_and_what_they_want_a_memory() -> None:
    found = await extract("My wife Leyla wants an induction hob, gas makes her nervous.")
    assert facts(found)["partner"].content == "The user has a wife named Leyla."
    [semantic] = [c for c in found if c.kind is MemoryKind.SEMANTIC]
    assert (
        semantic.content == "The user's wife Leyla wants an induction hob, gas makes her nervous."
    )


@pytest.mark.parametrize(
    ("text", "key", "content"),
    [
        ("I'm in the Pacific time zone.", "timezone", "The user's timezone is Pacific."),
        ("My name is Priya, by the way.", "name", "The user's name is Priya."),
        ("Call me Jo.", "name", "The user's name is Jo."),
        ("I work as a nurse.", "occupation", "The user is a nurse."),
        ("I'm a software engineer.", "occupation", "The user is a software engineer."),
        ("I work at Google.", "employer", "The user works at Google."),
        (
            "I'm based in Toronto, so Eastern time please.",
            "home_city",
            "The user lives in Toronto.",
        ),
        ("I'm a visual learner.", "learning_style", "The user is a visual learner."),
        ("I speak French and English.", "language", "The user speaks French and English."),
        ("I'm lactose intolerant.", "intolerance:lactose", "The user is lactose intolerant."),
        ("I'm 41 years old.", "age", "The user is 41 years old."),
        ("My birthday is on 3 May.", "birthday", "The user's birthday is on 3 May."),
        ("I'm learning Spanish.", "learning:spanish", "The user is learning Spanish."),
        ("I only want remote jobs.", "work_arrangement", "The user wants remote work."),
        ("I'm pescatarian.", "diet", "The user is pescatarian."),
        ("We have a dog called Biscuit.", "pet:biscuit", "The user has a dog named Biscuit."),
        (
            "I take home 3,900 a month as a nurse.",
            "income",
            "The user takes home 3,900 a month.",
        ),
        ("I take home 3,900 a month as a nurse.", "occupation", "The user is a nurse."),
        ("i live in leeds btw", "home_city", "The user lives in Leeds."),
        ("We moved to Bristol in August.", "home_city", "The user lives in Bristol."),
        ("My name's Rafael Costa.", "name", "The user's name is Rafael Costa."),
        ("I'm fluent in Mandarin.", "language", "The user speaks Mandarin."),
        (
            "Text me instead of emailing, I never check my inbox.",
            "contact_channel",
            "The user prefers to be contacted by text message.",
        ),
        (
            "I'd prefer the pickup, and please contact me by email, not phone.",
            "contact_channel",
            "The user prefers to be contacted by email.",
        ),
        (
            "My address changed last month, it's now 14 Harbour Street, Leith.",
            "address",
            "The user's address is 14 Harbour Street, Leith.",
        ),
    ],
)
async def test_slots_are_recognised(text: str, key: str, content: str) -> None:
    fact = facts(await extract(text))[key]
    assert fact.content == content
    assert fact.confidence >= 0.7
    assert fact.reason.startswith("user stated")


async def test_a_list_of_allergies_is_one_fact_each() -> None:
    found = facts(await extract("I'm allergic to peanuts and shellfish, so be careful."))
    assert found["allergy:peanuts"].content == "The user is allergic to peanuts."
    assert found["allergy:shellfish"].content == "The user is allergic to shellfish."


@pytest.mark.parametrize("text", ["I live in the city centre.", "i live in fear of exams"])
async def test_vague_places_stay_out_of_slots(text: str) -> None:
    found = await extract(text)
    assert [(c.kind, c.key) for c in found] == [(MemoryKind.SEMANTIC, "")]


async def test_a_message_is_cut_into_sentences_and_clauses() -> None:
    found = await extract(
        "Hi! I moved to Berlin. I'm vegan, and I'm allergic to shellfish, so please "
        "flag restaurants. What's good to eat near Mitte?"
    )
    assert [c.key for c in found] == ["home_city", "diet", "allergy:shellfish"]
    assert all(c.source_message_ids == ("m1",) for c in found)


async def test_preferences_goals_and_experiences_are_semantic_memories() -> None:
    found = await extract(
        "I prefer morning meetings.",
        "I love hiking.",
        "I want to run a marathon next year.",
        "I twisted my ankle running, so I can't do long hikes.",
    )
    assert [(c.kind, c.content, c.source_message_ids) for c in found] == [
        (MemoryKind.SEMANTIC, "The user prefers morning meetings.", ("m1",)),
        (MemoryKind.SEMANTIC, "The user loves hiking.", ("m2",)),
        (MemoryKind.SEMANTIC, "The user wants to run a marathon next year.", ("m3",)),
        (
            MemoryKind.SEMANTIC,
            "The user twisted their ankle running, so they can't do long hikes.",
            ("m4",),
        ),
    ]
    assert "preference" in found[0].topics
    assert "goal" in found[2].topics


async def test_vaguer_statements_get_lower_confidence() -> None:
    preference, hedged, detail = await extract(
        "I prefer morning meetings.",
        "Maybe I'll take up running.",
        "The exam got moved to February 16 because of a room conflict.",
    )
    assert preference.confidence > hedged.confidence
    assert detail.content == (
        "The user said that the exam got moved to February 16 because of a room conflict."
    )
    assert detail.confidence < preference.confidence


async def test_a_remark_that_names_nothing_is_kept_weakest() -> None:
    detail, remark = await extract(
        "The courier never showed up on Friday.", "The refund for the warranty arrived too."
    )
    assert remark.content == "The user said that the refund for the warranty arrived too."
    assert remark.confidence < detail.confidence < 0.6


async def test_a_repeated_statement_is_one_candidate_at_its_latest_place() -> None:
    found = await extract("I live in Berlin.", "I live in Lisbon.", "Actually I live in Berlin.")
    assert [(c.content, c.source_message_ids) for c in found] == [
        ("The user lives in Lisbon.", ("m2",)),
        ("The user lives in Berlin.", ("m1", "m3")),
    ]


async def test_a_long_batch_gives_the_same_candidates_off_the_event_loop() -> None:
    names = [f"Rex{a}{b}" for a in "abcdef" for b in "abcdefghij"]
    texts = [
        f"I moved to Berlin in {2000 + i}. My dog {n} likes the park." for i, n in enumerate(names)
    ]
    messages = [message(t, id=f"m{i}") for i, t in enumerate(texts)]
    assert sum(len(t) for t in texts) > INLINE_CHARS  # so it runs in a worker thread
    found = await LocalExtractor().extract(messages)
    assert found == extract_candidates(messages)
    assert len([c for c in found if c.key.startswith("pet:")]) == 60
    # Sixty moves to one city: one candidate, pointing at every message.
    [home] = [c for c in found if c.key == "home_city"]
    assert len(home.source_message_ids) == 60


@pytest.mark.parametrize(
    ("first_person", "third_person"),
    [
        ("I moved to Berlin last year", "The user moved to Berlin last year."),
        ("My daughter Mia is 7", "The user's daughter Mia is 7."),
        ("I am tired of my job", "The user is tired of their job."),
        ("I'm allergic to cats", "The user is allergic to cats."),
        ("I have two cats", "The user has two cats."),
        ("I've never been to Asia before", "The user has never been to Asia before."),
        ("I like hiking", "The user likes hiking."),
        ("I really dislike red-eye flights", "The user really dislikes red-eye flights."),
        ("I'd love one night in a ryokan", "The user would love one night in a ryokan."),
        ("I'd already booked it", "The user had already booked it."),
        ("I'll start on Monday", "The user will start on Monday."),
        ("I was born in 1990", "The user was born in 1990."),
        ("I don't eat meat", "The user doesn't eat meat."),
        ("I no longer drink coffee", "The user no longer drinks coffee."),
        ("I do yoga", "The user does yoga."),
        ("I go running", "The user goes running."),
        ("I watch films", "The user watches films."),
        ("I study chemistry", "The user studies chemistry."),
        ("I need a laptop", "The user needs a laptop."),
        ("I can only run before work", "The user can only run before work."),
        ("I got a raise", "The user got a raise."),
        ("I did it myself", "The user did it themselves."),
        ("That book is mine", "That book is the user's."),
        ("Loomstack made me an offer", "Loomstack made the user an offer."),
        ("I think I am allergic to nuts", "The user thinks they are allergic to nuts."),
        ("I was there and I was happy", "The user was there and they were happy."),
        ("My sister said I should rest", "The user's sister said they should rest."),
        ("Me and my roommate study together", "The user and their roommate study together."),
        ("We like dark green cabinets", "The user and others like dark green cabinets."),
        ("Our vet is Dr. Marchetti", "The user's vet is Dr. Marchetti."),
        ("i moved to Oslo", "The user moved to Oslo."),
        ("I\u2019m vegan", "The user is vegan."),
    ],
)
def test_first_person_becomes_third_person(first_person: str, third_person: str) -> None:
    assert to_third_person(first_person) == third_person


@pytest.mark.parametrize(
    ("verb", "agreeing"),
    [
        ("like", "likes"),
        ("fly", "flies"),
        ("play", "plays"),
        ("watch", "watches"),
        ("need", "needs"),
        ("moved", "moved"),
        ("went", "went"),
        ("can", "can"),
        ("have", "has"),
        ("am", "is"),
    ],
)
def test_verbs_agree_with_the_user(verb: str, agreeing: str) -> None:
    assert third_person_singular(verb) == agreeing


def test_sentences_keep_titles_and_decimals_whole() -> None:
    assert sentences("My professor Dr. Okafor said so. I'm on 1.04!\nThanks") == [
        "My professor Dr. Okafor said so.",
        "I'm on 1.04!",
        "Thanks",
    ]
