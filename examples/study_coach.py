"""A study coach that remembers how the student learns, what was covered,
where they struggled and how they progressed, across two sessions."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples._llm import Replier
from examples._run import Agent, Transcript, extract, fact, recall, remember, run_example
from memoryd.client import Memory, MemoryClient
from memoryd.v1 import memory_service_pb2 as mpb

PERSONA = (
    "You are a patient programming study coach. Adapt explanations to the student's "
    "learning style and start from the gaps they had last time."
)
COACH = "study-coach"


def _style_hint(memories: Sequence[Memory]) -> str:
    """How to frame the explanation, from the learning_style fact if there is one."""
    for memory in memories:
        if memory.key == "learning_style" and "visual" in memory.content:
            return "Since you're a visual learner, here is a picture"
    return "Here is one way to see it"


def first_session(
    client: MemoryClient, transcript: Transcript, replier: Replier, user: str
) -> None:
    transcript.heading("Session 1: getting to know the student")
    coach = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="study-1",
        name="coach",
        persona=PERSONA,
        agent_id=COACH,
    )
    coach.turn(
        "Hi! I'm learning Python for data analysis. I'm a visual learner, diagrams help me most.",
        [],
        lambda: "Welcome! Let's start with loops and functions, then try list comprehensions.",
    )
    # The coach lets memoryd's extractor turn what the student said about
    # themselves into facts (learning_style, learning:python) instead of parsing it.
    extract(client, transcript, user, "study-1")
    style = fact(client, transcript, user, "learning_style")
    remember(
        client,
        transcript,
        user,
        "Covered Python loops and functions; the student "
        "wrote a working function that averages a list.",
        topics=["python", "progress"],
        why="progress to build on next time",
        agent_id=COACH,
        session_id="study-1",
    )
    coach.turn(
        "I tried the exercise but I don't get how the if goes inside a list comprehension.",
        [style] if style else [],
        lambda: "No problem, we'll come back to list comprehensions with filters next time.",
    )
    remember(
        client,
        transcript,
        user,
        "Knowledge gap: list comprehensions with a filter (where the if clause goes).",
        topics=["python", "gap"],
        why="the student could not finish the exercise",
        agent_id=COACH,
        session_id="study-1",
    )


def second_session(
    client: MemoryClient, transcript: Transcript, replier: Replier, user: str
) -> None:
    transcript.heading("Session 2: a week later, the coach recalls the last session")
    coach = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="study-2",
        name="coach",
        persona=PERSONA,
        agent_id=COACH,
    )
    style = fact(client, transcript, user, "learning_style")
    gaps = recall(
        client, transcript, user, "what did the student struggle with", topics=["gap"], limit=2
    )
    progress = recall(
        client,
        transcript,
        user,
        "what has the student already covered",
        topics=["progress"],
        limit=2,
    )
    known = ([style] if style else []) + gaps + progress

    def opening() -> str:
        if not gaps:
            return "Welcome back! What would you like to study today?"
        gap = gaps[0].content.removeprefix("Knowledge gap: ").rstrip(".")
        return (
            f"Welcome back! Last time you got stuck on {gap}. {_style_hint(known)}: "
            "[value for item in items if test] is a box the items fall into, and the if is "
            "a gate in front of it. Try: the squares of the even numbers in range(10)."
        )

    coach.turn("Hi again, what should we do today?", known, opening)
    coach.turn(
        "[x * x for x in range(10) if x % 2 == 0] gives [0, 4, 16, 36, 64]!",
        known,
        lambda: "Exactly right: the gap is closed. Next up: dictionaries.",
    )
    if gaps:  # the gap is closed: the memory changes, and its history says why
        closed = client.memories.update(
            user,
            gaps[0].id,
            content="Mastered list comprehensions with a filter (was a gap in session 1).",
            topics=["python", "progress"],
            reason="solved the exercise in session 2",
        )
        transcript.note(f"updated gap -> {closed.content}")
        for event in client.memories.history(user, closed.id):
            op = mpb.MemoryOp.Name(event.op).removeprefix("MEMORY_OP_").lower()
            transcript.note(
                f"  history: {op} {event.new_content!r} ({event.reason or 'no reason'})"
            )


def body(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    first_session(client, transcript, replier, user)
    second_session(client, transcript, replier, user)


def main(argv: Sequence[str] | None = None) -> int:
    return run_example(argv, description=__doc__ or "", user_prefix="student", body=body)


if __name__ == "__main__":
    sys.exit(main())
