"""The pipelined Redis connection of the session window, against real Valkey."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ResponseError

from server.stack_file import StoreUrls
from server.stores.redis_mux import MultiplexedRedis, Script

ECHO_KEY = Script("return {KEYS[1], ARGV[1]}")


@pytest.fixture
def redis_url(store_urls: StoreUrls) -> str:
    assert store_urls.redis_url is not None
    return store_urls.redis_url


@pytest.fixture
async def mux(redis_url: str) -> AsyncIterator[MultiplexedRedis]:
    client = MultiplexedRedis(redis_url, timeout=5.0)
    yield client
    await client.aclose()


async def test_concurrent_calls_each_get_their_own_reply(mux: MultiplexedRedis) -> None:
    replies = await asyncio.gather(
        *(mux.eval_script(ECHO_KEY, [f"mux:{i}"], [i]) for i in range(500))
    )
    assert replies == [[f"mux:{i}".encode(), str(i).encode()] for i in range(500)]


async def test_a_script_the_server_forgot_is_loaded_again(mux: MultiplexedRedis) -> None:
    assert await mux.eval_script(ECHO_KEY, ["k"], ["a"]) == [b"k", b"a"]
    await mux.execute("SCRIPT", "FLUSH")
    assert await mux.eval_script(ECHO_KEY, ["k"], ["b"]) == [b"k", b"b"]


async def test_an_error_reply_fails_only_its_own_call(mux: MultiplexedRedis) -> None:
    await mux.execute("SET", "mux:string", "x")
    replies: list[object] = await asyncio.gather(
        mux.execute("LRANGE", "mux:string", 0, -1),
        mux.execute("GET", "mux:string"),
        return_exceptions=True,
    )
    wrong_type, fine = replies
    assert isinstance(wrong_type, ResponseError) and "WRONGTYPE" in str(wrong_type)
    assert fine == b"x"


async def test_a_dropped_connection_is_replaced(mux: MultiplexedRedis, redis_url: str) -> None:
    await mux.execute("CLIENT", "SETNAME", "mux-test")
    await mux.execute("SET", "mux:survives", "1")
    # Another client kills ours, as a Redis restart or a network fault would.
    killer = MultiplexedRedis(redis_url, timeout=5.0)
    try:
        assert await killer.execute("CLIENT", "KILL", "USER", "default", "SKIPME", "yes") >= 1
    finally:
        await killer.aclose()
    # The script retries once on a fresh connection; plain commands reconnect too.
    assert await mux.eval_script(ECHO_KEY, ["k"], ["after"]) == [b"k", b"after"]
    assert await mux.execute("GET", "mux:survives") == b"1"


async def test_a_call_the_server_does_not_answer_times_out(redis_url: str) -> None:
    mux = MultiplexedRedis(redis_url, timeout=0.3)
    pauser = MultiplexedRedis(redis_url, timeout=5.0)
    try:
        await mux.execute("PING")
        # The server holds every other client's commands for a second.
        await pauser.execute("CLIENT", "PAUSE", 1000, "ALL")
        with pytest.raises(TimeoutError):
            await mux.execute("PING")
        await pauser.execute("CLIENT", "UNPAUSE")
        assert await mux.execute("PING") == b"PONG"
    finally:
        await mux.aclose()
        await pauser.aclose()
