"""Adapters that plug memoryd into agent frameworks (each needs its extra:
pip install "memoryd-client[langgraph]" or "memoryd-client[langchain]")."""
