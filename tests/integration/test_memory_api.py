"""MemoryService over a real gRPC socket, on real Postgres + pgvector and Valkey,
with a real arq worker embedding in the background."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from tests.integration.test_session_api import expect_error

if TYPE_CHECKING:
    from server.stack_file import StoreUrls

    Stub = memory_grpc.MemoryServiceAsyncStub

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SEMANTIC = pb.MEMORY_KIND_SEMANTIC
FACT = pb.MEMORY_KIND_FACT


@pytest.fixture
def stub(channel: grpc.aio.Channel, embedding_worker: None) -> Stub:
    return memory_grpc.MemoryServiceStub(channel)


async def create(stub: Stub, user_id: str, content: str, **fields: object) -> pb.Memory:
    ttl = fields.pop("ttl", None)
    request_id = str(fields.pop("request_id", ""))
    kind = fields.pop("kind", SEMANTIC)
    reply = await stub.CreateMemory(
        pb.CreateMemoryRequest(
            user_id=user_id,
            memory=pb.Memory(kind=kind, content=content, **fields),  # type: ignore[arg-type]
            ttl=ttl,  # type: ignore[arg-type]
            request_id=request_id,
        )
    )
    return reply.memory


async def search(stub: Stub, user_id: str, query: str, **fields: object) -> list[str]:
    reply = await stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id=user_id, query=query, **fields),  # type: ignore[arg-type]
        timeout=30,
    )
    return [result.memory.content for result in reply.results]


async def test_create_is_acknowledged_pending_then_becomes_ready(stub: Stub, user_id: str) -> None:
    memory = await create(stub, user_id, "Alice is allergic to peanuts", topics=["health"])
    assert memory.id and memory.user_id == user_id
    assert memory.topics == ["health"]
    async with asyncio.timeout(30):
        while memory.state != pb.MEMORY_STATE_READY:
            await asyncio.sleep(0.05)
            memory = (
                await stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=memory.id))
            ).memory


async def test_identical_content_and_retried_requests_are_stored_once(
    stub: Stub, user_id: str
) -> None:
    first = await create(stub, user_id, "Prefers window seats")
    again = await create(stub, user_id, "Prefers window seats")
    assert again.id == first.id
    by_request = await create(stub, user_id, "Likes jazz", request_id="req-1")
    retried = await create(stub, user_id, "Likes jazz (retry)", request_id="req-1")
    assert retried.id == by_request.id and retried.content == "Likes jazz"
    listed = await stub.ListMemories(pb.ListMemoriesRequest(user_id=user_id))
    assert len(listed.memories) == 2


async def test_a_fact_has_one_current_value_and_its_history(stub: Stub, user_id: str) -> None:
    berlin = await create(stub, user_id, "Lives in Berlin", kind=FACT, key="home_city")
    lisbon = await create(stub, user_id, "Lives in Lisbon", kind=FACT, key="home_city")
    assert lisbon.id == berlin.id
    fact = await stub.GetFact(pb.GetFactRequest(user_id=user_id, key="home_city"))
    assert fact.memory.content == "Lives in Lisbon"
    history = await stub.GetMemoryHistory(pb.GetMemoryHistoryRequest(user_id=user_id, id=berlin.id))
    assert [(e.op, e.old_content, e.new_content) for e in history.events] == [
        (pb.MEMORY_OP_ADD, "", "Lives in Berlin"),
        (pb.MEMORY_OP_UPDATE, "Lives in Berlin", "Lives in Lisbon"),
    ]
    await expect_error(
        stub.GetFact(pb.GetFactRequest(user_id=user_id, key="timezone")), grpc.StatusCode.NOT_FOUND
    )


async def test_update_by_field_mask_records_the_change_and_reembeds(
    stub: Stub, user_id: str
) -> None:
    memory = await create(stub, user_id, "Studies French twice a week", topics=["study"])
    updated = await stub.UpdateMemory(
        pb.UpdateMemoryRequest(
            user_id=user_id,
            memory=pb.Memory(id=memory.id, content="Studies French every day", topics=["x"]),
            update_mask=field_mask_pb2.FieldMask(paths=["content"]),
            reason="user corrected it",
        )
    )
    assert updated.memory.content == "Studies French every day"
    assert updated.memory.topics == ["study"]  # not in the mask: unchanged
    assert updated.memory.state == pb.MEMORY_STATE_PENDING_INDEX
    history = await stub.GetMemoryHistory(pb.GetMemoryHistoryRequest(user_id=user_id, id=memory.id))
    assert history.events[-1].reason == "user corrected it"
    await expect_error(
        stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                user_id=user_id,
                memory=pb.Memory(id=memory.id),
                update_mask=field_mask_pb2.FieldMask(paths=["kind"]),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "update_mask",
    )
    await create(stub, user_id, "UTC+1", kind=FACT, key="timezone")
    diet = await create(stub, user_id, "Vegetarian", kind=FACT, key="diet")
    await expect_error(
        stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                user_id=user_id,
                memory=pb.Memory(id=diet.id, key="timezone"),
                update_mask=field_mask_pb2.FieldMask(paths=["key"]),
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


async def test_list_filters_and_pages(stub: Stub, user_id: str) -> None:
    for i in range(5):
        await create(stub, user_id, f"note {i}", topics=["even" if i % 2 == 0 else "odd"])
    await create(stub, user_id, "Speaks Portuguese", kind=FACT, key="language")
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListMemories(
            pb.ListMemoriesRequest(user_id=user_id, page_size=4, page_token=token)
        )
        seen += [m.content for m in page.memories]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["Speaks Portuguese", "note 4", "note 3", "note 2", "note 1", "note 0"]
    odd = await stub.ListMemories(
        pb.ListMemoriesRequest(user_id=user_id, filters=pb.MemoryFilters(topics=["odd"]))
    )
    assert [m.content for m in odd.memories] == ["note 3", "note 1"]
    facts = await stub.ListMemories(
        pb.ListMemoriesRequest(user_id=user_id, filters=pb.MemoryFilters(kinds=[FACT]))
    )
    assert [m.key for m in facts.memories] == ["language"]


async def test_search_by_meaning_and_keyword_stays_within_the_user(
    stub: Stub, user_id: str
) -> None:
    await create(stub, user_id, "Alice moved to Lisbon last spring", topics=["home"])
    await create(stub, user_id, "Alice's favourite food is grilled sardines", topics=["food"])
    await create(stub, user_id, "Alice is preparing for a job interview at a bank")
    await create(stub, user_id + "-other", "Bob lives in Lisbon too")
    # Found by keyword at once, before any embedding.
    assert await search(stub, user_id, "Lisbon", mode=pb.SEARCH_MODE_KEYWORD) == [
        "Alice moved to Lisbon last spring"
    ]
    # By meaning: no word of the question is in the answer.
    found = await search(stub, user_id, "Which city is her home?", wait_for_index=True, limit=1)
    assert found == ["Alice moved to Lisbon last spring"]
    semantic = await search(
        stub, user_id, "what does she like to eat", mode=pb.SEARCH_MODE_SEMANTIC, limit=1
    )
    assert semantic == ["Alice's favourite food is grilled sardines"]
    # The topic filter applies inside SQL: the Lisbon memory is not a candidate.
    only_food = await search(stub, user_id, "Lisbon", topics=["food"])
    assert only_food == ["Alice's favourite food is grilled sardines"]
    assert "Bob lives in Lisbon too" not in await search(stub, user_id, "Lisbon")
    reply = await stub.SearchMemories(
        pb.SearchMemoriesRequest(user_id=user_id, query="Lisbon home", limit=3, min_score=0.0)
    )
    scores = [r.score for r in reply.results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


async def test_keyword_search_matches_words_whose_stem_differs_from_the_word(
    stub: Stub, user_id: str
) -> None:
    # "nurse" stems to "nurs"; "studies" to "studi". Stemming the stems again
    # ("nur") would miss both.
    await create(stub, user_id, "Works as a nurse in a children's hospital")
    await create(stub, user_id, "Studies Portuguese every morning")
    assert await search(stub, user_id, "nurse", mode=pb.SEARCH_MODE_KEYWORD) == [
        "Works as a nurse in a children's hospital"
    ]
    assert await search(stub, user_id, "studying", mode=pb.SEARCH_MODE_KEYWORD) == [
        "Studies Portuguese every morning"
    ]


async def test_expired_memories_are_never_returned(stub: Stub, user_id: str) -> None:
    memory = await create(
        stub, user_id, "Has a dentist appointment on Friday", ttl=duration_pb2.Duration(seconds=1)
    )
    assert memory.expire_time.seconds > 0
    await asyncio.sleep(1.2)
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=memory.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert await search(stub, user_id, "dentist appointment", mode=pb.SEARCH_MODE_KEYWORD) == []
    listed = await stub.ListMemories(pb.ListMemoriesRequest(user_id=user_id))
    assert list(listed.memories) == []
    # The same content again is a new memory; the expired one is purged on the way.
    again = await create(stub, user_id, "Has a dentist appointment on Friday")
    assert again.id != memory.id
    history = await stub.GetMemoryHistory(pb.GetMemoryHistoryRequest(user_id=user_id, id=memory.id))
    assert [(e.op, e.actor) for e in history.events][-1] == (pb.MEMORY_OP_DELETE, "expiry")


async def test_deletes_keep_history_and_stay_scoped(stub: Stub, user_id: str) -> None:
    memory = await create(stub, user_id, "Owns a cat named Miso")
    await create(stub, user_id, "Drives an electric car")
    other = await create(stub, user_id + "-other", "Owns a dog")
    await expect_error(
        stub.DeleteMemory(pb.DeleteMemoryRequest(user_id=user_id, id=other.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    deleted = await stub.DeleteMemory(
        pb.DeleteMemoryRequest(user_id=user_id, id=memory.id, reason="user asked")
    )
    assert deleted.deleted_count == 1
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=memory.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    history = await stub.GetMemoryHistory(pb.GetMemoryHistoryRequest(user_id=user_id, id=memory.id))
    assert [e.op for e in history.events] == [pb.MEMORY_OP_ADD, pb.MEMORY_OP_DELETE]
    assert history.events[-1].old_content == "Owns a cat named Miso"
    cleared = await stub.DeleteUserMemories(pb.DeleteUserMemoriesRequest(user_id=user_id))
    assert cleared.deleted_count == 1
    still = await stub.GetMemory(pb.GetMemoryRequest(user_id=user_id + "-other", id=other.id))
    assert still.memory.content == "Owns a dog"


async def test_delete_all_needs_the_confirmation_phrase(stub: Stub, user_id: str) -> None:
    memory = await create(stub, user_id, "Will be wiped")
    await expect_error(
        stub.DeleteAllMemories(pb.DeleteAllMemoriesRequest(confirm="yes")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert (await stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=memory.id))).memory.id
    wiped = await stub.DeleteAllMemories(
        pb.DeleteAllMemoriesRequest(confirm="delete all memories of all users")
    )
    assert wiped.deleted_count >= 1
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=memory.id)),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_delete_all_waits_for_rows_an_embedding_batch_holds(
    stub: Stub, user_id: str, store_urls: StoreUrls
) -> None:
    held = await create(stub, user_id, "Locked by a batch being embedded")
    assert store_urls.postgres_url is not None
    async with await psycopg.AsyncConnection.connect(store_urls.postgres_url) as batch:
        async with batch.transaction():  # what the embedding worker holds per batch
            await batch.execute("SELECT 1 FROM memories WHERE id = %s FOR UPDATE", [held.id])
            wipe = asyncio.ensure_future(
                stub.DeleteAllMemories(
                    pb.DeleteAllMemoriesRequest(confirm="delete all memories of all users")
                )
            )
            await asyncio.sleep(0.5)
            assert not wipe.done()  # waiting for the lock, not skipping the row
        await wipe
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=held.id)),
        grpc.StatusCode.NOT_FOUND,
    )


def _create(user_id: str, memory: pb.Memory, **fields: object) -> pb.CreateMemoryRequest:
    return pb.CreateMemoryRequest(user_id=user_id, memory=memory, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_create("", pb.Memory(kind=SEMANTIC, content="x")), "user_id"),
        (_create("u", pb.Memory(kind=SEMANTIC, content="  ")), "memory.content"),
        (_create("u", pb.Memory(kind=SEMANTIC, content="x" * 20_000)), "memory.content"),
        (_create("u", pb.Memory(content="x")), "memory.kind"),
        (_create("u", pb.Memory(kind=7, content="x")), "memory.kind"),  # type: ignore[arg-type]
        (_create("u", pb.Memory(kind=FACT, content="x")), "memory.key"),
        (_create("u", pb.Memory(kind=SEMANTIC, content="x", key="k")), "memory.key"),
        (
            _create(
                "u", pb.Memory(kind=SEMANTIC, content="x"), ttl=duration_pb2.Duration(seconds=-5)
            ),
            "ttl",
        ),
    ],
)
async def test_bad_creates_are_invalid_argument_naming_the_field(
    stub: Stub, request_: pb.CreateMemoryRequest, field: str
) -> None:
    await expect_error(stub.CreateMemory(request_), grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_a_failed_batch_writes_nothing(stub: Stub, user_id: str) -> None:
    await expect_error(
        stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(
                user_id=user_id,
                requests=[
                    _create("", pb.Memory(kind=SEMANTIC, content="fine")),
                    _create("", pb.Memory(kind=FACT, content="no key")),
                ],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "requests[1].memory.key",
    )
    listed = await stub.ListMemories(pb.ListMemoriesRequest(user_id=user_id))
    assert list(listed.memories) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SearchMemoriesRequest(user_id="u"), "query"),
        (pb.SearchMemoriesRequest(query="q"), "user_id"),
        (pb.SearchMemoriesRequest(user_id="u", query="q", limit=1000), "limit"),
        (pb.SearchMemoriesRequest(user_id="u", query="q", min_score=2), "min_score"),
        (pb.SearchMemoriesRequest(user_id="u", query="q", kinds=[9]), "kinds[0]"),  # type: ignore[list-item]
    ],
)
async def test_bad_searches_are_invalid_argument(
    stub: Stub, request_: pb.SearchMemoriesRequest, field: str
) -> None:
    await expect_error(stub.SearchMemories(request_), grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_malformed_and_foreign_ids(stub: Stub, user_id: str) -> None:
    await expect_error(
        stub.GetMemory(pb.GetMemoryRequest(user_id=user_id, id="not-a-uuid")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "id",
    )
    await expect_error(
        stub.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(user_id=user_id, id="00000000-0000-0000-0000-000000000000")
        ),
        grpc.StatusCode.NOT_FOUND,
    )
