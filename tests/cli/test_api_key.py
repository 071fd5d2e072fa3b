"""``sluice api-key create|list|revoke`` against SQLite and PostgreSQL state, and the gate reading its keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import seed_project
from sluice.api.gate import DataApiError
from sluice.api.security.auth import Authenticator
from sluice.api.security.keys import open_key_store
from sluice.api.settings import ApiSettings, ApiSource
from sluice.cli.api_key import parse_expiry
from sluice.errors import ConfigError

SLUICE = [sys.executable, "-m", "sluice"]


def sluice(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLUICE, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'elsewhere' / 'state.db'}"
    return str(request.getfixturevalue("pg_db_url"))


def test_create_list_revoke_and_the_gate_follows(tmp_path: Path, state: str) -> None:
    project = str(seed_project(tmp_path).parent)
    created = sluice("api-key", "create", project, "--role", "editor", "--owner", "alice", "--expires", "30d", "--state", state)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("slk_") and "\n" not in key
    assert "shown only once" in created.stderr

    listed = sluice("api-key", "list", project, "--json", "--state", state)
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert (entry["role"], entry["owner"], entry["state"], entry["revoked_at"]) == ("editor", "alice", "active", None)
    assert 29 * 86400 < entry["expires_at"] - entry["created_at"] <= 30 * 86400
    assert key not in listed.stdout and entry["id"] in key
    table = sluice("api-key", "list", project, "--state", state)
    assert table.stdout.splitlines()[0].split() == ["ID", "ROLE", "OWNER", "CREATED", "EXPIRES", "REVOKED", "STATE"]
    assert entry["id"] in table.stdout

    settings = ApiSettings(sources=[ApiSource(connection="db", tables=["*"])], roles={"editor": {}})
    keys = open_key_store(state)
    try:
        gate = Authenticator(settings, tmp_path, keys, key_cache_s=0)
        assert gate.authenticate({"x-api-key": key}, "a").subject == "alice"

        revoked = sluice("api-key", "revoke", entry["id"], project, "--state", state)
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked API key {entry['id']}" in revoked.stdout
        with pytest.raises(DataApiError) as caught:
            gate.authenticate({"x-api-key": key}, "a")
        assert caught.value.code == "revoked-key"
    finally:
        keys.close()
    assert json.loads(sluice("api-key", "list", project, "--json", "--state", state).stdout)[0]["state"] == "revoked"


def test_the_default_state_is_the_projects(tmp_path: Path) -> None:
    project = seed_project(tmp_path).parent
    created = sluice("api-key", "create", str(project), "--role", "viewer", "--json")
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    assert made["key"].startswith(f"slk_{made['id']}_")
    assert (project / ".sluice" / "state.db").exists()
    assert [k["id"] for k in json.loads(sluice("api-key", "list", str(project), "--json").stdout)] == [made["id"]]


def test_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    project = str(seed_project(tmp_path).parent)
    unknown = sluice("api-key", "revoke", "0123456789abcdef", project)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: no API key has the id '0123456789abcdef'; list them with 'sluice api-key list'"
    past = sluice("api-key", "create", project, "--role", "editor", "--expires", "2001-01-01")
    assert past.returncode == 2 and past.stderr.count("\n") == 1 and "in the past" in past.stderr
    missing_role = sluice("api-key", "create", project)
    assert missing_role.returncode == 2 and "--role" in missing_role.stderr


def test_parse_expiry() -> None:
    now = 1_000_000.0
    assert parse_expiry("30d", now) == now + 30 * 86400
    assert parse_expiry("12h", now) == now + 12 * 3600
    assert parse_expiry("2w", now) == now + 14 * 86400
    assert parse_expiry("2100-01-01", now) == 4102444800.0
    assert parse_expiry("2100-01-01T01:00:00+01:00", now) == 4102444800.0
    with pytest.raises(ConfigError, match="use a duration"):
        parse_expiry("soon", now)
    with pytest.raises(ConfigError, match="in the past"):
        parse_expiry("1990-01-01", time.time())


def test_create_refuses_a_role_the_api_section_does_not_define() -> None:
    """Once the loader reads ``api:`` (``project.api.settings``), the role is checked before a key is made."""
    from types import SimpleNamespace

    from sluice.cli.api_key import _check_role

    settings = ApiSettings(sources=[ApiSource(connection="db", tables=["*"])], roles={"editor": {}, "viewer": {}})
    project: Any = SimpleNamespace(api=SimpleNamespace(settings=settings), source_file="p/sluice.yaml")
    _check_role(project, "editor")
    _check_role(project, "admin")  # api.admin_role
    with pytest.raises(ConfigError, match=r"the role 'editr' is not in api\.roles of p/sluice\.yaml .* Did you mean 'editor'"):
        _check_role(project, "editr")
    _check_role(SimpleNamespace(api=None), "anything")  # no api: section, nothing to check against
