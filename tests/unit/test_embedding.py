"""Embedder logic with a fake encoder that counts its calls, then the real
model's default backend against torch's vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

from bench.textgen import SentenceGenerator
from server.embedding import (
    EMBEDDING_DIMENSION,
    QUERY_CACHE_SIZE,
    Embedder,
    check_dimension,
    stored_model_name,
)
from server.errors import FailedPrecondition
from server.job_queue import QUEUE_NAME, enqueue_embedding
from server.onnx_encoder import cached_model
from server.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


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
            {
                "memory_ids": ["a", "b"],
                # No call in progress: no request id to carry to the worker.
                "telemetry": {},
                "_job_id": "embed:a",
                "_queue_name": QUEUE_NAME,
            },
        )
    ]


def test_batches_group_texts_of_similar_length_and_vectors_keep_input_order() -> None:
    encoder = CountingEncoder()
    texts = ["a" * 30, "b", "c" * 10, "d" * 2, "e" * 25, "f" * 3]
    vectors = _embedder(encoder, batch_size=2).embed(texts)
    # Shortest first, so each batch pads to a length close to its texts'.
    assert [[len(text) for text in batch] for batch in encoder.batches] == [
        [1, 2],
        [3, 10],
        [25, 30],
    ]
    assert [vector.index(1.0) for vector in vectors] == [len(text) for text in texts]
    array = _embedder(CountingEncoder(), batch_size=4).embed_array(texts)
    assert array.shape == (len(texts), EMBEDDING_DIMENSION)
    assert [int(row.argmax()) for row in array] == [len(text) for text in texts]


# -- the real model: the default backend against torch ------------------------

# Varied on purpose: int8 and other approximations drift most on very short
# texts, and long ones exercise truncation at max_seq_length.
ACCURACY_TEXTS = [
    "ok",
    "no",
    "thanks!",
    "lol",
    "Call mom",
    "N/A",
    "🙂",
    "Prefers tea.",
    "Le client préfère être contacté par courriel le matin.",
    "El usuario es alérgico a los cacahuetes.",
    "ユーザーは猫を二匹飼っている。",
    "SELECT * FROM users WHERE id = 7;",
    "https://example.com/some/path?query=1&other=2",
    "!!!!!!!!!!!!!!!!!!!!!!!!",
    "UPPERCASE NOTE ABOUT THE USER'S FAVORITE BAND, METALLICA",
    " ".join(["The user asked about rail passes, ryokans and vegetarian food in Kyoto."] * 40),
    *SentenceGenerator(5).distinct(150),
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def torch_model() -> SentenceTransformer:
    return Embedder.load_sentence_transformer(Settings())


def test_the_default_backend_matches_torch_on_varied_texts(
    cache_dir: Path, torch_model: SentenceTransformer
) -> None:
    embedder = Embedder.load(Settings(embedding_cache_dir=cache_dir))
    vectors = np.asarray(embedder.embed(ACCURACY_TEXTS))
    expected = torch_model.encode(
        ACCURACY_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    assert vectors.shape == (len(ACCURACY_TEXTS), EMBEDDING_DIMENSION)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = (vectors * expected).sum(axis=1)
    assert cosines.min() >= 0.99, ACCURACY_TEXTS[int(cosines.argmin())]


def test_the_built_onnx_model_is_reused_and_rebuilt_when_corrupted(
    cache_dir: Path, torch_model: SentenceTransformer
) -> None:
    path = cached_model(torch_model, cache_dir=cache_dir, quantize=False)
    built = path.stat().st_mtime_ns
    assert cached_model(torch_model, cache_dir=cache_dir, quantize=False) == path
    assert path.stat().st_mtime_ns == built  # reused, not rebuilt
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["min_cosine_to_torch"] >= 0.999

    with path.open("r+b") as handle:  # a truncated copy, a disk error...
        handle.truncate(1000)
    assert cached_model(torch_model, cache_dir=cache_dir, quantize=False) == path
    assert path.stat().st_size > 1000
    assert manifest["sha256"] == json.loads(path.with_suffix(".json").read_text())["sha256"]


def test_a_valid_cached_model_is_used_without_writing_beside_it(
    cache_dir: Path, torch_model: SentenceTransformer
) -> None:
    # An image bakes the model into a read-only filesystem; even the lock file
    # must not be needed to use it.
    path = cached_model(torch_model, cache_dir=cache_dir, quantize=False)
    (path.parent / ".lock").unlink(missing_ok=True)
    before = sorted(p.name for p in path.parent.iterdir())
    assert cached_model(torch_model, cache_dir=cache_dir, quantize=False) == path
    assert sorted(p.name for p in path.parent.iterdir()) == before
