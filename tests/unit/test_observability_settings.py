"""Observability settings and the log formats, without servers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from server.logs import RequestIdFilter, json_formatter, text_formatter
from server.request_context import request_id_var
from server.settings import Settings


def test_metrics_are_off_unless_a_listen_address_is_set() -> None:
    settings = Settings()
    assert settings.metrics_listen is None
    assert settings.worker_metrics_address() is None


def test_the_worker_serves_metrics_on_the_next_port_by_default() -> None:
    # `memoryd up` runs both processes on one host: their ports must differ.
    settings = Settings(metrics_listen="127.0.0.1:9464")
    assert settings.worker_metrics_address() == "127.0.0.1:9465"
    chosen = Settings(metrics_listen="127.0.0.1:9464", worker_metrics_listen="0.0.0.0:9500")
    assert chosen.worker_metrics_address() == "0.0.0.0:9500"
    # Only the worker's: the server keeps none.
    alone = Settings(worker_metrics_listen="0.0.0.0:9464")
    assert alone.metrics_listen is None and alone.worker_metrics_address() == "0.0.0.0:9464"


def test_a_metrics_address_must_be_host_and_port() -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(metrics_listen="9464")
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format="xml")  # type: ignore[arg-type]


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("memoryd.test.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, out, handler
    finally:
        log.removeHandler(handler)


def test_json_lines_carry_the_request_id_the_fields_and_the_traceback(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, out, handler = logger
    handler.setFormatter(json_formatter("serve"))
    token = request_id_var.set("req-42")
    try:
        log.info("call", extra={"method": "/a.B/C", "status": "OK", "duration_ms": 1.5})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        request_id_var.reset(token)
    log.info("outside any call")
    call, failure, idle = (json.loads(line) for line in out.getvalue().splitlines())
    assert call["request_id"] == "req-42" and call["logger"] == "memoryd.test.logs"
    assert (call["method"], call["status"], call["duration_ms"]) == ("/a.B/C", "OK", 1.5)
    assert call["level"] == "INFO" and call["message"] == "call"
    assert call["service"] == "memoryd-serve" and call["time"].endswith("Z")
    assert failure["level"] == "ERROR" and "RuntimeError: boom" in failure["exception"]
    assert idle["request_id"] == "-"


def test_text_lines_stay_one_readable_line(
    logger: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    log, out, handler = logger
    handler.setFormatter(text_formatter("worker"))
    log.info("hello %s", "there")
    assert out.getvalue().rstrip().endswith("memoryd-worker INFO memoryd.test.logs: hello there")
