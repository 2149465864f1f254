"""Extractors for tests that need one to misbehave: fail, or wait until told."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from server.extraction.candidates import Candidate, ExtractionFailed, Extractor
from server.models import StoredMessage


class FailingExtractor:
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def extract(self, messages: Sequence[StoredMessage]) -> list[Candidate]:
        self.calls += 1
        raise ExtractionFailed("the model returned no valid JSON after 3 tries")

    async def aclose(self) -> None:
        pass


class GatedExtractor:
    """Wraps a real extractor; each call waits until `gate` is set, so a test
    can act (append, kill) while a job is in the middle of its run."""

    def __init__(self, inner: Extractor) -> None:
        self.inner = inner
        self.name = inner.name
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0

    async def extract(self, messages: Sequence[StoredMessage]) -> list[Candidate]:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        return await self.inner.extract(messages)

    async def aclose(self) -> None:
        await self.inner.aclose()
