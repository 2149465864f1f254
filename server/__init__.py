"""memoryd: the memory sidecar for AI agents (the service)."""
