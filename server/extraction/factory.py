"""Choosing the extractor a worker runs: the LLM one when an endpoint is
configured, otherwise the local one that needs no network and no key.

Imported lazily: each extractor pulls in its own dependencies (an HTTP
client, rule tables), and a worker loads only the one it uses.
"""

from __future__ import annotations

from server.embedding import Embedder
from server.extraction.candidates import Extractor
from server.settings import Settings


def build_extractor(settings: Settings, embedder: Embedder) -> Extractor:
    if settings.llm_base_url:
        from server.extraction.llm import LlmExtractor

        return LlmExtractor(settings)
    from server.extraction.local import LocalExtractor

    return LocalExtractor()
