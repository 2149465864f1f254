"""The local extractor on the labelled utterances and the recall dataset: floors that
catch a regression in the rules, and the scorer's own arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import dataset
from bench.extraction_quality import (
    LABELS,
    RECALL_DATASET,
    Label,
    coverage,
    load_labels,
    message,
    produced_keys,
    score,
)
from server.extraction.candidates import Candidate, Stance
from server.extraction.local import LocalExtractor
from server.memory_models import MemoryKind

HELD_OUT = LABELS.parent / "extraction_heldout.jsonl"
BLIND = LABELS.parent / "extraction_blind.jsonl"


@pytest.mark.parametrize("path", [LABELS, HELD_OUT, BLIND], ids=["labels", "heldout", "blind"])
async def test_local_extractor_meets_its_floors(path: Path) -> None:
    quality = await score(LocalExtractor(), load_labels(path))
    assert quality.utterances >= 45
    assert quality.memory_precision >= 0.95, quality.misses
    assert quality.memory_recall >= 0.95, quality.misses
    assert quality.key_recall >= 0.9, quality.misses
    assert quality.key_precision >= 0.9, quality.misses


async def test_every_candidate_points_at_user_messages_of_its_session() -> None:
    conversations = dataset.load(RECALL_DATASET)
    extractor = LocalExtractor()
    for conversation in conversations:
        for session in conversation.sessions:
            users = {m.id for m in session.messages if m.role == "user"}
            batch = [message(m.id, m.role, m.content) for m in session.messages]
            for candidate in await extractor.extract(batch):
                assert candidate.source_message_ids
                assert set(candidate.source_message_ids) <= users
    cov = await coverage(extractor, conversations)
    assert cov.unattributed_share == 0.0
    assert cov.evidence_coverage >= 0.9


async def test_the_scorer_counts_keys_and_withdrawals() -> None:
    labels = [
        Label("a", "t", "I live in Oslo.", True, ("home_city",)),
        Label("b", "t", "hi", False, ()),
        Label("c", "t", "I'm not vegan anymore.", True, ("retract:diet",)),
        Label("d", "t", "I love jazz.", False, ()),  # labelled wrong on purpose
    ]
    quality = await score(LocalExtractor(), labels)
    assert (quality.memory_precision, quality.memory_recall) == (2 / 3, 1.0)
    assert (quality.key_recall, quality.key_precision) == (1.0, 1.0)
    assert quality.misses == ("d",)


def test_a_keyless_withdrawal_counts_as_one() -> None:
    withdrawn = Candidate("The user drinks coffee.", MemoryKind.SEMANTIC, stance=Stance.RETRACT)
    kept = Candidate("The user likes tea.", MemoryKind.SEMANTIC)
    assert produced_keys([withdrawn, kept]) == {"retract:"}
