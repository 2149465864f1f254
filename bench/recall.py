"""Evidence recall benchmark: store a dataset's messages as memories, search
each question, and score evidence recall@k and hit@k.

    memoryd-bench recall --dataset FILE.jsonl --target HOST:PORT [--k 10] [--mode messages|extract]

Reads the held-out evaluation format (DESIGN.md). With --mode messages every
message becomes one SEMANTIC memory, content "Speaker: text", with
source_message_ids=[message id], so this measures retrieval alone, not
extraction. With --mode extract the sessions are appended (AppendMessages)
and extracted by memoryd (ExtractMemories), and the extracted memories are
searched; the same run also does --mode messages for other users, so the two
are printed side by side (bench/extract.py). Each question is searched in
hybrid, keyword-only and
semantic-only mode in the same run. Progress goes to stderr; the report to
stdout, its LAST line one JSON object (the --search-mode figures at the top
level, every mode under "modes").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from bench import extract, scoring
from bench.dataset import Conversation, DatasetError, Session, load
from bench.harness import progress
from bench.stats import format_table, percentile
from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from memoryd.v1 import session_service_pb2 as spb
from memoryd.v1 import session_service_pb2_grpc as session_grpc

SEARCH_MODES: dict[str, pb.SearchMode] = {
    "hybrid": pb.SEARCH_MODE_HYBRID,
    "keyword": pb.SEARCH_MODE_KEYWORD,
    "semantic": pb.SEARCH_MODE_SEMANTIC,
}
INGEST_MODES = ("messages", "extract")
CREATED_AT_NOTE = (
    "CreateMemory takes no create_time: memories are created now, and each one "
    "carries its session's started_at as metadata.said_at"
)


@dataclass(frozen=True)
class Config:
    dataset: Path
    target: str
    k: int
    search_mode: str
    batch_size: int
    concurrency: int
    deadline_s: float
    keep: bool
    run_prefix: str
    mode: str = "messages"
    # Workers the target runs (`memoryd up` runs one): extraction throughput is per worker.
    workers: int = 1


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="memoryd-bench recall", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--dataset", type=Path, required=True, help="JSONL, DESIGN.md format")
    parser.add_argument("--target", required=True, help="memoryd gRPC address, host:port")
    parser.add_argument("--k", type=int, default=10, help="top-k searched and scored (10)")
    parser.add_argument(
        "--mode",
        default="messages",
        help="how memories are made: 'messages' (one per message) or 'extract' (by "
        "memoryd's extraction, printed beside 'messages' from the same run)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="memoryd workers serving the target, for throughput per worker (1)",
    )
    parser.add_argument(
        "--search-mode",
        choices=sorted(SEARCH_MODES),
        default="hybrid",
        help="the mode whose figures are the top-level keys of the JSON (hybrid)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="memories per batch (100)")
    parser.add_argument("--concurrency", type=int, default=8, help="searches in flight (8)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=120.0,
        help="seconds a search may take; the first one of a conversation waits for "
        "its memories to be embedded (120)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the memories (no cleanup)")
    parser.add_argument(
        "--run-prefix", help="prefix of this run's user ids (default: a fresh random one)"
    )
    args = parser.parse_args(argv)
    if args.mode not in INGEST_MODES:
        parser.error(f"--mode must be one of {', '.join(INGEST_MODES)}, not {args.mode!r}")
    if not 1 <= args.k <= 100:
        parser.error("--k must be 1..100 (SearchMemories' limit)")
    return Config(
        dataset=args.dataset,
        target=args.target,
        k=args.k,
        search_mode=args.search_mode,
        batch_size=max(1, args.batch_size),
        concurrency=max(1, args.concurrency),
        deadline_s=args.deadline,
        keep=args.keep,
        mode=args.mode,
        workers=max(1, args.workers),
        # Users are unique per run: content dedup is per user, so a rerun into
        # the same users would get the old memories (and their ids) back.
        run_prefix=args.run_prefix or f"bench-recall-{uuid.uuid4().hex[:8]}",
    )


# --- ingest ----------------------------------------------------------------------


@dataclass
class IngestStats:
    memories: int = 0
    # Acks returning a memory already stored: identical content per user is
    # stored once, so the later message's id is not among any source ids.
    deduplicated: int = 0
    elapsed_s: float = 0.0


def user_of(config: Config, conversation: Conversation) -> str:
    return f"{config.run_prefix}-{conversation.user_id}"


def extract_user_of(config: Config, conversation: Conversation) -> str:
    """The user whose memories come from extraction (--mode extract)."""
    return f"{config.run_prefix}-extract-{conversation.user_id}"


def memory_requests(session: Session, run_prefix: str) -> list[pb.CreateMemoryRequest]:
    """One CreateMemoryRequest per message of a session."""
    said_at = struct_pb2.Struct()
    said_at.update({"said_at": session.started_at})
    return [
        pb.CreateMemoryRequest(
            memory=pb.Memory(
                agent_id=session.agent_id,
                session_id=session.id,
                kind=pb.MEMORY_KIND_SEMANTIC,
                content=f"{message.speaker}: {message.content}",
                source_message_ids=[message.id],
                metadata=said_at,
            ),
            # A retried batch after a lost ack returns the first one's memories.
            request_id=f"{run_prefix}:{session.id}:{message.id}",
        )
        for message in session.messages
    ]


async def ingest(
    stub: memory_grpc.MemoryServiceAsyncStub, config: Config, conversations: Sequence[Conversation]
) -> IngestStats:
    stats = IngestStats()
    seen: set[str] = set()
    started = time.perf_counter()
    for index, conversation in enumerate(conversations, start=1):
        user_id = user_of(config, conversation)
        for session in conversation.sessions:
            requests = memory_requests(session, config.run_prefix)
            for start in range(0, len(requests), config.batch_size):
                reply = await stub.BatchCreateMemories(
                    pb.BatchCreateMemoriesRequest(
                        user_id=user_id, requests=requests[start : start + config.batch_size]
                    ),
                    timeout=config.deadline_s,
                )
                for memory in reply.memories:
                    stats.memories += 1
                    stats.deduplicated += memory.id in seen
                    seen.add(memory.id)
        progress(f"stored conversation {index}/{len(conversations)} ({stats.memories} memories)")
    stats.elapsed_s = time.perf_counter() - started
    return stats


# --- search ----------------------------------------------------------------------


@dataclass
class ModeResult:
    outcomes: list[scoring.Outcome] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)


async def search_conversation(
    stub: memory_grpc.MemoryServiceAsyncStub,
    config: Config,
    conversation: Conversation,
    mode: pb.SearchMode,
    result: ModeResult,
    users: Callable[[Config, Conversation], str] = user_of,
) -> None:
    user_id = users(config, conversation)
    scored = [q for q in conversation.questions if q.evidence]
    for index, question in enumerate(scored):
        started = time.perf_counter()
        reply = await stub.SearchMemories(
            pb.SearchMemoriesRequest(
                user_id=user_id,
                query=question.query,
                limit=config.k,
                mode=mode,
                # Once per conversation: everything after finds its memories
                # embedded too (they were all written before the first search).
                wait_for_index=index == 0,
            ),
            timeout=config.deadline_s,
        )
        if index > 0:  # the waiting search measures the worker, not search
            result.latencies_s.append(time.perf_counter() - started)
        sources = [list(r.memory.source_message_ids) for r in reply.results[: config.k]]
        result.outcomes.append(
            scoring.score(question.id, question.category, question.evidence, sources)
        )


async def search_all(
    stub: memory_grpc.MemoryServiceAsyncStub,
    config: Config,
    conversations: Sequence[Conversation],
    users: Callable[[Config, Conversation], str] = user_of,
) -> dict[str, ModeResult]:
    results: dict[str, ModeResult] = {}
    gate = asyncio.Semaphore(config.concurrency)

    async def one(conversation: Conversation, mode: pb.SearchMode, result: ModeResult) -> None:
        async with gate:  # questions of one conversation run in order, conversations in parallel
            await search_conversation(stub, config, conversation, mode, result, users)

    for name, mode in SEARCH_MODES.items():
        result = results[name] = ModeResult()
        async with asyncio.TaskGroup() as group:
            for conversation in conversations:
                group.create_task(one(conversation, mode, result))
        figures = scoring.aggregate(result.outcomes, config.k)
        progress(
            f"{name} ({'extracted' if users is extract_user_of else 'messages'}): "
            f"{figures['questions']} questions, recall@{config.k} "
            f"{figures[f'recall@{config.k}']:.3f}, hit@{config.k} {figures[f'hit@{config.k}']:.3f}"
        )
    return results


async def cleanup(
    stub: memory_grpc.MemoryServiceAsyncStub,
    config: Config,
    users: Sequence[str],
    sessions: session_grpc.SessionServiceAsyncStub | None = None,
) -> int:
    deleted = 0
    for user_id in users:
        reply = await stub.DeleteUserMemories(
            pb.DeleteUserMemoriesRequest(user_id=user_id), timeout=config.deadline_s
        )
        deleted += reply.deleted_count
        if sessions is not None:  # --mode extract appended transcripts
            await sessions.DeleteUserSessions(
                spb.DeleteUserSessionsRequest(user_id=user_id), timeout=config.deadline_s
            )
    progress(f"deleted {deleted} memories of {len(users)} bench users")
    return deleted


# --- report ----------------------------------------------------------------------


def mode_report(result: ModeResult, k: int) -> dict[str, Any]:
    report = scoring.aggregate(result.outcomes, k)
    ordered = sorted(result.latencies_s)
    if ordered:
        report["search_p50_ms"] = round(percentile(ordered, 50) * 1000, 2)
        report["search_p99_ms"] = round(percentile(ordered, 99) * 1000, 2)
    return report


def build_report(
    config: Config,
    conversations: Sequence[Conversation],
    stats: IngestStats,
    results: dict[str, ModeResult],
    extracted: tuple[extract.ExtractStats, dict[str, ModeResult]] | None = None,
) -> dict[str, Any]:
    modes = {name: mode_report(result, config.k) for name, result in results.items()}
    total_questions = sum(len(c.questions) for c in conversations)
    report = {
        **modes[config.search_mode],
        "search_mode": config.search_mode,
        "k": config.k,
        "ingest_mode": "messages",
        "dataset": str(config.dataset),
        "conversations": len(conversations),
        "memories": stats.memories,
        "deduplicated": stats.deduplicated,
        "ingest_acks_per_s": round(stats.memories / stats.elapsed_s, 1) if stats.elapsed_s else 0,
        "skipped_without_evidence": total_questions - modes[config.search_mode]["questions"],
        "run_prefix": config.run_prefix,
        "kept": config.keep,
        "note": CREATED_AT_NOTE,
        "modes": modes,
    }
    if extracted is None:
        return report
    # --mode extract: the extracted memories' figures on top, --mode messages
    # of the same run beside them.
    extract_stats, extract_results = extracted
    extract_modes = {name: mode_report(r, config.k) for name, r in extract_results.items()}
    beside = {
        key: report[key]
        for key in ("memories", "deduplicated", "ingest_acks_per_s", "note", "modes")
    }
    return {
        **report,
        **extract_modes[config.search_mode],
        "ingest_mode": "extract",
        "memories": extract_stats.memories,
        "deduplicated": 0,
        "modes": extract_modes,
        "extraction": extract.report(extract_stats, workers=config.workers),
        "messages_mode": beside,
    }


def _mode_rows(modes: dict[str, Any], k: int, ingest: str) -> list[list[str]]:
    return [
        [
            ingest,
            name,
            str(figures["questions"]),
            f"{figures[f'recall@{k}']:.3f}",
            f"{figures[f'hit@{k}']:.3f}",
            f"{figures.get('search_p50_ms', float('nan')):.1f}",
        ]
        for name, figures in modes.items()
    ]


def _extraction_lines(report: dict[str, Any]) -> list[str]:
    figures = report["extraction"]
    beside = report["messages_mode"]
    return [
        f"extraction ({figures['extractor']}): {figures['messages']} messages -> "
        f"{figures['memories']} memories ({figures['memories_per_message']:.3f} per message; "
        f"--mode messages: {beside['memories']}), "
        f"{figures['unattributed_share']:.1%} citing no message, "
        f"{figures['mean_sources_per_memory']:.2f} cited messages per memory",
        f"throughput: {figures['messages_per_s_per_worker']:.1f} messages/s per worker "
        f"({figures['messages']} messages appended and extracted in {figures['extract_s']:.1f}s "
        f"by {figures['workers']} worker(s))",
        "",
    ]


def render(report: dict[str, Any]) -> str:
    k = report["k"]
    headers = ["memories", "mode", "questions", f"recall@{k}", f"hit@{k}", "search p50 ms"]
    rows = _mode_rows(report["modes"], k, report["ingest_mode"])
    extraction: list[str] = []
    if report["ingest_mode"] == "extract":
        rows += _mode_rows(report["messages_mode"]["modes"], k, "messages")
        extraction = _extraction_lines(report)
    categories = report["by_category"]
    category_rows = [
        [name, str(f["questions"]), f"{f[f'recall@{k}']:.3f}", f"{f[f'hit@{k}']:.3f}"]
        for name, f in categories.items()
    ]
    return "\n".join(
        [
            f"dataset: {report['dataset']}: {report['conversations']} conversations, "
            f"{report['memories']} memories ({report['deduplicated']} deduplicated)",
            f"note:    {report['note']}",
            "",
            *extraction,
            format_table(headers, rows),
            "",
            f"by category ({report['search_mode']}):",
            format_table(["category", "questions", f"recall@{k}", f"hit@{k}"], category_rows),
        ]
    )


# --- entry point -------------------------------------------------------------------


async def run(config: Config, conversations: Sequence[Conversation]) -> dict[str, Any]:
    users = sorted({user_of(config, c) for c in conversations})
    extracted = None
    async with grpc.aio.insecure_channel(config.target) as channel:
        stub = memory_grpc.MemoryServiceStub(channel)
        try:
            progress(f"storing the messages of {len(conversations)} conversations as memories")
            stats = await ingest(stub, config, conversations)
            results = await search_all(stub, config, conversations)
            if config.mode == "extract":
                users += sorted({extract_user_of(config, c) for c in conversations})
                extracted = await run_extraction(channel, stub, config, conversations)
        finally:
            if not config.keep:
                sessions = session_grpc.SessionServiceStub(channel)
                await cleanup(stub, config, users, sessions if config.mode == "extract" else None)
    return build_report(config, conversations, stats, results, extracted)


async def run_extraction(
    channel: grpc.aio.Channel,
    stub: memory_grpc.MemoryServiceAsyncStub,
    config: Config,
    conversations: Sequence[Conversation],
) -> tuple[extract.ExtractStats, dict[str, ModeResult]]:
    progress(f"appending and extracting the sessions of {len(conversations)} conversations")

    def users(conversation: Conversation) -> str:
        return extract_user_of(config, conversation)

    stats = await extract.ingest(
        channel,
        conversations,
        users,
        concurrency=config.concurrency,
        deadline_s=config.deadline_s,
    )
    await extract.measure(stub, conversations, users, stats, deadline_s=config.deadline_s)
    return stats, await search_all(stub, config, conversations, extract_user_of)


def first_rpc_error(exc: BaseException) -> grpc.aio.AioRpcError | None:
    """The gRPC error behind `exc`, also from inside a TaskGroup's ExceptionGroup."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_rpc_error(inner)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        conversations = load(config.dataset)
    except (OSError, DatasetError) as exc:
        print(f"memoryd-bench recall: {exc}", file=sys.stderr)
        return 2
    if not any(q.evidence for c in conversations for q in c.questions):
        print("memoryd-bench recall: the dataset has no question with evidence", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run(config, conversations))
    except extract.ExtractionJobFailed as exc:
        print(f"memoryd-bench recall: {exc}", file=sys.stderr)
        return 1
    except (grpc.aio.AioRpcError, ExceptionGroup) as exc:
        rpc_error = first_rpc_error(exc)
        if rpc_error is None:
            raise
        print(
            f"memoryd-bench recall: {rpc_error.code().name} from {config.target}: "
            f"{rpc_error.details()}",
            file=sys.stderr,
        )
        return 1
    print(render(report))
    print(json.dumps(report, sort_keys=False), flush=True)
    return 0
