"""A LangGraph long-term memory store backed by memoryd.

    from memoryd.integrations.langgraph import MemorydStore

    store = MemorydStore("localhost:50051")          # namespace[0] is the user id
    store.put(("alice", "preferences"), "food", {"likes": "ramen"})
    store.search(("alice",), query="what does she eat?")
    graph = builder.compile(store=store)

Mapping (see memoryd.integrations._namespaces): each item is one memoryd FACT
of one user, keyed by its namespace and key; its value reads back exactly;
its indexed text (the whole value as JSON unless `index_fields` or put's
`index` name fields) is what memoryd embeds, so `search(query=...)` is
memoryd's hybrid search within the namespace prefix.

Limits:
- Every operation names one user: a search or namespace listing whose prefix
  does not reach the user label raises InvalidNamespaceError (memoryd never
  reads across users). Pass `user_id=` to keep all namespaces under one user.
- Namespaces are at most 31 labels deep.
- list_namespaces and filter-only searches page through all of the user's
  items under the prefix (filters run in the client); query searches see at
  most memoryd's top 100 hits before filters and offset apply.
- TTL (minutes) sets the memory's expiry from the time of the put; reads do
  not extend it (refresh_ttl is ignored).
- A value's indexed text is at most 16 KiB (memoryd's memory size limit).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from memoryd.client import AsyncMemoryClient, MemoryClient, NotFound
from memoryd.integrations import _namespaces as ns
from memoryd.v1 import memory_service_pb2 as mpb

_SEARCH_MAX = 100  # memoryd's largest search limit


class MemorydStore(BaseStore):
    """LangGraph BaseStore over memoryd facts. Sync methods use a MemoryClient,
    async ones an AsyncMemoryClient; each is made on first use from `address`
    and `client_options`, or passed in ready-made."""

    supports_ttl = True

    def __init__(
        self,
        address: str = "localhost:50051",
        *,
        user_id: str | None = None,
        user_index: int = 0,
        index_fields: list[str] | None = None,
        ttl: TTLConfig | None = None,
        client: MemoryClient | None = None,
        aclient: AsyncMemoryClient | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._address = address
        self._options = dict(client_options or {})
        self._client = client
        self._aclient = aclient
        self.users = ns.UserMapping(user_id=user_id, user_index=user_index)
        self.index_fields = index_fields
        self.ttl_config = ttl

    # -- clients ----------------------------------------------------------

    @property
    def client(self) -> MemoryClient:
        if self._client is None:
            self._client = MemoryClient(self._address, **self._options)
        return self._client

    @property
    def aclient(self) -> AsyncMemoryClient:
        if self._aclient is None:  # made in the running event loop
            self._aclient = AsyncMemoryClient(self._address, **self._options)
        return self._aclient

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.close()

    # -- BaseStore --------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return [self._run(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return [await self._arun(op) for op in ops]

    # -- sync -------------------------------------------------------------

    def _run(self, op: Op) -> Result:
        validate_op_namespace(op)
        memories = self.client.memories
        if isinstance(op, GetOp):
            user = self.users.user_of(op.namespace)
            try:
                memory = memories.get_fact(user, ns.fact_key(op.namespace, op.key))
            except NotFound:
                return None
            found = ns.stored(memory)
            return found.item() if found else None
        if isinstance(op, PutOp):
            user = self.users.user_of(op.namespace)
            key = ns.fact_key(op.namespace, op.key)
            if op.value is None:
                with contextlib.suppress(NotFound):
                    memories.delete(user, memories.get_fact(user, key).id, reason="langgraph")
                return None
            memories.add(user, **self._put_fields(op, key))
            return None
        if isinstance(op, SearchOp):
            user = self.users.user_of(op.namespace_prefix, what="namespace prefix")
            topic = [ns.prefix_topic(op.namespace_prefix)]
            if op.query:
                hits = memories.search(
                    op.query, user_id=user, topics=topic, kinds=["fact"], limit=_search_limit(op)
                )
                return _ranked(op, [(h.memory, h.score) for h in hits])
            return _listed(op, memories.get_user_memories(user, topics=topic, kinds=["fact"]))
        if isinstance(op, ListNamespacesOp):
            user, scope = self._listing_scope(op)
            return _namespaces(op, memories.get_user_memories(user, topics=[scope], kinds=["fact"]))
        raise ValueError(f"unknown operation {type(op).__name__}")

    # -- async ------------------------------------------------------------

    async def _arun(self, op: Op) -> Result:
        validate_op_namespace(op)
        memories = self.aclient.memories
        if isinstance(op, GetOp):
            user = self.users.user_of(op.namespace)
            try:
                memory = await memories.get_fact(user, ns.fact_key(op.namespace, op.key))
            except NotFound:
                return None
            found = ns.stored(memory)
            return found.item() if found else None
        if isinstance(op, PutOp):
            user = self.users.user_of(op.namespace)
            key = ns.fact_key(op.namespace, op.key)
            if op.value is None:
                with contextlib.suppress(NotFound):
                    fact = await memories.get_fact(user, key)
                    await memories.delete(user, fact.id, reason="langgraph")
                return None
            await memories.add(user, **self._put_fields(op, key))
            return None
        if isinstance(op, SearchOp):
            user = self.users.user_of(op.namespace_prefix, what="namespace prefix")
            topic = [ns.prefix_topic(op.namespace_prefix)]
            if op.query:
                hits = await memories.search(
                    op.query, user_id=user, topics=topic, kinds=["fact"], limit=_search_limit(op)
                )
                return _ranked(op, [(h.memory, h.score) for h in hits])
            listed = await memories.get_user_memories(user, topics=topic, kinds=["fact"])
            return _listed(op, listed)
        if isinstance(op, ListNamespacesOp):
            user, scope = self._listing_scope(op)
            listed = await memories.get_user_memories(user, topics=[scope], kinds=["fact"])
            return _namespaces(op, listed)
        raise ValueError(f"unknown operation {type(op).__name__}")

    # -- shared -----------------------------------------------------------

    def _put_fields(self, op: PutOp, key: str) -> dict[str, Any]:
        assert op.value is not None
        searchable = op.index is not False
        fields = op.index if isinstance(op.index, list) else self.index_fields
        ttl_minutes = op.ttl
        if ttl_minutes is None and self.ttl_config:
            ttl_minutes = self.ttl_config.get("default_ttl")
        return {
            "content": ns.content_of(op.value, fields),
            "key": key,
            "topics": ns.topics(op.namespace),
            "metadata": ns.metadata_of(op.namespace, op.key, op.value, searchable=searchable),
            "ttl": ttl_minutes * 60 if ttl_minutes else None,
        }

    def _listing_scope(self, op: ListNamespacesOp) -> tuple[str, str]:
        """The user a namespace listing reads, and the narrowest topic it can use."""
        prefixes = [c.path for c in op.match_conditions or () if c.match_type == "prefix"]
        fixed = max((ns.fixed_prefix(p) for p in prefixes), key=len, default=())
        return self.users.user_of(fixed, what="list_namespaces prefix"), ns.prefix_topic(fixed)


def _search_limit(op: SearchOp) -> int:
    wanted = op.offset + op.limit
    # Filters and unsearchable items are dropped in the client: ask for more.
    return _SEARCH_MAX if op.filter else max(1, min(wanted + 10, _SEARCH_MAX))


def _ranked(op: SearchOp, hits: list[tuple[mpb.Memory, float]]) -> list[Any]:
    scored = {}
    items = []
    for memory, score in hits:
        found = ns.stored(memory)
        if found and found.searchable and ns.in_namespace(found, op.namespace_prefix):
            items.append(found)
            scored[id(found)] = score
    kept = ns.filter_items(items, op.filter)[op.offset : op.offset + op.limit]
    return [item.search_item(scored[id(item)]) for item in kept]


def _listed(op: SearchOp, memories: list[mpb.Memory]) -> list[Any]:
    items = [s for m in memories if (s := ns.stored(m)) is not None]
    items = [i for i in items if ns.in_namespace(i, op.namespace_prefix)]
    kept = ns.filter_items(items, op.filter)[op.offset : op.offset + op.limit]
    return [item.search_item(None) for item in kept]


def _namespaces(op: ListNamespacesOp, memories: list[mpb.Memory]) -> list[tuple[str, ...]]:
    found = {s.namespace for m in memories if (s := ns.stored(m)) is not None}
    selected = [
        namespace
        for namespace in found
        if all(
            ns.namespace_matches(namespace, c.match_type, c.path) for c in op.match_conditions or ()
        )
    ]
    if op.max_depth is not None:
        selected = list({namespace[: op.max_depth] for namespace in selected})
    return sorted(selected)[op.offset : op.offset + op.limit]
