"""memoryd-bench recall without a server: options, requests, report shape."""

from __future__ import annotations

import json

import grpc
import pytest

from bench import cli, extract, recall
from bench.dataset import Message, Session
from bench.scoring import Outcome
from memoryd.v1 import memory_service_pb2 as pb


def config(*extra: str) -> recall.Config:
    return recall.parse_args(["--dataset", "d.jsonl", "--target", "h:1", *extra])


def test_defaults_and_a_fresh_user_prefix_per_run() -> None:
    first, second = config(), config()
    assert (first.k, first.search_mode, first.keep) == (10, "hybrid", False)
    assert first.run_prefix != second.run_prefix
    assert config("--run-prefix", "p").run_prefix == "p"


def test_ingest_modes_are_messages_and_extract(capsys: pytest.CaptureFixture[str]) -> None:
    assert config("--mode", "extract", "--workers", "2").mode == "extract"
    assert config().mode == "messages" and config().workers == 1
    with pytest.raises(SystemExit) as exited:
        config("--mode", "summaries")
    assert exited.value.code == 2
    assert "--mode must be one of messages, extract" in capsys.readouterr().err


def test_extract_report_puts_extracted_figures_on_top_and_messages_beside() -> None:
    def results(recall_value: float) -> dict[str, recall.ModeResult]:
        return {
            name: recall.ModeResult(outcomes=[Outcome("q", "temporal", recall_value, True)])
            for name in recall.SEARCH_MODES
        }

    stats = extract.ExtractStats(
        messages=10, jobs=2, elapsed_s=2.0, extractor="local", memories=4, unattributed=1
    )
    stats.sources = [1, 1, 2, 0]
    report = recall.build_report(
        config("--mode", "extract", "--workers", "2"),
        [],
        recall.IngestStats(10, 0, 1.0),
        results(0.5),
        (stats, results(1.0)),
    )
    assert report["ingest_mode"] == "extract" and report["recall@10"] == 1.0
    assert report["messages_mode"]["modes"]["hybrid"]["recall@10"] == 0.5
    assert report["messages_mode"]["memories"] == 10 and report["memories"] == 4
    assert report["extraction"]["memories_per_message"] == 0.4
    assert report["extraction"]["unattributed_share"] == 0.25
    assert report["extraction"]["messages_per_s_per_worker"] == 2.5  # 10 / 2 s / 2 workers
    json.dumps(report)
    rendered = recall.render(report)
    assert "messages/s per worker" in rendered and "messages" in rendered


def test_one_semantic_memory_per_message_with_speaker_and_said_at() -> None:
    session = Session(
        id="s1",
        started_at="2024-03-02T09:15:00+00:00",
        agent_id="travel",
        messages=(
            Message("m1", "user", "Alice", "I am vegetarian."),
            Message("m2", "assistant", "", "Noted."),
        ),
    )
    requests = recall.memory_requests(session, "run")
    assert [r.memory.content for r in requests] == ["Alice: I am vegetarian.", "Assistant: Noted."]
    first = requests[0]
    assert first.memory.kind == pb.MEMORY_KIND_SEMANTIC
    assert list(first.memory.source_message_ids) == ["m1"]
    assert (first.memory.agent_id, first.memory.session_id) == ("travel", "s1")
    assert dict(first.memory.metadata) == {"said_at": "2024-03-02T09:15:00+00:00"}
    assert first.request_id == "run:s1:m1"


def test_report_has_the_chosen_mode_on_top_and_every_mode_below() -> None:
    results = {
        name: recall.ModeResult(
            outcomes=[Outcome("q", "temporal", 1.0 if name == "keyword" else 0.5, True)],
            latencies_s=[0.01],
        )
        for name in recall.SEARCH_MODES
    }
    report = recall.build_report(
        config("--search-mode", "keyword"), [], recall.IngestStats(3, 0, 1.0), results
    )
    assert report["recall@10"] == 1.0
    assert report["hit@10"] == 1.0
    assert report["by_category"]["temporal"]["questions"] == 1
    assert set(report["modes"]) == {"hybrid", "keyword", "semantic"}
    assert report["modes"]["hybrid"]["recall@10"] == 0.5
    assert "said_at" in report["note"]
    json.dumps(report)  # the last line of the output
    assert "keyword" in recall.render(report)


def test_rpc_errors_are_found_inside_exception_groups() -> None:
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNIMPLEMENTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "no", None
    )
    assert recall.first_rpc_error(ExceptionGroup("g", [ValueError(), error])) is error
    assert recall.first_rpc_error(ExceptionGroup("g", [ValueError()])) is None


def test_cli_dispatches_and_rejects_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "recall" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["recall", "--help"])
    assert "--dataset" in capsys.readouterr().out
