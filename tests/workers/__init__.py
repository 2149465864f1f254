"""Tests of workers/ that need no servers."""
