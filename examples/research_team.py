"""A researcher -> analyst -> advisor workflow: three agents, each with its
own agent_id and session, sharing one user's long-term memory."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples._llm import Replier
from examples._run import Agent, Transcript, fact, recall, remember, run_example
from memoryd.client import Memory, MemoryClient

TOPIC = "residential solar installers"
FINDINGS = (
    "Finding: residential solar panel prices fell 12% in 2025 (industry price survey).",
    "Finding: 40% of new residential solar installs in 2025 included a home battery.",
    "Finding: installer margins shrank as panel prices fell, and two regional installers "
    "went bankrupt.",
)


def researcher(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    transcript.heading("Researcher: gathers findings")
    agent = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="research",
        name="researcher",
        agent_id="researcher",
        persona=f"You are a researcher. Summarise what you found about {TOPIC}.",
    )
    agent.turn(
        f"Please research {TOPIC}.",
        [],
        lambda: f"I found {len(FINDINGS)} relevant facts; storing them for the team.",
    )
    for finding in FINDINGS:
        remember(
            client,
            transcript,
            user,
            finding,
            topics=["finding", "solar"],
            why="a sourced finding for the analyst",
            agent_id="researcher",
            session_id="research",
        )


def analyst(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> Memory:
    transcript.heading("Analyst: reads the researcher's findings, stores an analysis")
    agent = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="analysis",
        name="analyst",
        agent_id="analyst",
        persona="You are an analyst. Weigh the findings into opportunities and risks.",
    )
    findings = recall(
        client,
        transcript,
        user,
        "solar prices, batteries and installer margins",
        topics=["finding"],
        agent_id="researcher",
        limit=5,
    )
    summary = (
        "Analysis: demand is growing (cheaper panels, batteries in "
        f"{'40%' if any('40%' in f.content for f in findings) else 'many'} of installs) "
        "but margins are thin; installers that bundle batteries look strongest."
    )
    agent.turn("What do the findings mean for an investor?", findings, lambda: summary)
    return remember(
        client,
        transcript,
        user,
        summary,
        topics=["analysis", "solar"],
        why="the analyst's conclusion for the advisor",
        agent_id="analyst",
        session_id="analysis",
    )


def advisor(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> str:
    transcript.heading("Advisor: answers the user from both agents' memories")
    agent = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="advice",
        name="advisor",
        agent_id="advisor",
        persona="You are a financial advisor. Cite the findings and the analysis, "
        "and respect the user's risk tolerance.",
    )
    question = "Should I invest in a residential solar installer?"
    risk = fact(client, transcript, user, "risk_tolerance")
    analysis = recall(
        client, transcript, user, question, topics=["analysis"], agent_id="analyst", limit=1
    )
    findings = recall(
        client,
        transcript,
        user,
        "solar installer prices and margins",
        topics=["finding"],
        agent_id="researcher",
        limit=2,
    )

    def answer() -> str:
        cited = " ".join(f.content.removeprefix("Finding: ") for f in findings)
        tolerance = risk.content if risk else "unknown"
        return (
            f"{_content(analysis)} The researcher found: {cited} With a {tolerance} risk "
            "tolerance, a small position in an installer that bundles batteries fits; "
            "avoid single regional installers."
        )

    known = ([risk] if risk else []) + analysis + findings
    return agent.turn(question, known, answer)


def _content(memories: Sequence[Memory]) -> str:
    return memories[0].content if memories else "There is no analysis yet."


def body(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    transcript.heading("The user's profile, shared by every agent")
    remember(
        client,
        transcript,
        user,
        "moderate",
        key="risk_tolerance",
        why="the user's stated investment risk tolerance",
    )
    researcher(client, transcript, replier, user)
    analyst(client, transcript, replier, user)
    advisor(client, transcript, replier, user)
    by_agent: dict[str, int] = {}
    for memory in client.memories.get_user_memories(user):
        by_agent[memory.agent_id or "(user)"] = by_agent.get(memory.agent_id or "(user)", 0) + 1
    transcript.note(f"shared memory by agent: {by_agent}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_example(argv, description=__doc__ or "", user_prefix="investor", body=body)


if __name__ == "__main__":
    sys.exit(main())
