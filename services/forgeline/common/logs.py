"""Logging setup: plain lines for people, JSON lines for log collectors.

A JSON line carries, besides time, level, logger and message, what the line was logged
for: the service, the request id of the call (set by the telemetry interceptor, or the
gateway's middleware), the job id of the job being run (set by the job manager) and the
trace and span ids when a span is recording.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

from forgeline.client.telemetry import request_id
from forgeline.common.settings import LogFormat

# The service a line is logged for, when several run in one process (tests); else the
# service `configure_logging` was told.
service: ContextVar[str] = ContextVar("forgeline_service", default="")
# The job being run.
job_id: ContextVar[str] = ContextVar("forgeline_job_id", default="")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, exception, and the service,
    request id, job id and trace of the context it was logged in.

    Args:
        service_name: The service of lines logged outside any call or job.
    """

    def __init__(self, service_name: str = ""):
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        """Renders `record` as a JSON line."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        name = service.get() or self.service_name
        if name:
            entry["service"] = name
        for key, var in (("request_id", request_id), ("job_id", job_id)):
            value = var.get()
            if value:
                entry[key] = value
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(
    level: str = "INFO", fmt: LogFormat = LogFormat.PLAIN, service_name: str = ""
) -> None:
    """Sets the root logger's level and format (stderr). Safe to call more than once.

    Args:
        level: Root log level.
        fmt: Plain or JSON lines.
        service_name: The service this process runs, named in every JSON line.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.JSON:
        handler.setFormatter(JsonFormatter(service_name))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
