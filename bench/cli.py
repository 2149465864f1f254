"""`memoryd-bench`: one entry point for the benchmarks.

    memoryd-bench recall --dataset FILE.jsonl --target HOST:PORT   evidence recall@k
    memoryd-bench search [--quick]                                 search latency, ANN recall
    memoryd-bench sessions [--quick]                               session memory latency
    memoryd-bench soak [--duration 600 --rate 100]                  soak: errors, RSS, acked writes
    memoryd-bench llm-extract [--dataset FILE.jsonl]               LLM extractor messages/s

Each subcommand is its module's main(); the options after the subcommand are
its own (`memoryd-bench recall --help`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# Imported on use: `recall` needs only a client, while `search` and
# `sessions` load the server's code (stores, embedding model).
COMMANDS: dict[str, tuple[str, str]] = {
    "recall": ("bench.recall", "evidence recall@k of SearchMemories on a JSONL dataset"),
    "search": ("bench.search", "SearchMemories latency, embedding rate, ANN recall (own stack)"),
    "sessions": ("bench.sessions", "AppendMessages/GetHistory latency (own stack)"),
    "soak": ("bench.soak", "mixed traffic for minutes: latency, errors, RSS, acked writes"),
    "llm-extract": ("bench.llm_extract", "LLM extractor throughput (MEMORYD_LLM_* endpoint)"),
}


def usage() -> str:
    lines = ["usage: memoryd-bench COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<11} {about}" for name, (_, about) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"memoryd-bench: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    command: Callable[[Sequence[str]], int] = module.main
    try:
        return command(rest)
    except KeyboardInterrupt:  # the commands stop what they started on the way out
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
