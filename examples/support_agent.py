"""A customer-support agent that remembers past tickets, the customer's
preferences and products, and how earlier problems were resolved: a new
ticket finds the similar past resolution by search."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from examples._llm import Replier
from examples._run import Agent, Transcript, fact, recall, remember, run_example
from memoryd.client import MemoryClient

PERSONA = (
    "You are a customer-support agent for Acme networking gear. Reuse past resolutions "
    "that match the new problem and respect the customer's contact preference."
)
AGENT = "support"


def past_tickets(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    transcript.heading("Earlier: two past tickets")
    remember(
        client,
        transcript,
        user,
        "email",
        key="contact_channel",
        why="the customer ticked 'email only' on the support form",
        agent_id=AGENT,
    )
    remember(
        client,
        transcript,
        user,
        "Owns an Acme Router X2 (bought March 2025) and an "
        "Acme Mesh Extender M1 (bought June 2025).",
        topics=["product"],
        why="product history for warranty and compatibility",
        agent_id=AGENT,
    )

    billing = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="ticket-0977",
        name="support",
        persona=PERSONA,
        agent_id=AGENT,
    )
    billing.turn(
        "I was charged twice for my March invoice.",
        [],
        lambda: "Sorry about that: I've refunded the duplicate charge.",
    )
    remember(
        client,
        transcript,
        user,
        "Resolution of ticket 0977 (billing): refunded a duplicate charge on the March invoice.",
        topics=["resolution", "billing"],
        why="how the ticket was closed",
        agent_id=AGENT,
        session_id="ticket-0977",
    )

    wifi = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="ticket-1041",
        name="support",
        persona=PERSONA,
        agent_id=AGENT,
    )
    wifi.turn(
        "My Router X2 drops the Wi-Fi connection every evening.",
        [],
        lambda: "Please update to firmware 2.4.1 and pin the 5 GHz band to channel 36.",
    )
    wifi.turn("That fixed it, thanks!", [], lambda: "Great, closing the ticket.")
    remember(
        client,
        transcript,
        user,
        "Resolution of ticket 1041 (Router X2 Wi-Fi drops in "
        "the evening): firmware update to 2.4.1 and the 5 GHz band pinned to channel 36 "
        "fixed it.",
        topics=["resolution", "router"],
        why="the fix the customer confirmed",
        agent_id=AGENT,
        session_id="ticket-1041",
    )


def new_ticket(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> str:
    transcript.heading("Now: a new ticket")
    agent = Agent(
        client,
        transcript,
        replier,
        user=user,
        session_id="ticket-1187",
        name="support",
        persona=PERSONA,
        agent_id=AGENT,
    )
    problem = "My wifi keeps disconnecting at night again, the router loses the connection."
    channel = fact(client, transcript, user, "contact_channel")
    resolutions = recall(client, transcript, user, problem, topics=["resolution"], limit=2)
    products = recall(
        client,
        transcript,
        user,
        "which products does the customer own",
        topics=["product"],
        limit=1,
    )
    known = ([channel] if channel else []) + resolutions + products

    def answer() -> str:
        if not resolutions:
            return "Sorry to hear that. Could you tell me which device it is?"
        via = channel.content if channel else "your usual channel"
        return (
            f"This looks like your earlier case. {resolutions[0].content} Please check "
            f"the firmware is still 2.4.1; I'll send the full steps by {via}."
        )

    return agent.turn(problem, known, answer)


def body(client: MemoryClient, transcript: Transcript, replier: Replier, user: str) -> None:
    past_tickets(client, transcript, replier, user)
    new_ticket(client, transcript, replier, user)


def main(argv: Sequence[str] | None = None) -> int:
    return run_example(argv, description=__doc__ or "", user_prefix="customer", body=body)


if __name__ == "__main__":
    sys.exit(main())
