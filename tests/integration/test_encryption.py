"""Encryption at rest, end to end: a real server and worker with
MEMORYD_ENCRYPTION_KEY on real Postgres and Valkey, and the raw rows, Redis
values and data files read back to check that no plaintext reached them.

Each test has a database of its own (the key registry is per database) in the
run's Postgres, whose files other tests also write: markers are unique per test.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest
from cryptography.fernet import Fernet, InvalidToken
from google.protobuf import field_mask_pb2, struct_pb2
from pydantic import SecretStr
from redis.asyncio import Redis

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server import blind_index
from server.crypto import Cipher
from server.embedded import EmbeddedStack
from server.job_queue import enqueue_rekey
from server.resources import Resources
from server.stack_file import StoreUrls
from server.stores import extraction_store
from tests.integration.conftest import new_database, stack_on
from tests.integration.test_session_api import expect_error

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# The Redis database of these tests' stacks (the session's use 0, isolated_stack 9).
REDIS_DB = 10
TABLES = ("messages", "memories", "memory_events", "extraction_jobs", "sessions")


def new_key() -> str:
    return Fernet.generate_key().decode()


def secret_word() -> str:
    """A word that appears nowhere else: what the raw stores must never hold."""
    return f"zebulon{uuid.uuid4().hex[:12]}"


def struct(**fields: Any) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(fields)
    return value


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.sessions: Any = session_grpc.SessionServiceStub(channel)
        self.memories: Any = memory_grpc.MemoryServiceStub(channel)

    async def append(self, user_id: str, session_id: str, *contents: str, **meta: Any) -> None:
        await self.sessions.AppendMessages(
            spb.AppendMessagesRequest(
                user_id=user_id,
                session_id=session_id,
                messages=[
                    spb.Message(
                        role="user", content=c, run_id=f"run-{i // 2}", metadata=struct(**meta)
                    )
                    for i, c in enumerate(contents)
                ],
            )
        )

    async def history(self, user_id: str, session_id: str, **window: int) -> list[str]:
        reply = await self.sessions.GetHistory(
            spb.GetHistoryRequest(user_id=user_id, session_id=session_id, **window)
        )
        return [m.content for m in reply.messages]

    async def create(self, user_id: str, content: str, **fields: Any) -> pb.Memory:
        kind = fields.pop("kind", pb.MEMORY_KIND_SEMANTIC)
        reply = await self.memories.CreateMemory(
            pb.CreateMemoryRequest(
                user_id=user_id, memory=pb.Memory(kind=kind, content=content, **fields)
            )
        )
        memory: pb.Memory = reply.memory
        return memory

    async def search(
        self, user_id: str, query: str, mode: pb.SearchMode, **fields: Any
    ) -> list[str]:
        reply = await self.memories.SearchMemories(
            pb.SearchMemoriesRequest(
                user_id=user_id, query=query, mode=mode, wait_for_index=True, **fields
            ),
            timeout=30,
        )
        return [r.memory.content for r in reply.results]

    async def listed(self, user_id: str) -> list[pb.Memory]:
        reply = await self.memories.ListMemories(
            pb.ListMemoriesRequest(user_id=user_id, page_size=100)
        )
        return list(reply.memories)

    async def events(self, user_id: str, memory_id: str) -> list[pb.MemoryEvent]:
        reply = await self.memories.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(user_id=user_id, id=memory_id)
        )
        return list(reply.events)

    async def finished_job(self, user_id: str, job_id: str) -> pb.Job:
        async with asyncio.timeout(60):
            while True:
                reply = await self.memories.GetJob(pb.GetJobRequest(user_id=user_id, id=job_id))
                if reply.job.state in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED):
                    job: pb.Job = reply.job
                    return job
                await asyncio.sleep(0.05)


@pytest.fixture
async def database(store_urls: StoreUrls) -> AsyncIterator[str]:
    assert store_urls.postgres_url is not None
    yield await new_database(store_urls.postgres_url)


@pytest.fixture
async def redis_db(resources: Resources) -> AsyncIterator[Redis]:
    assert resources.settings.redis_url is not None
    url = urlsplit(resources.settings.redis_url)._replace(path=f"/{REDIS_DB}").geturl()
    client = Redis.from_url(url)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def raw_rows(database: str) -> dict[str, list[str]]:
    """Every row of the content-bearing tables, each as Postgres' text of the whole row."""
    async with await psycopg.AsyncConnection.connect(database) as conn:
        rows = {}
        for table in TABLES:
            cursor = await conn.execute(f"SELECT t::text FROM {table} AS t")
            rows[table] = [row[0] for row in await cursor.fetchall()]
    return rows


async def raw_redis_values(redis: Redis) -> list[bytes]:
    """Every key of the database and every value it holds, whatever its type."""
    values: list[bytes] = []
    async for name in redis.scan_iter(count=1000):
        values.append(name)
        kind = (await redis.type(name)).decode()
        if kind == "string":
            values.append(await redis.get(name) or b"")
        elif kind == "list":
            values.extend(await redis.lrange(name, 0, -1))  # type: ignore[misc]
        elif kind == "hash":
            for field, value in (await redis.hgetall(name)).items():  # type: ignore[misc]
                values += [field, value]
        elif kind == "zset":
            values.extend(member for member, _ in await redis.zrange(name, 0, -1, withscores=True))
        elif kind == "set":
            values.extend(await redis.smembers(name))  # type: ignore[misc]
        else:
            raise AssertionError(f"unexpected Redis type {kind} of {name!r}")
    return values


def files_holding(root: Path, needle: bytes) -> list[Path]:
    """The files under root whose bytes contain needle."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:  # a file removed while walking (WAL recycling, temp files)
            continue
        if needle in data:
            found.append(path)
    return found


async def flush_to_disk(store_urls: StoreUrls, redis: Redis) -> None:
    """Postgres' dirty pages to its data files, Valkey's data to its RDB and AOF."""
    assert store_urls.postgres_url is not None
    async with await psycopg.AsyncConnection.connect(
        store_urls.postgres_url, autocommit=True
    ) as conn:
        await conn.execute("CHECKPOINT")
    await redis.save()


async def test_no_plaintext_reaches_postgres_redis_or_their_files(
    resources: Resources,
    embedded_stack: tuple[EmbeddedStack, StoreUrls],
    database: str,
    redis_db: Redis,
    session_stub: session_grpc.SessionServiceAsyncStub,
    user_id: str,
) -> None:
    stack, store_urls = embedded_stack
    secret = secret_word()
    async with stack_on(
        resources, postgres_url=database, redis_db=REDIS_DB, encryption_key=SecretStr(new_key())
    ) as (channel, own):
        api = Stubs(channel)
        await api.append(
            user_id, "s1", f"my locker word is {secret}", "noted", f"{secret} again", tag=secret
        )
        assert await api.history(user_id, "s1") == [
            f"my locker word is {secret}",
            "noted",
            f"{secret} again",
        ]
        # The rebuild from Postgres (window dropped), and a window read by tokens.
        await redis_db.delete(*[k async for k in redis_db.scan_iter(match="memoryd:v1:*")])
        assert await api.history(user_id, "s1", max_tokens=1000) == [
            f"my locker word is {secret}",
            "noted",
            f"{secret} again",
        ]
        semantic = await api.create(
            user_id, f"Keeps a pet iguana named {secret}", metadata=struct(note=secret)
        )
        fact = await api.create(
            user_id, f"{secret} street", kind=pb.MEMORY_KIND_FACT, key="home_street"
        )
        await api.create(
            user_id, f"Lives on {secret} avenue", kind=pb.MEMORY_KIND_FACT, key="home_street"
        )
        await api.memories.UpdateMemory(
            pb.UpdateMemoryRequest(
                user_id=user_id,
                memory=pb.Memory(id=semantic.id, metadata=struct(note=f"{secret} updated")),
                update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
            )
        )
        job = await api.memories.ExtractMemories(
            pb.ExtractMemoriesRequest(
                user_id=user_id,
                messages=[spb.Message(role="user", content=f"I live in {secret}ville, Portugal.")],
            )
        )
        assert (await api.finished_job(user_id, job.job.id)).state == pb.JOB_STATE_SUCCEEDED
        # A queued job keeps its messages until it runs: one stored as the API
        # does, whose arq job is never enqueued, so it stays queued.
        async with own.postgres.connection() as conn:
            await extraction_store.queue_messages_job(
                conn,
                user_id=user_id,
                messages=[{"id": "m1", "role": "user", "content": f"{secret} in a queued job"}],
                cipher=own.cipher,
            )
        found = await api.search(user_id, f"iguana {secret}", pb.SEARCH_MODE_KEYWORD)
        # Both words match the first; the word alone, the fact.
        assert found == [f"Keeps a pet iguana named {secret}", f"Lives on {secret} avenue"]
        history = await api.events(user_id, fact.id)
        assert [(e.old_content, e.new_content) for e in history] == [
            ("", f"{secret} street"),
            (f"{secret} street", f"Lives on {secret} avenue"),
        ]
        listed = {m.id: m for m in await api.listed(user_id)}
        assert dict(listed[semantic.id].metadata) == {"note": f"{secret} updated"}

        rows = await raw_rows(database)
        assert all(rows[t] for t in TABLES), rows  # every table holds something to check
        leaks = {t: [r for r in rows[t] if secret in r] for t in TABLES}
        assert leaks == {t: [] for t in TABLES}
        values = await raw_redis_values(redis_db)
        assert any(v.startswith(b"\0") for v in values)  # sealed window entries
        assert [v for v in values if secret.encode() in v] == []

    # Files: the control (plaintext written by the session's keyless server)
    # shows the scan finds what is there.
    control = secret_word()
    await session_stub.AppendMessages(
        spb.AppendMessagesRequest(
            user_id=user_id,
            session_id="plain",
            messages=[spb.Message(role="user", content=control)],
        )
    )
    await flush_to_disk(store_urls, redis_db)
    postgres_files, valkey_files = stack.data_dir / "postgres", stack.data_dir / "valkey"
    assert files_holding(postgres_files, control.encode())
    assert files_holding(valkey_files, control.encode())
    assert files_holding(postgres_files, secret.encode()) == []
    assert files_holding(valkey_files, secret.encode()) == []


async def test_search_dedupe_facts_history_and_extraction_work_encrypted(
    resources: Resources, database: str, redis_db: Redis, user_id: str
) -> None:
    async with stack_on(
        resources, postgres_url=database, redis_db=REDIS_DB, encryption_key=SecretStr(new_key())
    ) as (channel, _):
        api = Stubs(channel)
        nurse = await api.create(user_id, "Works as a nurse at the children's hospital")
        await api.create(user_id, "Is studying Portuguese in the evenings")
        await api.create(user_id, "Her favourite food is grilled sardines")
        again = await api.create(user_id, "Works as a nurse at the children's hospital")
        assert again.id == nurse.id  # dedupe by keyed hash
        # Keyword: stems match across word forms, as Postgres' english analysis does.
        assert await api.search(user_id, "nursing", pb.SEARCH_MODE_KEYWORD) == [nurse.content]
        assert await api.search(user_id, "studies", pb.SEARCH_MODE_KEYWORD) == [
            "Is studying Portuguese in the evenings"
        ]
        assert await api.search(user_id, "the and of", pb.SEARCH_MODE_KEYWORD) == []
        found = await api.search(
            user_id, "what does she like to eat", pb.SEARCH_MODE_SEMANTIC, limit=1
        )
        assert found == ["Her favourite food is grilled sardines"]
        hybrid = await api.search(user_id, "hospital job", pb.SEARCH_MODE_HYBRID, limit=1)
        assert hybrid == [nurse.content]
        # Another user's memories never match (hashes are per user).
        assert await api.search(f"{user_id}-other", "nurse", pb.SEARCH_MODE_KEYWORD) == []

        await api.create(user_id, "Lives in Berlin", kind=pb.MEMORY_KIND_FACT, key="city")
        moved = await api.create(user_id, "Lives in Lisbon", kind=pb.MEMORY_KIND_FACT, key="city")
        fact = await api.memories.GetFact(pb.GetFactRequest(user_id=user_id, key="city"))
        assert fact.memory.content == "Lives in Lisbon" and fact.memory.id == moved.id
        assert await api.search(user_id, "Berlin", pb.SEARCH_MODE_KEYWORD) == []
        assert await api.search(user_id, "lisbon", pb.SEARCH_MODE_KEYWORD) == ["Lives in Lisbon"]
        events = await api.events(user_id, moved.id)
        assert [(e.old_content, e.new_content) for e in events] == [
            ("", "Lives in Berlin"),
            ("Lives in Berlin", "Lives in Lisbon"),
        ]

        # Sessions: windows by runs and tokens read sealed entries, and the
        # extraction worker reads the transcript through the stores.
        await api.append(
            user_id, "s", "Hi! I live in Porto.", "Nice.", "I love surfing on weekends."
        )
        assert await api.history(user_id, "s", last_runs=1) == ["I love surfing on weekends."]
        assert len(await api.history(user_id, "s", last_messages=2)) == 2
        queued = await api.memories.ExtractMemories(
            pb.ExtractMemoriesRequest(user_id=user_id, session_id="s")
        )
        job = await api.finished_job(user_id, queued.job.id)
        assert job.state == pb.JOB_STATE_SUCCEEDED, job.error
        contents = " ".join(m.content for m in await api.listed(user_id))
        assert "Porto" in contents and "surfing" in contents


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run `memoryd ARGS` without blocking the loop (the test's server serves meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _raw_tokens(database: str) -> list[tuple[str, str, int | None]]:
    async with await psycopg.AsyncConnection.connect(database) as conn:
        rows: list[tuple[str, str, int | None]] = []
        for table in ("messages", "memories"):
            cursor = await conn.execute(f"SELECT '{table}', content, key_id FROM {table}")
            rows += await cursor.fetchall()
    return rows


async def test_rotation_with_rekey_and_data_written_before_encryption(
    resources: Resources,
    store_urls: StoreUrls,
    database: str,
    redis_db: Redis,
    user_id: str,
) -> None:
    key_a, key_b = new_key(), new_key()

    async def check_reads(api: Stubs) -> None:
        assert await api.history(user_id, "s") == ["plain one", "under A"]
        contents = sorted(m.content for m in await api.listed(user_id))
        assert contents == ["Plays the cello", "Plays the oboe"]
        assert await api.search(user_id, "cello", pb.SEARCH_MODE_KEYWORD) == ["Plays the cello"]
        assert await api.search(user_id, "oboe", pb.SEARCH_MODE_KEYWORD) == ["Plays the oboe"]

    # Written without a key, then with key A.
    async with stack_on(resources, postgres_url=database, redis_db=REDIS_DB) as (channel, _):
        await Stubs(channel).append(user_id, "s", "plain one")
        await Stubs(channel).create(user_id, "Plays the cello")
    async with stack_on(
        resources, postgres_url=database, redis_db=REDIS_DB, encryption_key=SecretStr(key_a)
    ) as (channel, _):
        api = Stubs(channel)
        await api.append(user_id, "s", "under A")
        await api.create(user_id, "Plays the oboe")
        assert (await api.create(user_id, "Plays the oboe")).content == "Plays the oboe"
        assert await api.history(user_id, "s") == ["plain one", "under A"]
        # The plaintext row is found by meaning until rekey gives it hashed terms.
        assert await api.search(user_id, "cello", pb.SEARCH_MODE_SEMANTIC, limit=1) == [
            "Plays the cello"
        ]

    # Rotated: B seals, A still opens.
    async with stack_on(
        resources,
        postgres_url=database,
        redis_db=REDIS_DB,
        encryption_key=SecretStr(f"{key_b},{key_a}"),
    ) as (channel, own):
        api = Stubs(channel)
        assert await api.history(user_id, "s") == ["plain one", "under A"]
        assert await api.search(user_id, "oboe", pb.SEARCH_MODE_KEYWORD) == ["Plays the oboe"]
        # Dedupe sees the row hashed under A.
        assert len(await api.listed(user_id)) == 2
        await api.create(user_id, "Plays the oboe")
        assert len(await api.listed(user_id)) == 2

        # The real command, while this server serves.
        assert resources.settings.redis_url is not None
        env = {
            **os.environ,
            "MEMORYD_POSTGRES_URL": database,
            "MEMORYD_REDIS_URL": own.settings.redis_url or "",
            "MEMORYD_ENCRYPTION_KEY": f"{key_b},{key_a}",
        }
        code, out, err = await run_cli(env, "rekey", "--batch", "1")
        assert code == 0, err
        assert "messages: 2/2" in out and "memories: 2/2" in out
        assert "done: everything is sealed" in out
        # Idempotent: nothing left to do.
        code, out, err = await run_cli(env, "rekey")
        assert code == 0, err
        assert "messages: 0 rows to seal" in out
        await check_reads(api)

    b_id = None
    for _table, token, key_id in await _raw_tokens(database):
        assert key_id is not None
        b_id = b_id or key_id
        assert key_id == b_id
        with pytest.raises(InvalidToken):
            Fernet(key_a).decrypt(token)
        Fernet(key_b).decrypt(token)

    # B alone reads everything.
    async with stack_on(
        resources, postgres_url=database, redis_db=REDIS_DB, encryption_key=SecretStr(key_b)
    ) as (channel, _):
        await check_reads(Stubs(channel))


async def test_a_wrong_or_missing_key_is_a_clear_failed_precondition(
    resources: Resources, database: str, redis_db: Redis, user_id: str
) -> None:
    key = new_key()
    async with stack_on(
        resources, postgres_url=database, redis_db=REDIS_DB, encryption_key=SecretStr(key)
    ) as (channel, _):
        api = Stubs(channel)
        await api.append(user_id, "s", "sealed words")
        memory = await api.create(user_id, "Sealed memory")

    # A server started with another key refuses to start, saying why.
    assert resources.settings.redis_url is not None
    code, _, err = await run_cli(
        {
            **os.environ,
            "MEMORYD_POSTGRES_URL": database,
            "MEMORYD_REDIS_URL": resources.settings.redis_url,
            "MEMORYD_ENCRYPTION_KEY": new_key(),
            "MEMORYD_LISTEN": "127.0.0.1:0",
        },
        "serve",
    )
    assert code == 2 and "does not match the data" in err, err

    for setting, says in [
        ({"encryption_key": SecretStr(new_key())}, "does not match the data"),
        ({}, "MEMORYD_ENCRYPTION_KEY is not set"),
    ]:
        async with stack_on(resources, postgres_url=database, redis_db=REDIS_DB, **setting) as (
            channel,
            own,
        ):
            api = Stubs(channel)
            with pytest.raises(Exception, match=says):
                await own.check_ready()
            for call in (
                api.sessions.GetHistory(spb.GetHistoryRequest(user_id=user_id, session_id="s")),
                api.memories.GetMemory(pb.GetMemoryRequest(user_id=user_id, id=memory.id)),
                api.memories.ListMemories(pb.ListMemoriesRequest(user_id=user_id)),
            ):
                error = await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION)
                assert says in (error.details() or "")
            # The window gone, the rebuild from Postgres says the same.
            await redis_db.flushdb()
            error = await expect_error(
                api.sessions.GetHistory(spb.GetHistoryRequest(user_id=user_id, session_id="s")),
                grpc.StatusCode.FAILED_PRECONDITION,
            )
            assert says in (error.details() or "")


@pytest.mark.parametrize(
    "text",
    [
        "Works as a nurse at the children's hospital",
        "She was studying Portuguese and running marathons in 2024!",
        "Doesn't like flying; prefers trains, generously-priced or not.",
        "A well-known state-of-the-art café in São Paulo",
    ],
)
async def test_the_blind_index_analyses_words_as_postgres_english_does(
    resources: Resources, text: str
) -> None:
    async with resources.postgres.connection() as conn:
        cursor = await conn.execute("SELECT to_tsvector('english', %s)::text", (text,))
        row = await cursor.fetchone()
    assert row is not None
    postgres = {}
    for lexeme in row[0].split(" "):
        word, _, positions = lexeme.rpartition(":")
        postgres[word.strip("'")] = [int(p) for p in positions.split(",")]
    ours = dict(blind_index.terms(text))
    assert postgres == ours


async def test_rekey_runs_in_the_background_on_a_worker(
    resources: Resources, database: str, redis_db: Redis, user_id: str
) -> None:
    key_a, key_b = new_key(), new_key()
    async with stack_on(
        resources, postgres_url=database, redis_db=REDIS_DB, encryption_key=SecretStr(key_a)
    ) as (channel, _):
        api = Stubs(channel)
        await api.append(user_id, "s", "one", "two")
        await api.create(user_id, "Plays chess on Sundays")
    async with stack_on(
        resources,
        postgres_url=database,
        redis_db=REDIS_DB,
        encryption_key=SecretStr(f"{key_b},{key_a}"),
    ) as (channel, own):
        assert await enqueue_rekey(own.arq)
        key_b_id = Cipher([key_b]).key_id
        async with asyncio.timeout(60):
            while True:
                async with await psycopg.AsyncConnection.connect(database) as conn:
                    cursor = await conn.execute("SELECT key_id FROM encryption_keys")
                    registered = [row[0] for row in await cursor.fetchall()]
                if registered == [key_b_id]:  # forgotten once nothing needs A
                    break
                await asyncio.sleep(0.1)
        assert {key_id for _, _, key_id in await _raw_tokens(database)} == {key_b_id}
        api = Stubs(channel)
        assert await api.history(user_id, "s") == ["one", "two"]
        assert await api.search(user_id, "chess", pb.SEARCH_MODE_KEYWORD) == [
            "Plays chess on Sundays"
        ]
