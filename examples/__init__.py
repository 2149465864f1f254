"""Runnable agents that use memoryd through the Python client.

Start the stack (`make up`), then run one of them:

    .venv/bin/python -m examples.study_coach
    .venv/bin/python -m examples.support_agent
    .venv/bin/python -m examples.job_search
    .venv/bin/python -m examples.research_team

Each takes --address (default 127.0.0.1:50051), --user (default a fresh id) and
--token (when memoryd checks bearer tokens).
Without an LLM the agents' replies are scripted from what they recall; set
OPENAI_BASE_URL and OPENAI_MODEL (and OPENAI_API_KEY if the server wants one)
to have any OpenAI-compatible model write them, recalled memories in its prompt.
"""
