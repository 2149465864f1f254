"""What every example shares: its command line, the transcript it prints, and
an agent turn (recall, reply, append both messages to the session)."""

from __future__ import annotations

import argparse
import sys
import textwrap
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from examples._llm import Replier
from memoryd.client import Memory, MemoryClient, NotFound, Unavailable, kind_name
from memoryd.v1 import memory_service_pb2 as mpb

DEFAULT_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True)
class Options:
    address: str
    user: str
    token: str | None = None


def parse_options(argv: Sequence[str] | None, description: str, user_prefix: str) -> Options:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, help=f"memoryd's gRPC address ({DEFAULT_ADDRESS})"
    )
    parser.add_argument(
        "--user", default=None, help="the user id (default: a fresh one, so every run starts clean)"
    )
    parser.add_argument(
        "--token", default=None, help="bearer token, when memoryd checks them (MEMORYD_AUTH_TOKEN)"
    )
    args = parser.parse_args(argv)
    user = args.user or f"{user_prefix}-{uuid.uuid4().hex[:8]}"
    return Options(address=args.address, user=user, token=args.token)


class Transcript:
    """Prints the conversation and, indented, what was remembered and why."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out

    def _print(self, text: str) -> None:
        print(text, file=self._out if self._out is not None else sys.stdout, flush=True)

    def heading(self, text: str) -> None:
        self._print(f"\n=== {text} ===")

    def say(self, speaker: str, text: str) -> None:
        wrapped = textwrap.fill(
            text, width=96, initial_indent=f"{speaker:>10}: ", subsequent_indent=" " * 12
        )
        self._print(wrapped)

    def note(self, text: str) -> None:
        self._print(
            textwrap.fill(
                text, width=96, initial_indent="    [memory] ", subsequent_indent=" " * 13
            )
        )


def describe(memory: Memory) -> str:
    """One memory as the transcript shows it: kind, key or topics, content."""
    label = memory.key if memory.key else ",".join(memory.topics)
    who = f" by {memory.agent_id}" if memory.agent_id else ""
    return f"{kind_name(memory.kind)}[{label}]{who}: {memory.content}"


def remember(
    client: MemoryClient,
    transcript: Transcript,
    user: str,
    content: str,
    *,
    why: str,
    key: str | None = None,
    topics: Sequence[str] = (),
    agent_id: str | None = None,
    session_id: str | None = None,
) -> Memory:
    """Store one memory and say in the transcript why it was kept."""
    memory = client.memories.add(
        user, content, key=key, topics=topics, agent_id=agent_id, session_id=session_id
    )
    transcript.note(f"stored {describe(memory)}  (why: {why})")
    return memory


def recall(
    client: MemoryClient,
    transcript: Transcript,
    user: str,
    query: str,
    *,
    limit: int = 3,
    topics: Sequence[str] | None = None,
    agent_id: str | None = None,
) -> list[Memory]:
    """Search the user's memories (waiting for the newest to be indexed) and
    show what came back."""
    hits = client.memories.search(
        query, user_id=user, limit=limit, topics=topics, agent_id=agent_id, wait_for_index=True
    )
    transcript.note(f"searched {query!r}: {len(hits)} hit(s)")
    for hit in hits:
        transcript.note(f"  {hit.score:.2f} {describe(hit.memory)}")
    return [hit.memory for hit in hits]


def fact(client: MemoryClient, transcript: Transcript, user: str, key: str) -> Memory | None:
    """The user's fact under `key`, or None; shown either way."""
    try:
        memory = client.memories.get_fact(user, key)
    except NotFound:
        transcript.note(f"no fact {key!r} yet")
        return None
    transcript.note(f"fact {key}: {memory.content}")
    return memory


def extract(client: MemoryClient, transcript: Transcript, user: str, session_id: str) -> None:
    """Run extraction over a session now and wait for it (memoryd also runs it
    on its own after appends; calling it makes the facts available at once)."""
    job = client.memories.extract(user, session_id=session_id, wait=True)
    state = mpb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    transcript.note(
        f"extraction over session {session_id!r}: job {state}, {job.created_count} created, "
        f"{job.updated_count} updated, {job.noop_count} already known"
    )
    if job.state != mpb.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"extraction job {job.id} {state}: {job.error or 'no detail'}")


class Agent:
    """One agent in one session: each turn is recalled memories in, a reply
    out, and both messages appended to the session's transcript in memoryd."""

    def __init__(
        self,
        client: MemoryClient,
        transcript: Transcript,
        replier: Replier,
        *,
        user: str,
        session_id: str,
        name: str,
        persona: str,
        agent_id: str | None = None,
    ) -> None:
        self.client = client
        self.transcript = transcript
        self.replier = replier
        self.user = user
        self.session_id = session_id
        self.name = name
        self.persona = persona
        self.agent_id = agent_id

    def user_says(self, message: str) -> None:
        """A user turn the agent only listens to (no reply yet)."""
        self.client.sessions.append(
            self.user,
            self.session_id,
            [{"role": "user", "content": message}],
            agent_id=self.agent_id,
        )
        self.transcript.say("user", message)

    def turn(self, message: str, memories: Sequence[Memory], scripted: Callable[[], str]) -> str:
        """Answer `message` with `memories` in mind; returns the reply."""
        self.transcript.say("user", message)
        return self._answer(message, memories, scripted)

    def _answer(self, message: str, memories: Sequence[Memory], scripted: Callable[[], str]) -> str:
        past = self.client.sessions.history(self.user, self.session_id, last_messages=10)
        reply = self.replier.reply(
            persona=self.persona,
            memories=[m.content for m in memories],
            history=[(m.role, m.content) for m in past],
            message=message,
            scripted=scripted,
        )
        self.client.sessions.append(
            self.user,
            self.session_id,
            [{"role": "user", "content": message}, {"role": "assistant", "content": reply}],
            agent_id=self.agent_id,
        )
        self.transcript.say(self.name, reply)
        return reply


def run_example(
    argv: Sequence[str] | None,
    *,
    description: str,
    user_prefix: str,
    body: Callable[[MemoryClient, Transcript, Replier, str], None],
    out: TextIO | None = None,
) -> int:
    """Parse the options, connect, run the example's body; 0 on success."""
    options = parse_options(argv, description, user_prefix)
    transcript = Transcript(out)
    replier = Replier.from_env()
    transcript.note(f"memoryd at {options.address}, user {options.user!r}, {replier.label}")
    try:
        with MemoryClient(options.address, token=options.token, timeout=30) as client:
            body(client, transcript, replier, options.user)
    except Unavailable as error:
        print(
            f"memoryd is not reachable at {options.address} ({error}); start it with "
            "`make up` or pass --address",
            file=sys.stderr,
        )
        return 1
    return 0
