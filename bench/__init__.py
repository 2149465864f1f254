"""Latency, throughput and recall benchmarks for memoryd.

Each benchmark is a module run with `python -m bench.<name>`; the shared
pieces live in harness (load generation, CPU meters, machine info), stats
(percentiles, tables) and stack (stores plus a real server process).
"""
