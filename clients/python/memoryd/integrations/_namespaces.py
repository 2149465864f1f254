"""How LangGraph items map onto memoryd facts (no I/O here).

An item (namespace, key, value) is one FACT memory of one user:
- user: a fixed user id, or the namespace label at `user_index`;
- fact key: "lg:" + JSON [namespace, key] (a hash when that is too long);
- topics: one per namespace prefix, the empty one included, so a search
  under any prefix is a memoryd topic filter;
- content: the text of the indexed fields (the whole value as JSON by
  default), which memoryd embeds and full-text indexes;
- metadata["langgraph"]: namespace, key, the value as JSON (so it reads back
  exactly, ints stay ints) and whether it may be found by a query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from google.protobuf import json_format
from langgraph.store.base import InvalidNamespaceError, Item, SearchItem, get_text_at_path

from memoryd.v1 import memory_service_pb2 as mpb

_PREFIX = "lg:"
_HASHED = "lg#"
MAX_ID = 128  # memoryd's default limit on ids, keys and topics
MAX_DEPTH = 31  # memoryd allows 32 topics a memory: one per prefix, the root included
METADATA_KEY = "langgraph"


def _label(parts: Sequence[Any]) -> str:
    text = _PREFIX + json.dumps(list(parts), ensure_ascii=False, separators=(",", ":"))
    if len(text) <= MAX_ID:
        return text
    return _HASHED + hashlib.sha256(text.encode()).hexdigest()


def fact_key(namespace: tuple[str, ...], key: str) -> str:
    return _label([list(namespace), key])


def prefix_topic(prefix: Sequence[str]) -> str:
    return _label(prefix)


def topics(namespace: tuple[str, ...]) -> list[str]:
    if len(namespace) > MAX_DEPTH:
        raise InvalidNamespaceError(
            f"namespace {namespace} is {len(namespace)} labels deep; memoryd stores at most "
            f"{MAX_DEPTH}"
        )
    return [prefix_topic(namespace[:depth]) for depth in range(len(namespace) + 1)]


@dataclass(frozen=True, slots=True)
class UserMapping:
    """Which memoryd user a namespace belongs to."""

    user_id: str | None = None
    user_index: int = 0

    def user_of(self, namespace: Sequence[str], *, what: str = "namespace") -> str:
        if self.user_id is not None:
            return self.user_id
        if len(namespace) <= self.user_index or namespace[self.user_index] == "*":
            raise InvalidNamespaceError(
                f"{what} {tuple(namespace)} does not name a user: memoryd reads one user's "
                f"memories at a time, and this store takes the user id from label "
                f"{self.user_index} of the namespace"
            )
        return namespace[self.user_index]


def content_of(value: Mapping[str, Any], fields: Sequence[str] | None) -> str:
    """The text memoryd embeds: the indexed fields' text, else the whole value as JSON."""
    texts = [text for path in fields or ("$",) for text in get_text_at_path(value, path)]
    text = "\n".join(t for t in texts if t.strip())
    return text or json.dumps(value, ensure_ascii=False, sort_keys=True)


def metadata_of(
    namespace: tuple[str, ...], key: str, value: Mapping[str, Any], *, searchable: bool
) -> dict[str, Any]:
    return {
        METADATA_KEY: {
            "namespace": list(namespace),
            "key": key,
            "value": json.dumps(value, ensure_ascii=False),
            "searchable": searchable,
        }
    }


@dataclass(frozen=True, slots=True)
class Stored:
    """What a memory says about the item it holds."""

    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    searchable: bool
    created_at: datetime
    updated_at: datetime

    def item(self) -> Item:
        return Item(
            value=self.value,
            key=self.key,
            namespace=self.namespace,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def search_item(self, score: float | None) -> SearchItem:
        return SearchItem(
            self.namespace, self.key, self.value, self.created_at, self.updated_at, score
        )


def stored(memory: mpb.Memory) -> Stored | None:
    """The item a memory holds, or None when it is not one this store wrote."""
    data: Any = json_format.MessageToDict(memory.metadata).get(METADATA_KEY)
    try:
        namespace = tuple(str(label) for label in data["namespace"])
        key = str(data["key"])
        value = json.loads(str(data["value"]))
    except (KeyError, ValueError, TypeError):  # not written by this store
        return None
    return Stored(
        namespace=namespace,
        key=key,
        value=value,
        searchable=bool(data.get("searchable", True)),
        created_at=memory.create_time.ToDatetime(tzinfo=UTC),
        updated_at=memory.update_time.ToDatetime(tzinfo=UTC),
    )


def in_namespace(item: Stored, prefix: Sequence[str]) -> bool:
    return item.namespace[: len(prefix)] == tuple(prefix)


def matches(value: Any, condition: Any) -> bool:
    """LangGraph's filter semantics: equality, nested dicts, $eq $ne $gt $gte $lt $lte."""
    if isinstance(condition, dict):
        if any(str(k).startswith("$") for k in condition):
            return all(_compare(value, op, operand) for op, operand in condition.items())
        return isinstance(value, dict) and all(
            matches(value.get(k), v) for k, v in condition.items()
        )
    if isinstance(condition, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(condition)
            and all(matches(v, c) for v, c in zip(value, condition, strict=True))
        )
    return bool(value == condition)


def _compare(value: Any, op: str, operand: Any) -> bool:
    if op == "$eq":
        return bool(value == operand)
    if op == "$ne":
        return bool(value != operand)
    if value is None:
        return False
    ordered = {"$gt": float.__gt__, "$gte": float.__ge__, "$lt": float.__lt__, "$lte": float.__le__}
    if op not in ordered:
        raise ValueError(f"unsupported filter operator {op!r}")
    return bool(ordered[op](float(value), float(operand)))


def filter_items(items: list[Stored], filter: Mapping[str, Any] | None) -> list[Stored]:
    if not filter:
        return items
    return [i for i in items if all(matches(i.value.get(k), c) for k, c in filter.items())]


def namespace_matches(
    namespace: tuple[str, ...], match_type: Literal["prefix", "suffix"], path: Sequence[str]
) -> bool:
    if len(namespace) < len(path):
        return False
    pairs = (
        zip(namespace, path, strict=False)
        if match_type == "prefix"
        else zip(reversed(namespace), reversed(path), strict=False)
    )
    return all(p == "*" or n == p for n, p in pairs)


def fixed_prefix(path: Sequence[str]) -> tuple[str, ...]:
    """The labels of a match path before its first wildcard."""
    out: list[str] = []
    for label in path:
        if label == "*":
            break
        out.append(label)
    return tuple(out)
