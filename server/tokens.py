"""Token counting for history budgets, with an OpenAI BPE that ships offline."""

from __future__ import annotations

import bpe_openai

from server.errors import FailedPrecondition


class TokenCounter:
    """Counts tokens the way OpenAI-style chat models do (o200k_base by default)."""

    def __init__(self, encoding_name: str) -> None:
        known = bpe_openai.list_encoding_names()
        if encoding_name not in known:
            raise FailedPrecondition(
                f"MEMORYD_TOKENIZER={encoding_name!r} is not a known encoding; "
                f"use one of {', '.join(sorted(known))}"
            )
        self.encoding_name = encoding_name
        self._encoding = bpe_openai.get_encoding(encoding_name)

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text))
