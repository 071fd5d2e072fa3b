"""JSON log lines: the standard keys, the context fields, and a record's own ``fields``."""

from __future__ import annotations

import json
import logging

from sluice.observability.logs import JsonFormatter, TextFormatter, log_context


def record(**extra: object) -> logging.LogRecord:
    made = logging.LogRecord("sluice.api.requests", logging.INFO, __file__, 1, "graphql %s", ("employes",), None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_records_fields_become_keys_of_the_json_line() -> None:
    fields = {"api": "graphql", "operation": "employes", "role": "anon", "status": 200, "duration_ms": 1.25}
    with log_context(run_id="r-1"):
        line = json.loads(JsonFormatter().format(record(fields=fields)))
    assert line["message"] == "graphql employes"
    assert {name: line[name] for name in fields} == fields
    assert line["run_id"] == "r-1" and line["logger"] == "sluice.api.requests"


def test_fields_never_replace_the_standard_keys() -> None:
    line = json.loads(JsonFormatter().format(record(fields={"message": "forged", "level": "error", "extra": 1})))
    assert (line["message"], line["level"], line["extra"]) == ("graphql employes", "info", 1)


def test_without_fields_the_line_is_unchanged_and_text_ignores_them() -> None:
    line = json.loads(JsonFormatter().format(record()))
    assert set(line) == {"timestamp", "level", "logger", "message"}
    text = TextFormatter().format(record(fields={"api": "graphql"}))
    assert text.endswith("INFO    sluice.api.requests  graphql employes")
