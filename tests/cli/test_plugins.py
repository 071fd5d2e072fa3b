"""sluice plugins and sluice schema as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, timeout=120, check=False)


def test_plugins_json_lists_every_kind_with_options() -> None:
    result = sluice("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {(p["kind"], p["name"]): p for p in json.loads(result.stdout)}
    assert {kind for kind, _ in plugins} == {
        "source",
        "destination",
        "lake",
        "engine",
        "bus",
        "state",
        "capture",
        "apply",
        "check",
        "alert",
    }
    kafka = plugins[("bus", "kafka")]
    assert kafka["extra"] == "kafka" and kafka["schemes"] == ["kafka"] and isinstance(kafka["installed"], bool)
    partitions = next(o for o in kafka["options"] if o["name"] == "partitions")
    assert partitions == {
        "name": "partitions",
        "type": "int >= 1",
        "required": False,
        "default": 6,
        "doc": "Partitions of each stage's work topic.",
    }
    mode = next(o for o in plugins[("destination", "sqlite")]["options"] if o["name"] == "mode")
    assert mode["type"] == "one of: append, merge, replace" and mode["default"] == "replace"


def test_plugins_text_is_plain_when_piped_and_filters_by_kind() -> None:
    result = sluice("plugins", "--kind", "source")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "source csv  CSV files, streamed in blocks."
    assert any(line.split()[:2] == ["columns", "list[str]"] for line in lines)
    assert "destination" not in result.stdout
    assert "schemes: mysql://, mariadb://; extra: mysql" in result.stdout


def test_plugins_unknown_kind_is_a_usage_error() -> None:
    result = sluice("plugins", "--kind", "sorce")
    assert result.returncode == 2 and "Traceback" not in result.stderr
