"""The search benchmark's pure parts: text generation, rates, targets."""

from __future__ import annotations

import math

from bench.search import Config, Timeline, make_corpus, parse_args
from bench.textgen import SentenceGenerator


def test_sentences_are_deterministic_and_distinct() -> None:
    first = SentenceGenerator(3).distinct(500)
    assert first == SentenceGenerator(3).distinct(500)
    assert len(set(first)) == 500
    assert first != SentenceGenerator(4).distinct(500)
    assert all("{" not in text for text in first)


def test_quick_and_default_sizes() -> None:
    quick, full = parse_args(["--quick"]), parse_args([])
    assert (quick.memories, quick.users) == (5000, 50)
    assert (full.memories, full.users, full.per_user) == (100_000, 1000, 100)
    custom: Config = parse_args(["--memories", "300", "--users", "7"])
    assert custom.per_user == 43


def test_users_memories_depend_only_on_the_user() -> None:
    corpus = make_corpus(parse_args(["--quick"]))
    assert all(user.startswith(corpus.data_prefix) for user in corpus.users)
    assert corpus.memories_of(3, 10) == corpus.memories_of(3, 20)[:10]


def test_embedding_rate_skips_the_start_and_the_tail() -> None:
    timeline = Timeline([(0.0, 0), (5.0, 0), (6.0, 100), (8.0, 900), (20.0, 1000)])
    assert timeline.rate_between(100, 900) == 400.0
    assert math.isnan(timeline.rate_between(100, 2000))
