"""The runner's side of a JSON-lines driver process (a peer library driven
from its own virtualenv): requests tagged with ids, replies matched to
waiting callers, so many calls can be in flight at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.peers.adapter import PeerUnavailable
from bench.peers.processes import first_error_line

_LINE_LIMIT = 64 * 2**20  # search replies are small, but a bulk add's error may not be


class DriverError(RuntimeError):
    """The driver answered a request with an error."""


class DriverClient:
    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[Any] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def start(self, command: Sequence[str], env: Mapping[str, str], timeout_s: float) -> None:
        log = self.log_path.open("wb")
        try:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=dict(env),
                limit=_LINE_LIMIT,
            )
        finally:
            log.close()  # the child has its own copy
        self._ready = asyncio.get_running_loop().create_future()
        self._waiting[0] = self._ready
        self._reader = asyncio.create_task(self._read())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError:
            raise PeerUnavailable(
                f"{self.name} driver not ready after {timeout_s:.0f} s: "
                f"{first_error_line(self.log_path)}"
            ) from None

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while line := await self._process.stdout.readline():
            document = json.loads(line)
            future = self._waiting.pop(int(document.get("id") or 0), None)
            if future is None or future.done():
                continue
            if "error" in document:
                future.set_exception(DriverError(f"{self.name}: {document['error']}"))
            else:
                future.set_result(document.get("result"))
        await self._process.wait()
        failure = PeerUnavailable(
            f"{self.name} driver exited with status {self._process.returncode}: "
            f"{first_error_line(self.log_path)}"
        )
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(failure)
        self._waiting.clear()

    async def call(self, op: str, **arguments: Any) -> Any:
        if self._process is None or self._process.stdin is None:
            raise RuntimeError(f"{self.name} driver is not started")
        if self._process.returncode is not None:
            raise PeerUnavailable(f"{self.name} driver exited: {first_error_line(self.log_path)}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._process.stdin.write(
            (json.dumps({"id": request_id, "op": op, **arguments}) + "\n").encode()
        )
        await self._process.stdin.drain()
        return await future

    async def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            self._process.stdin.close()  # EOF: the driver finishes what it has and exits
        try:
            await asyncio.wait_for(self._process.wait(), 20.0)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._process = None
