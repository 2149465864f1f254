"""The LLM extractor with nothing listening at its base URL.

Needs no LLM server, so it runs in the default `make test` (no llm marker).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.extraction.candidates import ExtractionFailed
from server.extraction.llm import LlmExtractor
from server.models import Role, StoredMessage
from server.settings import Settings
from tests.support.processes import free_port


async def test_an_unreachable_endpoint_fails_after_the_configured_retries() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # a closed port: connection refused
    settings = Settings(
        llm_base_url=base_url,
        llm_model="any",
        llm_max_retries=2,
        llm_retry_backoff=timedelta(milliseconds=10),
    )
    extractor = LlmExtractor(settings)
    message = StoredMessage(
        seq=1,
        id="m-1",
        role=Role.USER,
        content="I live in Lisbon.",
        name="",
        run_id="",
        create_time=datetime(2026, 1, 1, tzinfo=UTC),
        token_count=4,
    )
    try:
        with pytest.raises(ExtractionFailed) as failure:
            await extractor.extract([message])
    finally:
        await extractor.aclose()
    assert extractor.requests_sent == 3  # the first try and 2 retries
    text = str(failure.value)
    assert base_url in text
    assert "failed 3 attempts" in text
    assert "check MEMORYD_LLM_BASE_URL" in text
    assert extractor.response_format is None  # nothing was learnt from no answer
