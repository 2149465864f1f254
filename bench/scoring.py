"""Evidence recall@k and hit@k: pure functions, no I/O.

Recall@k of one question is the share of its evidence message ids found among
the source_message_ids of the top-k memories returned for its query (DESIGN.md);
hit@k is 1 when at least one evidence id is found. Questions without evidence
(e.g. adversarial ones whose answer is "not mentioned") cannot be scored and are
counted apart, never as 0 or 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one question's search did."""

    question_id: str
    category: str
    recall: float
    hit: bool


def evidence_recall(evidence: Sequence[str], found: Iterable[str]) -> float:
    """The share of distinct evidence ids among `found`."""
    wanted = set(evidence)
    if not wanted:
        raise ValueError("recall of a question without evidence is undefined")
    return len(wanted & set(found)) / len(wanted)


def score(
    question_id: str, category: str, evidence: Sequence[str], top_k_sources: Sequence[Sequence[str]]
) -> Outcome:
    """Score one question from the source_message_ids of each of its top-k results."""
    found = {message_id for sources in top_k_sources for message_id in sources}
    recall = evidence_recall(evidence, found)
    return Outcome(question_id=question_id, category=category, recall=recall, hit=recall > 0)


def aggregate(outcomes: Sequence[Outcome], k: int) -> dict[str, Any]:
    """Mean recall@k and hit@k over all questions and per category (sorted by name).

    Categories are averaged over their own questions; the overall figure is
    over questions, not a mean of category means, so big categories weigh more.
    """
    by_category: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_category.setdefault(outcome.category, []).append(outcome)
    return {
        **_means(outcomes, k),
        "by_category": {name: _means(by_category[name], k) for name in sorted(by_category)},
    }


def _means(outcomes: Sequence[Outcome], k: int) -> dict[str, Any]:
    n = len(outcomes)
    recall = sum(o.recall for o in outcomes) / n if n else 0.0
    hit = sum(1 for o in outcomes if o.hit) / n if n else 0.0
    return {f"recall@{k}": round(recall, 4), f"hit@{k}": round(hit, 4), "questions": n}
