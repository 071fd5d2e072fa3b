"""``--log-level`` of ``sluice serve``, ``sluice worker`` and ``sluice check`` means what it says; the serve banner stays
visible."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import seed_project
from sluice.cli.main import cli


def _serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *options: str) -> tuple[str, list[str]]:
    """Run ``sluice serve`` with a stub server that logs one INFO and one WARNING line, then announces its URL."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    def fake_serve(project: Any, settings: Any, host: str, port: int, on_ready: Any) -> None:
        logger = logging.getLogger("sluice.server")
        logging.getLogger("sluice").addHandler(Keep())
        logger.info("GET /runs 200")
        logger.warning("something to see")
        on_ready("http://127.0.0.1:8000")

    monkeypatch.setattr("sluice.server.serve.serve_project", fake_serve)
    result = CliRunner().invoke(cli, ["serve", str(seed_project(tmp_path)), *options])
    assert result.exit_code == 0, result.output
    return result.output, seen


def test_serve_default_level_is_info_and_keeps_the_banner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output, seen = _serve(tmp_path, monkeypatch)
    assert logging.getLogger("sluice").level == logging.INFO
    assert seen == ["GET /runs 200", "something to see"]
    assert "serving project" in output and "http://127.0.0.1:8000" in output


def test_serve_warning_level_hides_info(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output, seen = _serve(tmp_path, monkeypatch, "--log-level", "warning")
    assert logging.getLogger("sluice").level == logging.WARNING
    assert seen == ["something to see"]
    assert "serving project" in output


def test_serve_error_level_hides_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, seen = _serve(tmp_path, monkeypatch, "--log-level", "error")
    assert seen == []


def test_worker_warning_level_is_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker sets its level before loading the project: an unknown stage fails after it."""
    logging.getLogger("sluice").setLevel(logging.DEBUG)
    result = CliRunner().invoke(cli, ["worker", str(seed_project(tmp_path)), "--stage", "nosuch", "--log-level", "warning"])
    assert result.exit_code != 0
    assert "unknown stage 'nosuch'" in result.output
    assert logging.getLogger("sluice").level == logging.WARNING


@pytest.mark.parametrize("level", ["debug", "error"])
def test_check_takes_a_log_level(tmp_path: Path, level: str) -> None:
    """``sluice check`` sets the level it is given before it loads the project (its default: warning)."""
    logging.getLogger("sluice").setLevel(logging.NOTSET)
    result = CliRunner().invoke(cli, ["check", str(seed_project(tmp_path)), "--no-store", "--log-level", level])
    assert "no such option" not in result.output, result.output
    assert logging.getLogger("sluice").level == getattr(logging, level.upper())
