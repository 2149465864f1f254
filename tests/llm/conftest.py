"""The llama.cpp server the LLM extractor's tests talk to, once per run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.llama import LlamaServer, running_llama_server


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    with running_llama_server() as server:
        yield server
