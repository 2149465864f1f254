"""Memory extraction: transcripts become candidate memories, reconciled with what is stored."""
