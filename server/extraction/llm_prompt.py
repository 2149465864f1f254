"""The chat messages the LLM extractor sends: instructions, then the transcript.

Messages are shown to the model as a JSON array under short ids (m1, m2, ...): JSON
keeps a message's text from passing for instructions, and short ids are ones a small
model copies back correctly, where 32-character stored ids get mangled. The caller
maps the short ids back to stored ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from openai.types.chat import ChatCompletionMessageParam

from server.models import StoredMessage

# Longer messages are cut for the prompt: durable facts about a user sit in
# sentences, not in pasted documents, and the context window is finite.
MAX_MESSAGE_CHARS = 2000

SYSTEM_PROMPT = """\
You extract long-term memories about the USER from a conversation.

Input: a JSON array of messages, each with an id, a role and content.
Output: a JSON object {"memories": [...]}; an empty list when nothing qualifies.

Extract only durable facts and preferences that the user states about themselves \
(where they live, their work, family, diet, likes and dislikes, plans, habits). \
Ignore small talk, greetings, questions, requests for help, and anything only the \
assistant says. Never invent facts.

Each memory has:
- content: one sentence in the third person, e.g. "The user lives in Lisbon."
- kind: "fact" when it fills a stable slot, otherwise "semantic".
- key: for a fact, the slot name: name, home_city, home_country, timezone, diet, \
occupation, employer, partner, birthday, native_language, child:<relation> \
(child:daughter), pet:<animal> (pet:dog); for a semantic memory, "".
- topics: a few lowercase words, e.g. ["food"].
- source_message_ids: the ids of the user messages that state it.
- stance: "assert"; "retract" when the user withdraws an earlier statement \
("I'm not vegetarian any more", "forget my old address"); content then names what \
is withdrawn.
- confidence: 0 to 1.
- reason: a few words on why.

Example input:
[{"id": "m1", "role": "user", "content": "Hi! I just moved to Berlin and I'm vegan."}]
Example output:
{"memories": [{"content": "The user lives in Berlin.", "kind": "fact", \
"key": "home_city", "topics": ["home"], "source_message_ids": ["m1"], \
"stance": "assert", "confidence": 0.9, "reason": "user says they moved there"}, \
{"content": "The user is vegan.", "kind": "fact", "key": "diet", "topics": ["food"], \
"source_message_ids": ["m1"], "stance": "assert", "confidence": 0.9, \
"reason": "user states their diet"}]}
"""


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: list[ChatCompletionMessageParam]
    # The id each message was shown under -> its stored id.
    message_ids: dict[str, str]


def build_prompt(messages: Sequence[StoredMessage], *, schema_in_prompt: str = "") -> Prompt:
    """The chat for one batch. `schema_in_prompt` is appended to the instructions
    when the endpoint cannot enforce the schema itself."""
    shown: list[dict[str, str]] = []
    ids: dict[str, str] = {}
    for number, message in enumerate(messages, start=1):
        short = f"m{number}"
        ids[short] = message.id
        content = message.content
        if len(content) > MAX_MESSAGE_CHARS:
            content = content[:MAX_MESSAGE_CHARS] + " [...]"
        shown.append({"id": short, "role": message.role.value, "content": content})
    system = SYSTEM_PROMPT
    if schema_in_prompt:
        system += f"\nAnswer with JSON matching this schema:\n{schema_in_prompt}\n"
    return Prompt(
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": json.dumps(shown, ensure_ascii=False)},
        ],
        message_ids=ids,
    )
