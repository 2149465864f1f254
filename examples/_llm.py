"""The optional LLM: any OpenAI-compatible chat server, when configured.

OPENAI_BASE_URL and OPENAI_MODEL (plus OPENAI_API_KEY if the server wants one)
switch it on. Without them every reply comes from the example's scripted
function, so the examples run offline and deterministically.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam


@dataclass(frozen=True)
class LlmConfig:
    base_url: str
    model: str
    api_key: str


def llm_config(environ: Mapping[str, str] | None = None) -> LlmConfig | None:
    """The LLM the environment names, or None for scripted replies."""
    env = os.environ if environ is None else environ
    base_url = env.get("OPENAI_BASE_URL", "").strip()
    model = env.get("OPENAI_MODEL", "").strip()
    if not base_url or not model:
        return None
    # Local servers (llama.cpp, Ollama, vLLM) accept any key; the SDK insists on one.
    return LlmConfig(base_url, model, env.get("OPENAI_API_KEY") or "not-needed")


def system_prompt(persona: str, memories: Sequence[str]) -> str:
    """The persona plus what the agent recalled, for the model to ground on."""
    recalled = "\n".join(f"- {memory}" for memory in memories) or "- (nothing yet)"
    return (
        f"{persona}\n\n"
        "What you remember about this user (from memoryd; use it, do not invent more):\n"
        f"{recalled}\n\n"
        "Answer in at most four sentences."
    )


class Replier:
    """Writes an agent's replies: the LLM when configured, else the script."""

    def __init__(self, config: LlmConfig | None) -> None:
        self.config = config
        self._client: OpenAI | None = None
        if config is not None:
            from openai import OpenAI  # only needed with an LLM

            self._client = OpenAI(base_url=config.base_url, api_key=config.api_key, timeout=120)

    @classmethod
    def from_env(cls) -> Replier:
        return cls(llm_config())

    @property
    def label(self) -> str:
        if self.config is None:
            return "scripted replies (set OPENAI_BASE_URL and OPENAI_MODEL to use an LLM)"
        return f"LLM {self.config.model} at {self.config.base_url}"

    def reply(
        self,
        *,
        persona: str,
        memories: Sequence[str],
        history: Sequence[tuple[str, str]],
        message: str,
        scripted: Callable[[], str],
    ) -> str:
        """The agent's answer to `message`, given the session so far
        (role, content pairs) and the memories it recalled."""
        if self._client is None or self.config is None:
            return scripted()
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": system_prompt(persona, memories)}
        ]
        for role, content in history:
            if role == "assistant":
                messages.append({"role": "assistant", "content": content})
            elif role == "user":
                messages.append({"role": "user", "content": content})
        messages.append({"role": "user", "content": message})
        completion = self._client.chat.completions.create(
            model=self.config.model, messages=messages, temperature=0.2
        )
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        return text or scripted()  # an empty answer would leave the transcript with a gap
