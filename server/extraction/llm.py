"""The LLM extractor: an OpenAI-compatible chat endpoint proposes candidate memories.

Works with any server that speaks the chat completions API (vLLM, llama.cpp's
server, Ollama, hosted APIs). Servers differ in how they constrain output to a JSON
schema, so the extractor asks for OpenAI's strict `json_schema` format first and,
when the server rejects that request, falls back to `json_object` with a schema
(llama.cpp, vLLM) and then to plain `json_object` with the schema in the prompt. The
first format the server accepts is kept for later calls.

Failures are of three kinds, each bounded:
- transport (connection refused, timeout, 429, 5xx): retried with exponential backoff;
- output that does not validate (llm_output.parse_output): the model is asked again;
- anything else (401, 404, a rejected request): fails at once.
When a bound is reached the extractor raises ExtractionFailed with a message that says
what to check; the job fails cleanly.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from server.extraction.candidates import Candidate, ExtractionFailed
from server.extraction.llm_output import InvalidOutput, parse_output, response_schema
from server.extraction.llm_prompt import Prompt, build_prompt
from server.models import Role, StoredMessage
from server.settings import Settings

log = logging.getLogger(__name__)

# No single wait between retries is longer, whatever the backoff has grown to.
_MAX_BACKOFF_S = 30.0
# Statuses with which servers refuse a response_format they do not support.
_FORMAT_REJECTED = frozenset({400, 415, 422})


def _rejects_format(error: openai.APIStatusError) -> bool:
    """Whether the server refused the request's response_format. Most servers say
    so with a 4xx; llama-cpp-python 0.3.x answers json_schema with a 500 whose
    body names the field, which retrying would only repeat."""
    if error.status_code in _FORMAT_REJECTED:
        return True
    return error.status_code >= 500 and "response_format" in error.message


class ResponseFormat(enum.Enum):
    """How the extractor asks the server for JSON, most constrained first."""

    JSON_SCHEMA = "json_schema"  # OpenAI structured outputs, strict
    JSON_OBJECT_SCHEMA = "json_object+schema"  # llama.cpp's server, vLLM
    JSON_OBJECT = "json_object"  # JSON mode; the schema is only in the prompt


_SCHEMA_NAME = "memories"


def response_format_body(fmt: ResponseFormat, schema: dict[str, Any]) -> dict[str, Any]:
    """The `response_format` request field for `fmt`."""
    if fmt is ResponseFormat.JSON_SCHEMA:
        return {
            "type": "json_schema",
            "json_schema": {"name": _SCHEMA_NAME, "schema": schema, "strict": True},
        }
    if fmt is ResponseFormat.JSON_OBJECT_SCHEMA:
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


class LlmExtractor:
    """Extractor over an OpenAI-compatible endpoint (settings.llm_*)."""

    def __init__(self, settings: Settings) -> None:
        if settings.llm_base_url is None or not settings.llm_model:
            raise ValueError("LlmExtractor needs MEMORYD_LLM_BASE_URL and MEMORYD_LLM_MODEL")
        self.name = f"llm:{settings.llm_model}"
        self.base_url = settings.llm_base_url
        self._model = settings.llm_model
        self._timeout_s = settings.llm_timeout.total_seconds()
        self._max_retries = settings.llm_max_retries
        self._backoff_s = settings.llm_retry_backoff.total_seconds()
        self._output_attempts = settings.llm_max_output_retries + 1
        self._max_tokens = settings.llm_max_tokens
        self._batch = settings.llm_batch_messages
        self._schema = response_schema()
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            # The client insists on a key; servers without auth ignore this one.
            api_key=key or "no-key",
            timeout=self._timeout_s,
            # Retries are ours: counted, logged and bounded by our settings.
            max_retries=0,
        )
        # The format the server accepted, once one has been; the ones it refused before.
        self.response_format: ResponseFormat | None = None
        self.rejected_formats: tuple[ResponseFormat, ...] = ()
        # HTTP requests sent, for logs and tests.
        self.requests_sent = 0

    async def extract(self, messages: Sequence[StoredMessage]) -> list[Candidate]:
        candidates: list[Candidate] = []
        for start in range(0, len(messages), self._batch):
            batch = messages[start : start + self._batch]
            # Only the user's own statements become memories.
            if any(m.role is Role.USER for m in batch):
                candidates.extend(await self._extract_batch(batch))
        return candidates

    async def aclose(self) -> None:
        await self._client.close()

    async def _extract_batch(self, batch: Sequence[StoredMessage]) -> list[Candidate]:
        problem = ""
        for attempt in range(1, self._output_attempts + 1):
            prompt, completion = await self._complete(batch)
            try:
                return parse_output(
                    _answer(completion, self._max_tokens), message_ids=prompt.message_ids
                )
            except InvalidOutput as exc:
                problem = str(exc)
                log.warning(
                    "LLM %s at %s gave invalid output (attempt %d of %d): %s",
                    self._model,
                    self.base_url,
                    attempt,
                    self._output_attempts,
                    problem,
                )
        raise ExtractionFailed(
            f"LLM {self._model!r} at {self.base_url} gave invalid output "
            f"{self._output_attempts} times; last: {problem}"
        )

    async def _complete(self, batch: Sequence[StoredMessage]) -> tuple[Prompt, ChatCompletion]:
        """One answer, in the first response format the server accepts."""
        if self.response_format is not None:
            formats = [self.response_format]
        else:
            formats = list(ResponseFormat)
        refused: list[ResponseFormat] = []
        for fmt in formats:
            schema_text = json.dumps(self._schema) if fmt is ResponseFormat.JSON_OBJECT else ""
            prompt = build_prompt(batch, schema_in_prompt=schema_text)
            try:
                completion = await self._send(prompt, fmt)
            except openai.APIStatusError as exc:
                if _rejects_format(exc) and fmt is not formats[-1]:
                    log.info(
                        "LLM endpoint %s refused response_format %s (HTTP %d); trying the next",
                        self.base_url,
                        fmt.value,
                        exc.status_code,
                    )
                    refused.append(fmt)
                    continue
                raise ExtractionFailed(self._refused_message(exc)) from exc
            if self.response_format is None:
                self.response_format = fmt
                self.rejected_formats = tuple(refused)
                log.info("LLM endpoint %s: using response_format %s", self.base_url, fmt.value)
            return prompt, completion
        raise AssertionError("unreachable: the last format returns or raises")

    async def _send(self, prompt: Prompt, fmt: ResponseFormat) -> ChatCompletion:
        """One request, retried on transport errors, 429 and 5xx with backoff."""
        attempts = self._max_retries + 1
        for attempt in range(1, attempts + 1):
            self.requests_sent += 1
            try:
                return await self._client.chat.completions.create(
                    model=self._model,
                    messages=prompt.messages,
                    temperature=0,
                    max_tokens=self._max_tokens,
                    extra_body={"response_format": response_format_body(fmt, self._schema)},
                )
            except openai.APIStatusError as exc:
                if _rejects_format(exc) or (exc.status_code != 429 and exc.status_code < 500):
                    raise
                error: openai.APIError = exc
            except openai.APIConnectionError as exc:
                error = exc
            if attempt == attempts:
                raise ExtractionFailed(self._unreachable_message(error, attempts)) from error
            delay = min(self._backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
            log.warning(
                "LLM endpoint %s: %s (attempt %d of %d); retrying in %.1f s",
                self.base_url,
                _describe(error),
                attempt,
                attempts,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _unreachable_message(self, error: openai.APIError, attempts: int) -> str:
        what = _describe(error)
        if isinstance(error, openai.APITimeoutError):
            hint = "check that the server is up and MEMORYD_LLM_TIMEOUT"
        elif isinstance(error, openai.APIConnectionError):
            hint = "check MEMORYD_LLM_BASE_URL and that the server is running"
        else:
            hint = "the server is failing or overloaded"
        return f"LLM endpoint {self.base_url} failed {attempts} attempts ({what}): {hint}"

    def _refused_message(self, error: openai.APIStatusError) -> str:
        status = error.status_code
        if status in (401, 403):
            hint = "check MEMORYD_LLM_API_KEY"
        elif status == 404:
            hint = (
                f"check MEMORYD_LLM_BASE_URL (usually ending in /v1) and that "
                f"MEMORYD_LLM_MODEL={self._model!r} is served there"
            )
        else:
            hint = "the server refused the request"
        return f"LLM endpoint {self.base_url} answered {_describe(error)}: {hint}"


def _answer(completion: ChatCompletion, max_tokens: int) -> str | None:
    """The text of the first choice; InvalidOutput when there is none or it was cut."""
    if not completion.choices:
        raise InvalidOutput("the answer has no choices")
    choice = completion.choices[0]
    if choice.finish_reason == "length":
        raise InvalidOutput(
            f"the answer was cut off at {max_tokens} tokens (MEMORYD_LLM_MAX_TOKENS)"
        )
    if choice.message.refusal:
        raise InvalidOutput(f"the model refused: {choice.message.refusal[:200]}")
    return choice.message.content


def _describe(error: openai.APIError) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}: {_short(error.message)}"
    return _short(error.message)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
