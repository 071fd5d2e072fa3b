"""sluice.yaml's ``serve:`` section: the control token read from an environment variable or a file the file names
(the secret stays out of sluice.yaml), checked like the rest of the file; SLUICE_CONTROL_TOKEN without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_yaml
from sluice.errors import ConfigError, ValidationFailed
from sluice.project.load import load_project, parse_project
from sluice.server.serve_settings import control_token

HEAD = "name: shop\nobjects:\n  - {id: 1001}\n"


@pytest.fixture(autouse=True)
def no_default_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_CONTROL_TOKEN", raising=False)


def test_the_token_comes_from_the_variable_serve_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(write_yaml(tmp_path, HEAD + "serve:\n  control_token_env: SHOP_CONTROL\n"))
    monkeypatch.setenv("SLUICE_CONTROL_TOKEN", "not-this-one")
    monkeypatch.setenv("SHOP_CONTROL", "  t0ken-from-env\n")
    assert control_token(project) == "t0ken-from-env"
    monkeypatch.delenv("SHOP_CONTROL")
    with pytest.raises(ConfigError) as raised:  # named but unset: refused, never open
        control_token(project)
    assert raised.value.line == 5 and "control_token_env names SHOP_CONTROL, which is not set" in raised.value.message
    assert str(raised.value).startswith(f"{tmp_path / 'sluice.yaml'}:5")


def test_the_token_comes_from_a_file_relative_to_the_project(tmp_path: Path) -> None:
    project = load_project(write_yaml(tmp_path, HEAD + "serve: {control_token_file: secrets/control}\n"))
    with pytest.raises(ConfigError, match=r"control_token_file '.*secrets/control' cannot be read \(No such file"):
        control_token(project)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "control").write_text("")
    with pytest.raises(ConfigError, match="is empty; write the token into it"):
        control_token(project)
    (tmp_path / "secrets" / "control").write_text("t0ken-from-file\n")
    assert control_token(project) == "t0ken-from-file"


def test_without_serve_the_token_is_sluice_control_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(write_yaml(tmp_path, HEAD))
    assert control_token(project) is None
    monkeypatch.setenv("SLUICE_CONTROL_TOKEN", " t0ken ")
    assert control_token(project) == "t0ken"


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        (
            "serve:\n  control_token_env: A\n  control_token_file: f\n",
            6,
            "give control_token_env or control_token_file, not both",
        ),
        ("serve:\n  control_token_envv: A\n", 5, "Did you mean 'control_token_env'"),
        ("serve:\n  control_token_env: 'my token'\n", 5, "control_token_env"),
        ("serve: SHOP_CONTROL\n", 4, "'serve' must be a mapping"),
    ],
)
def test_mistakes_in_serve_are_reported_at_their_line(tmp_path: Path, section: str, line: int, message: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        load_project(write_yaml(tmp_path, HEAD + section))
    [problem] = raised.value.problems
    assert problem.line == line and message in problem.message, problem


def test_validate_reports_a_named_source_that_gives_no_token(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, HEAD + "serve:\n  control_token_file: /nonexistent/sluice-control\n")
    project, problems = parse_project(path, ahead=True)
    assert project is not None
    assert [(p.line, "cannot be read" in p.message) for p in problems] == [(5, True)]
    assert parse_project(path)[1] == []  # loading for a run does not read the secret
