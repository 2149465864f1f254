"""Embedding backends on CPU: torch against ONNX Runtime (fp32 and int8).

    .venv/bin/python -m bench.embeddings [--threads 2] [--texts 512] [--rounds 5]

Throughput: memory-like sentences embedded in batches of 64 (texts/s), each
backend once per round, rounds interleaved so a busy machine slows all alike;
prints the best and the median round, the median ratio to torch in the same
round, and per-batch p50/p99 latency. Accuracy: cosine of each backend's
vectors to torch's over a varied set (memory-like sentences, very short
texts, other languages, code, texts past max_seq_length): mean, p1 and min.
The default backend in server/settings.py is the fastest one whose minimum
cosine stays >= 0.99.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Literal

import numpy as np
import numpy.typing as npt

from bench.textgen import SentenceGenerator
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


# The hard cases for approximations: very short texts (one token's error is
# the mean), other scripts, symbols, and a text longer than max_seq_length.
ODD_TEXTS = [
    "ok", "yes", "no", "hi", "?", "42", "a", "thanks!", "lol", "N/A", "Call mom",
    "Prefers tea.", "deadline friday", "🙂",
    "Le client préfère être contacté par courriel le matin.",
    "Der Nutzer wohnt seit 2019 in Berlin und arbeitet als Lehrer.",
    "用户喜欢喝绿茶。", "ユーザーは猫を二匹飼っている。",
    "def f(x): return x ** 2  # squares its input",
    "SELECT * FROM users WHERE id = 7;",
    "https://example.com/some/path?query=1&other=2",
    "Phone: +1 (555) 123-4567, email jane.doe@example.org",
    "!!!!!!!!!!!!!!!!!!!!!!!!", "the the the the the the the the",
    " ".join(["The user asked about rail passes, ryokans and vegetarian food in Kyoto."] * 40),
]  # fmt: skip


def accuracy_texts(count: int) -> list[str]:
    return ODD_TEXTS + realistic_sentences(288) + SentenceGenerator(7).distinct(count)


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(backend: Backend, threads: int) -> Embedder:
    settings = Settings(
        embedding_backend=backend, embedding_threads=threads, embedding_batch_size=64
    )
    embedder = Embedder.load(settings)
    embedder.embed(realistic_sentences(64))  # warm up: first calls allocate and pick kernels
    return embedder


def throughput(embedder: Embedder, texts: list[str]) -> tuple[float, list[float]]:
    """(texts/s, per-batch ms) embedding `texts` in calls of 64, as the worker does."""
    batches = []
    started = time.perf_counter()
    for start in range(0, len(texts), 64):
        begun = time.perf_counter()
        embedder.embed_array(texts[start : start + 64])
        batches.append((time.perf_counter() - begun) * 1000)
    return len(texts) / (time.perf_counter() - started), batches


def cosines(
    vectors: npt.NDArray[np.float32], reference: npt.NDArray[np.float32]
) -> tuple[float, float, float]:
    values = (vectors * reference).sum(axis=1)
    return float(values.mean()), float(np.percentile(values, 1)), float(values.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=512, help="throughput texts per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accuracy-texts", type=int, default=2000)
    args = parser.parse_args()
    texts = SentenceGenerator(3).distinct(args.texts)
    varied = accuracy_texts(args.accuracy_texts)
    embedders = {backend: load(backend, args.threads) for backend in BACKENDS}
    rates: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    ratios: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    batches: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for _ in range(args.rounds):
        row = {}
        for backend, embedder in embedders.items():
            row[backend], per_batch = throughput(embedder, texts)
            batches[backend].extend(per_batch)
        for backend in BACKENDS:
            rates[backend].append(row[backend])
            ratios[backend].append(row[backend] / row["torch"])
    reference = embedders["torch"].embed_array(varied)
    print(
        f"all-MiniLM-L6-v2, {args.threads} threads, {len(texts)} texts x {args.rounds} rounds,"
        f" batch 64; cosine to torch over {len(varied)} varied texts"
    )
    print(
        f"{'backend':<10} {'best/s':>7} {'median/s':>9} {'x torch':>8} {'batch p50':>10}"
        f" {'p99 ms':>7} {'cos mean':>9} {'cos p1':>7} {'cos min':>8}"
    )
    for backend, embedder in embedders.items():
        mean, p1, low = cosines(embedder.embed_array(varied), reference)
        print(
            f"{backend:<10} {max(rates[backend]):>7.0f} {statistics.median(rates[backend]):>9.0f}"
            f" {statistics.median(ratios[backend]):>8.2f}"
            f" {_percentile(batches[backend], 0.5):>10.1f}"
            f" {_percentile(batches[backend], 0.99):>7.1f}"
            f" {mean:>9.4f} {p1:>7.4f} {low:>8.4f}"
        )


if __name__ == "__main__":
    main()
