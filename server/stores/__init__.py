"""Stores own their SQL and Redis keys and return domain objects."""
