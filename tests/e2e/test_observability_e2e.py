"""`memoryd up` with metrics and JSON logs on: both processes serve /metrics
on ports that do not collide, and a call's request id reaches the worker's
log lines for the job it enqueued."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memoryd.v1 import memory_service_pb2 as pb
from memoryd.v1 import memory_service_pb2_grpc as memory_grpc
from tests.support.processes import MemorydUp, free_port, start_up

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _two_free_ports() -> int:
    """A port whose next port is free too (the worker's default is the next one)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def _wait_metrics(url: str, stack: MemorydUp, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError(f"no metrics at {url} after {timeout} s:\n{stack.log()}")


def _json_lines(stack: MemorydUp) -> list[dict[str, Any]]:
    # `up` prints a plain "memoryd is up" line; every log record is JSON.
    return [json.loads(line) for line in stack.log().splitlines() if line.startswith("{")]


def test_up_serves_metrics_of_server_and_worker_and_logs_json(data_dir: Path) -> None:
    port = _two_free_ports()
    stack = start_up(
        data_dir, MEMORYD_METRICS_LISTEN=f"127.0.0.1:{port}", MEMORYD_LOG_FORMAT="json"
    )
    try:
        stack.wait_serving()
        request_id = f"e2e-{uuid.uuid4().hex[:8]}"
        with grpc.insecure_channel(stack.address) as channel:
            memory_grpc.MemoryServiceStub(channel).CreateMemory(
                pb.CreateMemoryRequest(
                    user_id="obs-user",
                    memory=pb.Memory(kind=pb.MEMORY_KIND_SEMANTIC, content="Likes green tea"),
                ),
                metadata=(("x-request-id", request_id),),
                timeout=30,
            )
        server = _wait_metrics(f"http://127.0.0.1:{port}/metrics", stack)
        created = {"service": "memoryd.v1.MemoryService", "method": "CreateMemory", "code": "OK"}
        assert [
            sample.value
            for family in text_string_to_metric_families(server)
            for sample in family.samples
            if sample.name == "memoryd_rpc_calls_total" and sample.labels == created
        ] == [1.0]
        worker = _wait_metrics(f"http://127.0.0.1:{port + 1}/metrics", stack)
        assert "memoryd_job_queue_depth" in worker
        assert "memoryd_embed_lag_seconds" in worker

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = _json_lines(stack)
            worker_lines = [
                line
                for line in lines
                if line.get("service") == "memoryd-worker" and line["request_id"] == request_id
            ]
            if worker_lines:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"no worker line with request id {request_id}:\n{stack.log()}")
        call = next(
            line
            for line in lines
            if line.get("method") == "/memoryd.v1.MemoryService/CreateMemory"
            and line["request_id"] == request_id
        )
        assert call["service"] == "memoryd-serve" and call["status"] == "OK"
        assert worker_lines[0]["logger"] == "workers.jobs"
    finally:
        # Its exit code is test_stack's business: this test is about what it served.
        stack.stop()
