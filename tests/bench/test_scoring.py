"""Evidence recall@k and hit@k: pure math."""

from __future__ import annotations

import pytest

from bench.scoring import Outcome, aggregate, evidence_recall, score


def test_recall_is_the_share_of_distinct_evidence_found() -> None:
    assert evidence_recall(["a", "b"], ["b", "x"]) == 0.5
    assert evidence_recall(["a", "a", "b"], ["a", "b"]) == 1.0
    assert evidence_recall(["a"], []) == 0.0


def test_recall_without_evidence_is_undefined() -> None:
    with pytest.raises(ValueError, match="without evidence"):
        evidence_recall([], ["a"])


def test_score_pools_the_source_ids_of_all_results() -> None:
    outcome = score("q", "multi-hop", ["m1", "m7", "m9"], [["m2"], ["m7", "m1"], []])
    assert (outcome.question_id, outcome.category, outcome.hit) == ("q", "multi-hop", True)
    assert outcome.recall == pytest.approx(2 / 3)
    assert score("q", "c", ["m1"], [["m2"]]).hit is False


def test_aggregate_averages_over_questions_and_per_category() -> None:
    outcomes = [
        Outcome("1", "single", 1.0, True),
        Outcome("2", "single", 0.0, False),
        Outcome("3", "multi", 0.5, True),
    ]
    report = aggregate(outcomes, 10)
    assert report["recall@10"] == 0.5
    assert report["hit@10"] == pytest.approx(0.6667)
    assert report["questions"] == 3
    assert list(report["by_category"]) == ["multi", "single"]
    assert report["by_category"]["single"] == {"recall@10": 0.5, "hit@10": 0.5, "questions": 2}
    assert report["by_category"]["multi"] == {"recall@10": 0.5, "hit@10": 1.0, "questions": 1}


def test_aggregate_of_nothing_is_zero_questions() -> None:
    assert aggregate([], 5) == {"recall@5": 0.0, "hit@5": 0.0, "questions": 0, "by_category": {}}
