"""Embedder logic without a model: the encoder is a fake that counts its calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from server.embedding import (
    EMBEDDING_DIMENSION,
    QUERY_CACHE_SIZE,
    Embedder,
    check_dimension,
    stored_model_name,
)
from server.errors import FailedPrecondition
from server.job_queue import QUEUE_NAME, enqueue_embedding


class CountingEncoder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.batches.append(texts)
        vectors = np.zeros((len(texts), EMBEDDING_DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row, len(text) % EMBEDDING_DIMENSION] = 1.0
        return vectors


def _embedder(encoder: CountingEncoder, batch_size: int = 64) -> Embedder:
    return Embedder(
        model_name="fake", encode=encoder, dimension=EMBEDDING_DIMENSION, batch_size=batch_size
    )


def test_a_model_of_another_dimension_fails_at_start_naming_the_fix() -> None:
    with pytest.raises(FailedPrecondition, match=r"768-dimensional.*vector\(384\)"):
        check_dimension("all-mpnet-base-v2", 768)
    check_dimension("all-MiniLM-L6-v2", EMBEDDING_DIMENSION)


def test_the_stored_model_name_changes_only_when_vectors_would() -> None:
    assert stored_model_name("m", "torch") == stored_model_name("m", "onnx") == "m"
    assert stored_model_name("m", "onnx-int8") == "m@onnx-int8"


def test_embed_splits_into_batches_and_keeps_order() -> None:
    encoder = CountingEncoder()
    texts = [f"text {'x' * i}" for i in range(5)]
    vectors = _embedder(encoder, batch_size=2).embed(texts)
    assert [len(batch) for batch in encoder.batches] == [2, 2, 1]
    assert [vector.index(1.0) for vector in vectors] == [len(text) for text in texts]


async def test_a_repeated_query_is_served_from_the_cache() -> None:
    encoder = CountingEncoder()
    embedder = _embedder(encoder)
    first = await embedder.embed_query("where does the user live")
    first.append(0.0)  # a caller mutating its copy must not poison the cache
    again = await embedder.embed_query("where does the user live")
    assert len(encoder.batches) == 1
    assert len(again) == EMBEDDING_DIMENSION


async def test_the_query_cache_is_bounded() -> None:
    embedder = _embedder(CountingEncoder())
    for i in range(QUERY_CACHE_SIZE + 10):
        await embedder.embed_query(str(i))
    assert len(embedder._queries) == QUERY_CACHE_SIZE
    assert "0" not in embedder._queries  # least recently used went first


class FakeArq:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, dict[str, Any]]] = []

    async def enqueue_job(self, function: str, **kwargs: Any) -> None:
        self.jobs.append((function, kwargs))


async def test_embedding_jobs_have_deterministic_ids_on_our_queue() -> None:
    arq = FakeArq()
    await enqueue_embedding(arq, ["a", "b"])  # type: ignore[arg-type]
    await enqueue_embedding(arq, [])  # type: ignore[arg-type]
    assert arq.jobs == [
        (
            "embed_memories",
            {"memory_ids": ["a", "b"], "_job_id": "embed:a", "_queue_name": QUEUE_NAME},
        )
    ]
