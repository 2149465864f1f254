"""memoryd-bench recall without a server: options, requests, report shape."""

from __future__ import annotations

import json

import grpc
import pytest

from bench import cli, recall
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


def test_extract_mode_is_refused_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        config("--mode", "extract")
    assert exited.value.code == 2
    assert "--mode extract is not implemented yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config("--mode", "summaries")


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
