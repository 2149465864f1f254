"""The examples in examples/ run their scripted turns against the real server
(and a real worker embedding and extracting), and do what they claim: recall
across sessions, find the earlier resolution, share memory between agents."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from examples import job_search, research_team, study_coach, support_agent
from examples._llm import LlmConfig, Replier, llm_config, system_prompt
from memoryd.client import AsyncMemoryClient, Message
from server.api.app import RunningServer

Main = Callable[[Sequence[str] | None], int]


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[AsyncMemoryClient]:
    async with AsyncMemoryClient(server.address, timeout=30) as opened:
        yield opened


async def run(main: Main, server: RunningServer, prefix: str) -> str:
    """Run an example's main in a thread (its client is the blocking one and the
    server shares this event loop); returns the user it ran as."""
    user = f"{prefix}-{uuid.uuid4().hex[:10]}"
    assert await asyncio.to_thread(main, ["--address", server.address, "--user", user]) == 0
    return user


def replies(messages: Sequence[Message]) -> list[str]:
    return [m.content for m in messages if m.role == "assistant"]


async def test_study_coach_recalls_the_last_sessions_gap(
    server: RunningServer, embedding_worker: None, client: AsyncMemoryClient
) -> None:
    user = await run(study_coach.main, server, "student")
    style = await client.memories.get_fact(user, "learning_style")
    assert "visual" in style.content  # extracted from what the student said
    opening = replies(await client.sessions.history(user, "study-2"))[0]
    assert "list comprehensions with a filter" in opening
    assert "visual" in opening  # the explanation follows the learning style
    gaps = await client.memories.get_user_memories(user, topics=["gap"])
    assert gaps == []  # closed in session 2: now a progress memory, with its history
    mastered = [
        m
        for m in await client.memories.get_user_memories(user, topics=["progress"])
        if m.content.startswith("Mastered")
    ]
    assert len(mastered) == 1
    assert len(await client.memories.history(user, mastered[0].id)) == 2


async def test_support_agent_finds_the_earlier_resolution(
    server: RunningServer, embedding_worker: None, client: AsyncMemoryClient
) -> None:
    user = await run(support_agent.main, server, "customer")
    [answer] = replies(await client.sessions.history(user, "ticket-1187"))
    assert "ticket 1041" in answer and "firmware" in answer
    assert "0977" not in answer  # not the billing ticket
    assert "by email" in answer  # the contact preference


async def test_job_search_prepares_from_resume_and_feedback(
    server: RunningServer, embedding_worker: None, client: AsyncMemoryClient
) -> None:
    user = await run(job_search.main, server, "candidate")
    occupation = await client.memories.get_fact(user, "occupation")
    assert "data analyst" in occupation.content
    role = await client.memories.get_fact(user, "target_role")
    assert "data scientist" in role.content
    [answer] = replies(await client.sessions.history(user, "interview-prep"))
    assert "Contoso" in answer and "A/B test" in answer and "data analyst" in answer


async def test_research_team_advisor_cites_researcher_and_analyst(
    server: RunningServer, embedding_worker: None, client: AsyncMemoryClient
) -> None:
    user = await run(research_team.main, server, "investor")
    [answer] = replies(await client.sessions.history(user, "advice"))
    assert "Analysis:" in answer and "%" in answer  # the analysis and a finding's figure
    assert "moderate" in answer
    findings = await client.memories.get_user_memories(user, topics=["finding"])
    assert {m.agent_id for m in findings} == {"researcher"} and len(findings) == 3
    [analysis] = await client.memories.get_user_memories(user, topics=["analysis"])
    assert analysis.agent_id == "analyst" and analysis.content in answer
    sessions = {s.session_id: s.agent_id for s in await client.sessions.list(user)}
    assert sessions == {"research": "researcher", "analysis": "analyst", "advice": "advisor"}


def test_llm_is_configured_by_the_environment_only() -> None:
    assert llm_config({}) is None
    assert llm_config({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}) is None
    config = llm_config({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_MODEL": "m"})
    assert config == LlmConfig("http://127.0.0.1:9/v1", "m", "not-needed")
    assert "m at http://127.0.0.1:9/v1" in Replier(config).label
    assert "- Prefers email" in system_prompt("You help.", ["Prefers email"])
    scripted = Replier(None).reply(
        persona="p", memories=[], history=[], message="hi", scripted=lambda: "scripted"
    )
    assert scripted == "scripted"
