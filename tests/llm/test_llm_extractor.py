"""The LLM extractor against a real llama.cpp server serving SmolLM2-135M-Instruct.

A 135M model extracts poorly, so these tests hold the wire protocol and the checks
to account, not the quality: every call ends in valid candidates or a clean
ExtractionFailed, never in half-valid output.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.extraction.candidates import ExtractionFailed
from server.extraction.llm import LlmExtractor, ResponseFormat
from server.models import Role, StoredMessage
from server.settings import Settings
from tests.support.llama import LlamaServer

pytestmark = pytest.mark.llm

TRANSCRIPT = [
    (Role.USER, "Hi! I moved to Lisbon last month and I work as a nurse."),
    (Role.ASSISTANT, "Welcome to Lisbon! How are you finding it?"),
    (Role.USER, "Great. I'm vegetarian, so the food took some exploring."),
    (Role.USER, "What's the weather like tomorrow?"),
]


def transcript(pairs: Sequence[tuple[Role, str]] = TRANSCRIPT) -> list[StoredMessage]:
    return [
        StoredMessage(
            seq=seq,
            id=f"msg-{seq}-{'x' * 24}",
            role=role,
            content=content,
            name="",
            run_id="",
            create_time=datetime(2026, 1, 1, tzinfo=UTC),
            token_count=len(content.split()),
        )
        for seq, (role, content) in enumerate(pairs, start=1)
    ]


def llm_settings(server: LlamaServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_base_url": server.base_url,
        "llm_model": server.model,
        "llm_retry_backoff": timedelta(milliseconds=10),
        # A 135M model on a busy 2-core machine is slow, and a request that
        # times out keeps the server busy: short answers, a long timeout.
        "llm_max_tokens": 384,
        "llm_timeout": timedelta(minutes=10),
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def extractor(llama_server: LlamaServer) -> AsyncIterator[LlmExtractor]:
    opened = LlmExtractor(llm_settings(llama_server))
    yield opened
    await opened.aclose()


async def test_a_transcript_yields_valid_candidates_or_a_clean_failure(
    extractor: LlmExtractor, llama_server: LlamaServer
) -> None:
    messages = transcript()
    try:
        candidates = await extractor.extract(messages)
    except ExtractionFailed as exc:
        assert "gave invalid output 3 times" in str(exc), str(exc)
    else:
        ids = {m.id for m in messages}
        for candidate in candidates:
            assert candidate.content.strip() == candidate.content != ""
            assert candidate.source_message_ids
            assert set(candidate.source_message_ids) <= ids
            assert 0 <= candidate.confidence <= 1
    assert extractor.name == f"llm:{llama_server.model}"


async def test_a_server_without_json_schema_support_gets_json_object_with_the_schema(
    extractor: LlmExtractor,
) -> None:
    # llama-cpp-python's server refuses OpenAI's json_schema format (with a 500
    # naming response_format); the extractor falls back and keeps what worked.
    assert extractor.response_format is None
    # The model's output may be invalid; the format was settled before that.
    with contextlib.suppress(ExtractionFailed):
        await extractor.extract(transcript())
    assert extractor.rejected_formats == (ResponseFormat.JSON_SCHEMA,)
    assert extractor.response_format is ResponseFormat.JSON_OBJECT_SCHEMA


async def test_the_accepted_format_is_remembered_across_calls(llama_server: LlamaServer) -> None:
    extractor = LlmExtractor(llm_settings(llama_server, llm_max_output_retries=0))
    try:
        for call in range(2):
            sent_before = extractor.requests_sent
            try:
                await extractor.extract(transcript()[:1])
            except ExtractionFailed as exc:
                assert "gave invalid output 1 times" in str(exc)
            sent = extractor.requests_sent - sent_before
            # The first call tries json_schema, then json_object; later calls go
            # straight to the format that worked.
            assert sent == (2 if call == 0 else 1)
    finally:
        await extractor.aclose()


async def test_output_cut_off_by_max_tokens_fails_cleanly_after_retries(
    llama_server: LlamaServer,
) -> None:
    extractor = LlmExtractor(
        llm_settings(llama_server, llm_max_tokens=16, llm_max_output_retries=1)
    )
    try:
        with pytest.raises(ExtractionFailed) as failure:
            await extractor.extract(transcript())
    finally:
        await extractor.aclose()
    message = str(failure.value)
    assert "gave invalid output 2 times" in message
    assert "cut off at 16 tokens" in message
    assert llama_server.base_url in message


async def test_a_wrong_path_fails_at_once_naming_the_setting_to_check(
    llama_server: LlamaServer,
) -> None:
    wrong = llama_server.base_url.removesuffix("/v1") + "/not-v1"
    extractor = LlmExtractor(llm_settings(llama_server, llm_base_url=wrong))
    try:
        with pytest.raises(ExtractionFailed, match="MEMORYD_LLM_BASE_URL") as failure:
            await extractor.extract(transcript())
    finally:
        await extractor.aclose()
    assert "HTTP 404" in str(failure.value)
    assert extractor.requests_sent == 1  # not retried: retrying cannot fix it


async def test_messages_with_nothing_from_the_user_are_not_sent(
    extractor: LlmExtractor,
) -> None:
    assistant_only = transcript([(Role.ASSISTANT, "How can I help?")])
    assert await extractor.extract(assistant_only) == []
    assert await extractor.extract([]) == []
    assert extractor.requests_sent == 0
