"""stack.json: where a running `memoryd up` tells other tools its store URLs.

Written when the embedded stores are up, removed when they stop; so a second
terminal can run `memoryd serve` or `memoryd migrate` with no URLs set.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "stack.json"


@dataclass(frozen=True)
class StoreUrls:
    """URLs of the stores; None where that store is external (not ours to publish)."""

    postgres_url: str | None
    redis_url: str | None


@dataclass(frozen=True)
class StackInfo:
    """What stack.json holds: the URLs and the pid of the `memoryd up` that owns them."""

    urls: StoreUrls
    owner_pid: int

    def owner_alive(self) -> bool:
        try:
            os.kill(self.owner_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, but another user's
            return True
        return True


class StackFileError(RuntimeError):
    """stack.json exists but cannot be read."""


def path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def write(data_dir: Path, urls: StoreUrls) -> None:
    document = {**asdict(urls), "pid": os.getpid()}
    target = path(data_dir)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    # Readers never see a half-written file.
    tmp.replace(target)


def read(data_dir: Path) -> StackInfo | None:
    """The stack.json under `data_dir`, or None when there is none."""
    target = path(data_dir)
    try:
        document = json.loads(target.read_text())
        return StackInfo(
            urls=StoreUrls(
                postgres_url=_optional_str(document, "postgres_url"),
                redis_url=_optional_str(document, "redis_url"),
            ),
            owner_pid=int(document["pid"]),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StackFileError(f"cannot read {target}: {exc}") from exc


def remove(data_dir: Path) -> None:
    path(data_dir).unlink(missing_ok=True)


def _optional_str(document: dict[str, object], key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value
