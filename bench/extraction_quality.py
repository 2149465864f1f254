"""Quality and speed of an extractor on labelled utterances, without a server.

    python -m bench.extraction_quality [--labels FILE] [--dataset FILE] [--min-confidence X]

Labels (bench/data/extraction_labels.jsonl), one user utterance a line:
    {"id", "agent", "text", "memory": should it yield any memory, "keys": the fact keys
     it should yield, "retract:<key>" for a withdrawal}
Reports precision and recall of "yields a memory", recall and precision of fact keys,
and, on a recall dataset (bench/data/tiny.jsonl), the share of question evidence that
some candidate points at, which bounds evidence recall@k from above. Speed is messages
per second in one thread, beside the cost of embedding the same messages when the
packaged embedding model is available (a ratio, since timings here are noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import dataset
from server.extraction.candidates import Candidate, Extractor, Stance
from server.extraction.local import LocalExtractor
from server.models import Role, StoredMessage

DATA = Path(__file__).parent / "data"
LABELS = DATA / "extraction_labels.jsonl"
RECALL_DATASET = DATA / "tiny.jsonl"


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    agent: str
    text: str
    memory: bool
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Quality:
    utterances: int
    memory_precision: float
    memory_recall: float
    key_recall: float
    key_precision: float
    expected_keys: int
    misses: tuple[str, ...]  # ids of utterances scored wrong, to read


@dataclass(frozen=True, slots=True)
class Coverage:
    questions: int
    evidence_coverage: float
    candidates_per_user_message: float
    unattributed_share: float


def load_labels(path: Path) -> list[Label]:
    labels = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        doc = json.loads(line)
        try:
            labels.append(
                Label(doc["id"], doc["agent"], doc["text"], bool(doc["memory"]), tuple(doc["keys"]))
            )
        except KeyError as missing:
            raise ValueError(f"{path}:{number}: missing {missing}") from None
    return labels


def message(message_id: str, role: str, content: str) -> StoredMessage:
    return StoredMessage(
        seq=0,
        id=message_id,
        role=Role(role),
        content=content,
        name="",
        run_id="",
        create_time=datetime.now(UTC),
        token_count=0,
    )


def produced_keys(candidates: Sequence[Candidate]) -> set[str]:
    """The keys a batch states; a withdrawal is "retract:<key>" ("retract:" when keyless)."""
    return {
        ("retract:" if c.stance is Stance.RETRACT else "") + c.key
        for c in candidates
        if c.key or c.stance is Stance.RETRACT
    }


async def score(
    extractor: Extractor, labels: Sequence[Label], *, min_confidence: float = 0.0
) -> Quality:
    tp = fp = fn = 0
    key_hits = key_expected = key_produced = key_right = 0
    misses: list[str] = []
    for label in labels:
        found = [
            c
            for c in await extractor.extract([message(label.id, "user", label.text)])
            if c.confidence >= min_confidence
        ]
        said = bool(found)
        tp += said and label.memory
        fp += said and not label.memory
        fn += label.memory and not said
        keys = produced_keys(found)
        expected = set(label.keys)
        key_expected += len(expected)
        key_hits += len(expected & keys)
        key_produced += len(keys)
        key_right += len(keys & expected)
        if said != label.memory or keys != expected:
            misses.append(label.id)
    return Quality(
        utterances=len(labels),
        memory_precision=tp / (tp + fp) if tp + fp else 1.0,
        memory_recall=tp / (tp + fn) if tp + fn else 1.0,
        key_recall=key_hits / key_expected if key_expected else 1.0,
        key_precision=key_right / key_produced if key_produced else 1.0,
        expected_keys=key_expected,
        misses=tuple(misses),
    )


async def coverage(extractor: Extractor, conversations: Sequence[dataset.Conversation]) -> Coverage:
    """How much question evidence the candidates point at, extracting session by session."""
    covered = total = questions = 0
    candidates = user_messages = unattributed = 0
    for conversation in conversations:
        sources: set[str] = set()
        for session in conversation.sessions:
            batch = [message(m.id, m.role, m.content) for m in session.messages]
            user_messages += sum(m.role == "user" for m in session.messages)
            for candidate in await extractor.extract(batch):
                candidates += 1
                unattributed += not candidate.source_message_ids
                sources.update(candidate.source_message_ids)
        for question in conversation.questions:
            questions += 1
            total += len(question.evidence)
            covered += sum(e in sources for e in question.evidence)
    return Coverage(
        questions=questions,
        evidence_coverage=covered / total if total else 0.0,
        candidates_per_user_message=candidates / user_messages if user_messages else 0.0,
        unattributed_share=unattributed / candidates if candidates else 0.0,
    )


@dataclass(frozen=True, slots=True)
class Speed:
    """Messages per second of wall-clock time and of this process's CPU time: on a busy
    machine the second is the steadier figure."""

    wall: float
    cpu: float


async def speed(extractor: Extractor, texts: Sequence[str], *, rounds: int) -> Speed:
    """User messages per second, one message a call (the worst case for batching)."""
    batch = [message(f"m{i}", "user", t) for i, t in enumerate(texts)]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for item in batch:
            await extractor.extract([item])
    count = rounds * len(batch)
    return Speed(count / (time.perf_counter() - wall), count / (time.process_time() - cpu))


def embedding_speed(texts: Sequence[str], *, rounds: int) -> Speed:
    """Messages per second through the configured embedding model, one batch a round."""
    from server.embedding import Embedder
    from server.settings import Settings

    embedder = Embedder.load(Settings())
    embedder.embed(list(texts))  # warm up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        embedder.embed(list(texts))
    count = rounds * len(texts)
    return Speed(count / (time.perf_counter() - wall), count / (time.process_time() - cpu))


def print_quality(name: str, quality: Quality, min_confidence: float) -> None:
    print(f"{name} on {quality.utterances} labelled utterances (confidence >= {min_confidence}):")
    print(
        f"  yields a memory: precision {quality.memory_precision:.3f}  "
        f"recall {quality.memory_recall:.3f}"
    )
    print(
        f"  fact keys ({quality.expected_keys} expected): recall {quality.key_recall:.3f}  "
        f"precision {quality.key_precision:.3f}"
    )
    print(f"  utterances not exactly right: {len(quality.misses)}: {', '.join(quality.misses)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction_quality")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--dataset", type=Path, default=RECALL_DATASET)
    parser.add_argument("--min-confidence", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-embedding-baseline", action="store_true")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    extractor = LocalExtractor()
    labels = load_labels(args.labels)
    for threshold in sorted({0.0, args.min_confidence, 0.6}):
        print_quality(
            extractor.name, await score(extractor, labels, min_confidence=threshold), threshold
        )
    conversations = dataset.load(args.dataset)
    cov = await coverage(extractor, conversations)
    print(
        f"{args.dataset.name}: {cov.questions} questions, evidence covered by candidates "
        f"{cov.evidence_coverage:.3f}, candidates per user message "
        f"{cov.candidates_per_user_message:.2f}, unattributed {cov.unattributed_share:.3f}"
    )
    texts = [label.text for label in labels] + [
        m.content for c in conversations for s in c.sessions for m in s.messages if m.role == "user"
    ]
    rate = await speed(extractor, texts, rounds=args.rounds)
    print(
        f"speed: {rate.wall:,.0f} user messages/s ({rate.cpu:,.0f} per CPU-second), one "
        f"thread, {len(texts)} messages x {args.rounds}"
    )
    if not args.no_embedding_baseline:
        embed = embedding_speed(texts, rounds=max(1, args.rounds // 10))
        print(
            f"  embedding the same messages: {embed.wall:,.0f}/s ({embed.cpu:,.0f} per "
            f"CPU-second, all threads); extraction takes {embed.wall / rate.wall:.3f} of the "
            "time embedding takes"
        )
    await extractor.aclose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
