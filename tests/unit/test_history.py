from __future__ import annotations

from datetime import UTC, datetime

from server.history import HistorySelector
from server.models import HistoryWindow, Role, StoredMessage, WindowKind


def message(seq: int, *, run_id: str = "", tokens: int = 1) -> StoredMessage:
    return StoredMessage(
        seq=seq,
        id=str(seq),
        role=Role.USER,
        content=f"m{seq}",
        name="",
        run_id=run_id,
        create_time=datetime.now(UTC),
        token_count=tokens,
    )


def select(kind: WindowKind, limit: int, messages: list[StoredMessage]) -> list[int]:
    selector = HistorySelector[StoredMessage](HistoryWindow(kind, limit))
    for candidate in reversed(messages):
        if not selector.offer(candidate):
            break
    return [m.seq for m in selector.messages()]


def test_last_messages_keeps_the_newest_oldest_first() -> None:
    assert select(WindowKind.LAST_MESSAGES, 2, [message(i) for i in range(1, 6)]) == [4, 5]


def test_last_messages_is_full_after_exactly_n() -> None:
    selector = HistorySelector[StoredMessage](HistoryWindow(WindowKind.LAST_MESSAGES, 1))
    assert selector.offer(message(2))
    assert selector.full
    assert not selector.offer(message(1))


def test_runs_are_stretches_of_consecutive_messages_sharing_a_run_id() -> None:
    messages = [
        message(1, run_id="a"),
        message(2, run_id="b"),
        message(3, run_id="b"),
        message(4, run_id="a"),  # run id reused later: a new run
        message(5),
        message(6),
    ]
    assert select(WindowKind.LAST_RUNS, 1, messages) == [5, 6]
    assert select(WindowKind.LAST_RUNS, 3, messages) == [2, 3, 4, 5, 6]


def test_token_budget_takes_whole_messages_newest_first() -> None:
    messages = [message(1, tokens=5), message(2, tokens=3), message(3, tokens=4)]
    assert select(WindowKind.MAX_TOKENS, 7, messages) == [2, 3]
    assert select(WindowKind.MAX_TOKENS, 6, messages) == [3]
    # A newest message over the budget yields nothing rather than a cut message.
    assert select(WindowKind.MAX_TOKENS, 3, messages) == []
