"""Throughput of the LLM extractor on a JSONL dataset: messages per second.

    MEMORYD_LLM_BASE_URL=http://127.0.0.1:8080/v1 MEMORYD_LLM_MODEL=NAME \\
        memoryd-bench llm-extract --dataset bench/data/tiny.jsonl [--sessions N]

Runs LlmExtractor over every session of the dataset, one session at a time (as one
worker does), and prints messages per second, candidates per message and how many
sessions failed (invalid output after the retries). Quality is measured by the
recall benchmark, not here.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.dataset import load
from server.extraction.candidates import ExtractionFailed
from server.extraction.llm import LlmExtractor
from server.models import Role, StoredMessage
from server.settings import Settings


def _stored(session_messages: Sequence[tuple[str, str, str]]) -> list[StoredMessage]:
    return [
        StoredMessage(
            seq=seq,
            id=message_id,
            role=Role(role),
            content=content,
            name="",
            run_id="",
            create_time=datetime.now(UTC),
            token_count=len(content.split()),
        )
        for seq, (message_id, role, content) in enumerate(session_messages, start=1)
    ]


async def run(dataset: Path, settings: Settings, *, limit: int | None = None) -> None:
    sessions = [
        _stored([(m.id, m.role, m.content) for m in session.messages])
        for conversation in load(dataset)
        for session in conversation.sessions
    ][:limit]
    extractor = LlmExtractor(settings)
    messages = candidates = failed = 0
    started = time.perf_counter()
    try:
        for session in sessions:
            messages += len(session)
            try:
                candidates += len(await extractor.extract(session))
            except ExtractionFailed as exc:
                failed += 1
                print(f"  failed: {exc}")
    finally:
        await extractor.aclose()
    elapsed = time.perf_counter() - started
    fmt = extractor.response_format.value if extractor.response_format else "none"
    print(f"extractor            {extractor.name} at {extractor.base_url}")
    print(f"response format      {fmt}")
    print(f"sessions             {len(sessions)} ({failed} failed after retries)")
    print(f"messages             {messages} in {elapsed:.1f} s")
    print(f"throughput           {messages / elapsed:.2f} messages/s (one worker)")
    print(f"requests             {extractor.requests_sent}")
    print(f"candidates/message   {candidates / max(messages, 1):.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memoryd-bench llm-extract", description=__doc__)
    parser.add_argument("--dataset", type=Path, default=Path("bench/data/tiny.jsonl"))
    parser.add_argument("--sessions", type=int, default=None, help="only the first N sessions")
    args = parser.parse_args(argv)
    settings = Settings()
    if settings.llm_base_url is None:
        parser.error("set MEMORYD_LLM_BASE_URL and MEMORYD_LLM_MODEL")
    asyncio.run(run(args.dataset, settings, limit=args.sessions))
    return 0
