"""Logging: readable lines on a terminal, or JSON lines (``--log-format json``) for Promtail and Loki.

Records carry ``run_id``, ``object_id`` and ``stage`` when the code logging knows them (pass them in
``extra=``) or when they are set for the current context with :func:`log_context`. A record may also carry
``fields`` (``extra={"fields": {...}}``, a dict of JSON values): in JSON they become keys of the line beside the
standard ones (which they never replace), as the data API's request lines do (``sluice.api.metrics``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("sluice_log_context", default={})  # noqa: B039
CONTEXT_FIELDS = ("run_id", "object_id", "stage")


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Attach ``fields`` (run_id, object_id, stage) to every record logged inside the block."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, context fields and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = _CONTEXT.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, context.get(name))
            if value is not None:
                payload[name] = value
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                payload.setdefault(name, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``12:00:01 WARNING sluice.worker  message [run=... object=...]``."""

    def format(self, record: logging.LogRecord) -> str:
        context = _CONTEXT.get()
        parts = [
            f"{name.split('_')[0]}={getattr(record, name, context.get(name))}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, context.get(name)) is not None
        ]
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname:<7} {record.name}  {record.getMessage()}"
        if parts:
            text += f"  [{' '.join(parts)}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so a live progress display can take the lines."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(fmt: str = "text", level: str = "WARNING") -> None:
    """Send Sluice's logs to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("sluice")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
