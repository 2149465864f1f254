"""The cost of encryption at rest: the same calls with and without a key.

    python -m bench.encryption [--requests N] [--out PATH]

Two servers in this process on one embedded stack, one with
MEMORYD_ENCRYPTION_KEY and one without, each with its own users; calls
alternate between them in rounds (so drift of a shared, noisy machine hits
both alike), one caller at a time over gRPC. Reported: p50 and p99 of each
call and the keyed/plain ratio of the p50s, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from cryptography.fernet import Fernet
from pydantic import SecretStr

from bench.harness import machine_header, machine_info, progress
from bench.stats import format_table, percentile
from memoryd.v1 import memory_service_pb2 as mpb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc
from server.api.app import RunningServer, start_server
from server.crypto import Cipher
from server.embedded import EmbeddedStack
from server.resources import Resources
from server.settings import Settings
from server.stores.migrations import apply_migrations

HISTORY_MESSAGES = 200
MEMORIES = 1000
_WORDS_TEXT = """alice berlin hiking coffee nurse hospital piano guitar train cooking garden
    marathon portuguese lisbon sardines jazz window seat allergic peanuts daughter school
    football weekend mountains library novel painting museum cycling bakery"""
WORDS = _WORDS_TEXT.split()
DEFAULT_OUT = Path(__file__).parent / "results" / "encryption.json"

Call = Callable[[], Awaitable[Any]]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


class Variant:
    """One server (plain or keyed) and the calls measured against it."""

    def __init__(self, name: str, server: RunningServer) -> None:
        self.name = name
        self.server = server
        self.channel = grpc.aio.insecure_channel(server.address)
        self.sessions: Any = session_grpc.SessionServiceStub(self.channel)
        self.memories: Any = memory_grpc.MemoryServiceStub(self.channel)
        self.user = f"bench-{name}-{uuid.uuid4().hex[:8]}"

    async def prepare(self, rng: random.Random) -> None:
        messages = [
            spb.Message(role="user" if i % 2 == 0 else "assistant", content=sentence(rng, 40))
            for i in range(HISTORY_MESSAGES)
        ]
        await self.sessions.AppendMessages(
            spb.AppendMessagesRequest(user_id=self.user, session_id="s", messages=messages)
        )
        for start in range(0, MEMORIES, 100):
            await self.memories.BatchCreateMemories(
                mpb.BatchCreateMemoriesRequest(
                    user_id=self.user,
                    requests=[
                        mpb.CreateMemoryRequest(
                            user_id=self.user,
                            memory=mpb.Memory(
                                kind=mpb.MEMORY_KIND_SEMANTIC,
                                content=f"{sentence(rng, 12)} #{start + i}",
                            ),
                        )
                        for i in range(100)
                    ],
                )
            )

    def calls(self, rng: random.Random) -> dict[str, Call]:
        def history() -> Any:
            return self.sessions.GetHistory(
                spb.GetHistoryRequest(user_id=self.user, session_id="s", last_messages=20)
            )

        def append() -> Any:
            return self.sessions.AppendMessages(
                spb.AppendMessagesRequest(
                    user_id=self.user,
                    session_id="a",
                    messages=[spb.Message(role="user", content=sentence(rng, 40))],
                )
            )

        def keyword() -> Any:
            return self.memories.SearchMemories(
                mpb.SearchMemoriesRequest(
                    user_id=self.user,
                    query=f"{rng.choice(WORDS)} {rng.choice(WORDS)}",
                    mode=mpb.SEARCH_MODE_KEYWORD,
                )
            )

        def create() -> Any:
            return self.memories.CreateMemory(
                mpb.CreateMemoryRequest(
                    user_id=self.user,
                    memory=mpb.Memory(
                        kind=mpb.MEMORY_KIND_SEMANTIC, content=f"{sentence(rng, 12)} {rng.random()}"
                    ),
                )
            )

        return {
            "GetHistory (20 of 200)": history,
            "AppendMessages (1)": append,
            "SearchMemories keyword": keyword,
            "CreateMemory": create,
        }


async def measure(variants: list[Variant], requests: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(7)
    calls = [v.calls(rng) for v in variants]
    latencies: dict[tuple[str, str], list[float]] = {}
    per_round = max(1, requests // rounds)
    for round_ in range(rounds):
        progress(f"round {round_ + 1}/{rounds}")
        for name in calls[0]:
            for variant, own in zip(variants, calls, strict=True):
                samples = latencies.setdefault((name, variant.name), [])
                for _ in range(per_round):
                    started = time.perf_counter()
                    await own[name]()
                    samples.append(time.perf_counter() - started)
    results: dict[str, Any] = {}
    for (name, variant_name), samples in latencies.items():
        ordered = sorted(samples)
        results.setdefault(name, {})[variant_name] = {
            "p50_ms": percentile(ordered, 50) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "n": len(ordered),
        }
    for row in results.values():
        row["ratio_p50"] = row["keyed"]["p50_ms"] / row["plain"]["p50_ms"]
    return results


async def run(requests: int, rounds: int, out: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memoryd-bench-crypt-") as root:
        stack = EmbeddedStack(Path(root) / "stack")
        urls = stack.start()
        try:
            assert urls.postgres_url is not None
            await apply_migrations(urls.postgres_url)
            plain_settings = Settings(
                postgres_url=urls.postgres_url,
                redis_url=urls.redis_url,
                data_dir=Path(root),
                listen="127.0.0.1:0",
                extract_auto=False,
            )
            plain = await Resources.open(plain_settings)
            keyed_settings = plain_settings.model_copy(
                update={"encryption_key": SecretStr(Fernet.generate_key().decode())}
            )
            keyed = dataclasses.replace(
                plain, settings=keyed_settings, cipher=Cipher(keyed_settings.encryption_keys())
            )
            await plain.postgres.wait()
            servers = [
                await start_server(plain_settings, plain),
                await start_server(keyed_settings, keyed),
            ]
            variants = [Variant("plain", servers[0]), Variant("keyed", servers[1])]
            try:
                rng = random.Random(1)
                for variant in variants:
                    progress(f"preparing {variant.name}")
                    await variant.prepare(rng)
                results = await measure(variants, requests, rounds)
                report(results, out)  # before the teardown, whatever it does
                return results
            finally:
                progress("stopping")
                for variant in variants:
                    await variant.channel.close(None)
                for server in servers:
                    await server.stop(grace=1.0)
                progress("servers stopped")
                await plain.close()
                progress("pools closed")
        finally:
            stack.stop()


def render(results: dict[str, Any]) -> str:
    rows = [
        [
            name,
            f"{row['plain']['p50_ms']:.3f}",
            f"{row['keyed']['p50_ms']:.3f}",
            f"{row['ratio_p50']:.2f}x",
            f"{row['plain']['p99_ms']:.3f}",
            f"{row['keyed']['p99_ms']:.3f}",
        ]
        for name, row in results.items()
    ]
    headers = ["call", "p50 plain ms", "p50 keyed ms", "keyed/plain", "p99 plain", "p99 keyed"]
    return format_table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.encryption", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="per call and variant")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the variants")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write JSON")
    args = parser.parse_args(argv)
    asyncio.run(run(args.requests, args.rounds, args.out))
    return 0


def report(results: dict[str, Any], out: Path) -> None:
    info = machine_info()
    print(machine_header(info))
    print(render(results), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
