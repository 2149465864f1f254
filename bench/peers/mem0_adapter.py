"""mem0 (PyPI mem0ai) in local mode, driven in its own virtualenv by
mem0_driver.py over stdin/stdout JSON lines (driver_client.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.peers.adapter import Hit, Item, PeerAdapter
from bench.peers.driver_client import DriverClient
from bench.peers.venvs import ensure_venv_async

NAME = "mem0"
_DRIVER = Path(__file__).resolve().parent / "mem0_driver.py"
_START_TIMEOUT_S = 300.0
# Requests the driver serves at once (its thread pool): mem0 is a library,
# so this is the application's worker threads.
DRIVER_THREADS = 16


class Mem0Adapter(PeerAdapter):
    name = NAME
    has_sessions = False
    notes = (
        "library in-process (driver in its own venv, 16 threads); local Qdrant (on-disk path) "
        "+ SQLite history; huggingface embedder (torch, 1 thread), same model; add(infer=False); "
        "semantic only (its BM25/entity signals need models fetched at run time)"
    )

    def __init__(self, cache: Path) -> None:
        self._cache = cache
        self._scratch: Path | None = None
        self._driver: DriverClient | None = None

    async def start(self) -> None:
        bin_dir = await ensure_venv_async(self._cache, NAME, "3.11")
        self._scratch = Path(tempfile.mkdtemp(prefix="memoryd-peers-mem0-"))
        self._driver = DriverClient(NAME, self._scratch / "driver.log")
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env.update({"HF_HUB_OFFLINE": "1", "MEM0_TELEMETRY": "False", "OMP_NUM_THREADS": "1"})
        await self._driver.start(
            [
                str(bin_dir / "python"),
                str(_DRIVER),
                "--data",
                str(self._scratch / "data"),
                "--threads",
                str(DRIVER_THREADS),
            ],
            env,
            _START_TIMEOUT_S,
        )

    async def stop(self) -> None:
        if self._driver is not None:
            await self._driver.stop()
            self._driver = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    @property
    def driver(self) -> DriverClient:
        if self._driver is None:
            raise RuntimeError("mem0 is not started")
        return self._driver

    async def add_memory(self, user_id: str, item: Item) -> None:
        await self.driver.call("add", user=user_id, source_id=item.source_id, text=item.text)

    async def add_memories(self, user_id: str, items: Sequence[Item]) -> None:
        await self.driver.call(
            "add_many",
            user=user_id,
            items=[{"source_id": item.source_id, "text": item.text} for item in items],
        )

    async def search(self, user_id: str, query: str, k: int) -> list[Hit]:
        found = await self.driver.call("search", user=user_id, query=query, k=k)
        return [Hit(str(hit["source_id"]), str(hit["text"])) for hit in found]

    def pids(self) -> list[int]:
        pid = self._driver.pid if self._driver is not None else None
        return [] if pid is None else [pid]
