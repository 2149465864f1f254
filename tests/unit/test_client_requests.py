"""memoryd.client's request building and retry schedule, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memoryd.client import RetryPolicy, convert, kind_name
from memoryd.client import _requests as build
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import session_service_pb2 as spb


def test_update_masks_exactly_the_fields_given() -> None:
    request = build.update(
        "u", "id-1", reason="fix", ttl=None, content="new", topics=[], metadata=None
    )
    assert list(request.update_mask.paths) == ["content", "topics"]
    assert request.memory.id == "id-1" and request.memory.content == "new"
    with_ttl = build.update("u", "id-1", reason=None, ttl=60)
    assert list(with_ttl.update_mask.paths) == ["expire_time"]
    expires = with_ttl.memory.expire_time.ToDatetime(tzinfo=UTC)
    assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=60)
    with pytest.raises(ValueError, match="not both"):
        build.update("u", "id", reason=None, ttl=5, expire_time=datetime.now(UTC))
    with pytest.raises(TypeError, match="list of strings"):
        build.update("u", "id", reason=None, ttl=None, topics="food")


def test_create_infers_the_kind_and_carries_a_request_id() -> None:
    def create(**fields: object) -> mpb.CreateMemoryRequest:
        defaults: dict[str, object] = dict.fromkeys(
            [
                "kind",
                "key",
                "topics",
                "ttl",
                "metadata",
                "agent_id",
                "session_id",
                "source_message_ids",
                "expire_time",
                "request_id",
            ]
        )
        return build.create("u", "content", **{**defaults, **fields})  # type: ignore[arg-type]

    assert create().memory.kind == mpb.MEMORY_KIND_SEMANTIC
    fact = create(key="city", ttl=timedelta(minutes=5))
    assert fact.memory.kind == mpb.MEMORY_KIND_FACT and fact.ttl.seconds == 300
    assert create(kind="FACT").memory.kind == mpb.MEMORY_KIND_FACT
    assert create(kind=mpb.MEMORY_KIND_FACT, key="k").memory.kind == mpb.MEMORY_KIND_FACT
    assert create().request_id != create().request_id  # fresh per call: retries are safe
    assert create(request_id="r1").request_id == "r1"
    assert kind_name(mpb.MEMORY_KIND_FACT) == "fact"


def test_messages_from_dicts_and_protobufs() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5)  # naive: taken as UTC
    converted = convert.messages(
        [
            {"role": "user", "content": "hi", "id": "m1", "metadata": {"a": [1, 2]}},
            {"role": "assistant", "content": "yo", "create_time": when},
            spb.Message(role="tool", content="42"),
        ]
    )
    assert [m.role for m in converted] == ["user", "assistant", "tool"]
    assert converted[0].id == "m1" and dict(converted[0].metadata)["a"] == [1.0, 2.0]
    assert converted[1].create_time.ToDatetime(tzinfo=UTC) == when.replace(tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown field"):
        convert.message({"role": "user", "body": "x"})


def test_history_takes_one_bound_and_clear_before_an_age() -> None:
    assert build.history("u", "s", last_messages=None, last_runs=3, max_tokens=None).HasField(
        "last_runs"
    )
    assert (
        build.history("u", "s", last_messages=None, last_runs=None, max_tokens=None).WhichOneof(
            "window"
        )
        is None
    )
    with pytest.raises(ValueError):
        build.history("u", "s", last_messages=1, last_runs=1, max_tokens=None)
    request = build.clear_before(timedelta(days=1), user_id="u", all_users=False)
    cutoff = request.cutoff.ToDatetime(tzinfo=UTC)
    assert abs(cutoff - (datetime.now(UTC) - timedelta(days=1))) < timedelta(seconds=10)


def test_retry_delays_grow_to_the_cap_and_stop() -> None:
    policy = RetryPolicy(max_attempts=6, initial_backoff=0.1, max_backoff=0.5, multiplier=2)
    delays = list(policy.delays())
    assert len(delays) == 5
    ceilings = [0.1, 0.2, 0.4, 0.5, 0.5]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert list(RetryPolicy(max_attempts=1).delays()) == []
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
