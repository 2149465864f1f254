"""Embedding backends on CPU: torch against ONNX Runtime (fp32 and int8).

    .venv/bin/python -m bench.embeddings [--threads 2] [--texts 320] [--queries 200]

For each backend: throughput at batch 64 (texts/s), single-query latency (p50,
p99), and the cosine of its vectors to torch's on the same texts; ratios are to
torch measured in the same run. The default backend in server/settings.py is
the fastest one whose minimum cosine stays >= 0.99.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Literal

import numpy as np
import numpy.typing as npt

from server.embedding import Embedder
from server.settings import Settings

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")

_SUBJECTS = ["The user", "My sister", "Their manager", "Alex", "The customer", "Our team lead"]
_FACTS = [
    "prefers oat milk in coffee and avoids dairy",
    "is allergic to peanuts and carries an epinephrine pen",
    "moved from Lyon to Montreal in March for a new job",
    "runs a half marathon every autumn and trains on weekends",
    "asked to be reminded about the dentist appointment on Thursday",
    "uses vim with a custom colour scheme and hates tabs",
    "is planning a two-week trip to Japan next spring",
    "has two cats named Miso and Tofu",
    "works on the billing service and is on call this week",
    "wants weekly summaries sent on Monday mornings, not Fridays",
    "said the last quarterly report had wrong revenue figures",
    "is learning Portuguese before visiting family in Porto",
]
_TAILS = ["", " according to the last conversation", " (mentioned twice)", " since 2021"]


def realistic_sentences(count: int) -> list[str]:
    """Memory-like sentences of varied length, deterministic."""
    sentences = [
        f"{subject} {fact}{tail}." for tail in _TAILS for fact in _FACTS for subject in _SUBJECTS
    ]
    return (sentences * (count // len(sentences) + 1))[:count]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    backend: Backend, texts: list[str], queries: int, threads: int
) -> tuple[float, float, float, npt.NDArray[np.float32]]:
    settings = Settings(
        embedding_backend=backend, embedding_threads=threads, embedding_batch_size=64
    )
    embedder = Embedder.load(settings)
    embedder.embed(texts[:64])  # warm up: first calls allocate and pick kernels
    started = time.perf_counter()
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    throughput = len(texts) / (time.perf_counter() - started)
    latencies = []
    for text in texts[:queries]:
        started = time.perf_counter()
        embedder.embed([text])
        latencies.append((time.perf_counter() - started) * 1000)
    return throughput, _percentile(latencies, 0.5), _percentile(latencies, 0.99), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=320)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    texts = realistic_sentences(args.texts)
    results = {b: measure(b, texts, args.queries, args.threads) for b in BACKENDS}
    base_rate, base_p50, _, base_vectors = results["torch"]
    print(f"all-MiniLM-L6-v2, {args.threads} threads, {len(texts)} texts, batch 64")
    print(
        f"{'backend':<10} {'texts/s':>8} {'x torch':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'p50 x':>6} {'cos min':>8} {'cos mean':>9}"
    )
    for backend, (rate, p50, p99, vectors) in results.items():
        cosines = (vectors * base_vectors).sum(axis=1)
        print(
            f"{backend:<10} {rate:>8.0f} {rate / base_rate:>8.2f} {p50:>7.2f} {p99:>7.2f}"
            f" {p50 / base_p50:>6.2f} {cosines.min():>8.4f} {statistics.fmean(cosines):>9.4f}"
        )


if __name__ == "__main__":
    main()
