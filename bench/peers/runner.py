"""`make bench-peers`: the same workload against memoryd, its peers and a
direct-SQL baseline, one after the other on this machine, in one run.

    python -m bench.peers.runner [--quick] [--systems memoryd,sql,mem0,agent-memory-server]

Progress goes to stderr, the table to stdout; bench/results/peers.{json,md,png}
are written (--out). A system that cannot run gets its reason in the table
and the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.dataset import DatasetError, load
from bench.harness import machine_info, progress
from bench.peers import report
from bench.peers.adapter import PeerAdapter
from bench.peers.workload import Corpus, PeerResult, Sizes, dataset_label, run_workload
from bench.stack import exit_on_sigterm

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / ".peers"
DEFAULT_OUT = ROOT / "bench" / "results"
DEFAULT_DATASET = ROOT / "bench" / "data" / "tiny.jsonl"


def _memoryd(cache: Path) -> PeerAdapter:
    from bench.peers.memoryd_adapter import MemorydAdapter

    return MemorydAdapter()


def _sql(cache: Path) -> PeerAdapter:
    from bench.peers.sql_adapter import DirectSqlAdapter

    return DirectSqlAdapter()


def _mem0(cache: Path) -> PeerAdapter:
    from bench.peers.mem0_adapter import Mem0Adapter

    return Mem0Adapter(cache)


def _agent_memory_server(cache: Path) -> PeerAdapter:
    from bench.peers.ams_adapter import AgentMemoryServerAdapter

    return AgentMemoryServerAdapter(cache)


# The baseline runs first: every other system's timings are ratios to it.
SYSTEMS: dict[str, tuple[str, Callable[[Path], PeerAdapter]]] = {
    "sql": (report.BASELINE, _sql),
    "memoryd": ("memoryd", _memoryd),
    "mem0": ("mem0", _mem0),
    "agent-memory-server": ("agent-memory-server", _agent_memory_server),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.runner", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (tests, a first look)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, from {', '.join(SYSTEMS)} (all)",
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="recall JSONL")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where peers.* go")
    parser.add_argument("--stem", default="peers", help="file name stem of the outputs")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="peers' virtualenvs and data (.peers)"
    )
    defaults = Sizes()
    for field in fields(Sizes):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"default {getattr(defaults, field.name)}",
        )
    args = parser.parse_args(argv)
    unknown = [name for name in args.systems.split(",") if name not in SYSTEMS]
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    base = Sizes.quick() if args.quick else Sizes()
    chosen = {
        field.name: getattr(args, field.name)
        for field in fields(Sizes)
        if getattr(args, field.name) is not None
    }
    return Sizes(**{**asdict(base), **chosen})


def first_line(exc: BaseException) -> str:
    """The exception as the table shows it: type and first line of its message,
    the innermost one for an ExceptionGroup."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0] if message else ''}".strip()


async def run_system(
    key: str, cache: Path, sizes: Sizes, corpus: Corpus, dataset: Sequence[Any]
) -> PeerResult:
    name, make = SYSTEMS[key]
    result = PeerResult(name=name)
    adapter: PeerAdapter | None = None
    try:
        adapter = make(cache)
        result.notes = adapter.notes
        progress(f"{name}: starting")
        await adapter.start()
        await run_workload(adapter, sizes, corpus, dataset, result)
    except Exception as exc:  # one system failing must not stop the others
        result.error = first_line(exc)
        progress(f"{name} failed: {result.error}\n{traceback.format_exc(limit=6)}")
    finally:
        if adapter is not None:
            try:
                await adapter.stop()
            except Exception as exc:
                progress(f"{name}: stopping failed: {first_line(exc)}")
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = sizes_from(args)
    dataset = load(args.dataset)
    machine = machine_info()
    machine["ram_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    corpus = Corpus(sizes, run_id=f"peers-{uuid.uuid4().hex[:8]}")
    results = []
    for key in args.systems.split(","):
        results.append(await run_system(key, args.cache, sizes, corpus, dataset))
    load1, load5, _ = os.getloadavg()
    machine["loadavg_at_end"] = [round(load1, 2), round(load5, 2)]
    return {
        "machine": machine,
        "sizes": asdict(sizes),
        "dataset": dataset_label(args.dataset, dataset),
        "results": [result.to_json() for result in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    try:
        document = asyncio.run(run(args))
    except (OSError, DatasetError) as exc:
        print(f"bench-peers: {exc}", file=sys.stderr)
        return 2
    paths = report.write_all(document, args.out, args.stem)
    print(report.render_text(document))
    progress("wrote " + ", ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
