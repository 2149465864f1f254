"""Choosing the extractor a worker runs: the LLM one when an endpoint is
configured, otherwise the local one that needs no network and no key.

Imported lazily: each extractor pulls in its own dependencies (an HTTP
client, rule tables), and a worker loads only the one it uses.
"""

from __future__ import annotations

import importlib

from server.embedding import Embedder
from server.extraction.candidates import Extractor
from server.settings import Settings


def build_extractor(settings: Settings, embedder: Embedder) -> Extractor:
    if getattr(settings, "llm_base_url", None):
        llm = importlib.import_module("server.extraction.llm")
        extractor: Extractor = llm.LlmExtractor(settings)
        return extractor
    from server.extraction.local import LocalExtractor

    return LocalExtractor()
