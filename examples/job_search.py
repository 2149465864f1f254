"""A job-search agent that remembers the resume, preferences, applications
and interview feedback, and uses them to prepare for the next interview."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples._llm import Replier
from examples._run import Agent, Transcript, extract, fact, recall, remember, run_example
from memoryd.client import Memory, MemoryClient

PERSONA = (
    "You are a career coach helping a job seeker. Ground interview advice in their "
    "resume, the role they want and the feedback from earlier interviews."
)
AGENT = "job-search"
RESUME_FACTS = ("occupation", "target_role", "work_arrangement")


def intake(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    transcript.heading("Session 1: resume and preferences")
    agent = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="intake",
        name="agent",
        persona=PERSONA,
        agent_id=AGENT,
    )
    agent.user_says("I'm a data analyst at Northwind, five years of SQL and Python.")
    agent.user_says("I'm looking for a senior data scientist role. I only want remote jobs.")
    agent.turn(
        "Can you keep track of my applications?",
        [],
        lambda: "Yes: I'll remember your resume, applications and feedback.",
    )
    # Resume details become facts through memoryd's extractor, not hand parsing.
    extract(client, transcript, user, "intake")
    for key in RESUME_FACTS:
        fact(client, transcript, user, key)
    remember(
        client,
        transcript,
        user,
        "Applied to Fabrikam for Senior Data Scientist; rejected after the second interview.",
        topics=["application", "fabrikam"],
        why="application status",
        agent_id=AGENT,
        session_id="intake",
    )
    remember(
        client,
        transcript,
        user,
        "Fabrikam interview feedback: strong SQL, but could "
        "not explain A/B test design and sample sizes clearly.",
        topics=["feedback", "fabrikam"],
        why="what to improve before the next interview",
        agent_id=AGENT,
        session_id="intake",
    )
    remember(
        client,
        transcript,
        user,
        "Applied to Contoso for Senior Data Scientist (remote); technical interview scheduled.",
        topics=["application", "contoso"],
        why="application status",
        agent_id=AGENT,
        session_id="intake",
    )


def _first(memories: Sequence[Memory], default: str) -> str:
    return memories[0].content if memories else default


def prepare(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> str:
    transcript.heading("Session 2: preparing the Contoso interview")
    agent = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="interview-prep",
        name="agent",
        persona=PERSONA,
        agent_id=AGENT,
    )
    question = "My Contoso interview is tomorrow. How should I prepare?"
    facts = [m for key in RESUME_FACTS if (m := fact(client, transcript, user, key))]
    application = recall(
        client, transcript, user, "Contoso application", topics=["application"], limit=1
    )
    feedback = recall(
        client,
        transcript,
        user,
        "what went wrong in earlier interviews",
        topics=["feedback"],
        limit=2,
    )

    def advice() -> str:
        background = "; ".join(m.content for m in facts) or "your background"
        return (
            f"From what I know ({background}): {_first(application, 'no application found')} "
            f"Last time the feedback was: {_first(feedback, 'none yet')} So rehearse "
            "designing an A/B test end to end, with the sample size, and lead with your "
            "SQL and analysis work."
        )

    return agent.turn(question, facts + application + feedback, advice)


def body(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    intake(client, transcript, replier, user)
    prepare(client, transcript, replier, user)


def main(argv: Sequence[str] | None = None) -> int:
    return run_example(argv, description=__doc__ or "", user_prefix="candidate", body=body)


if __name__ == "__main__":
    sys.exit(main())
