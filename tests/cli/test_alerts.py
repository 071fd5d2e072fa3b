"""``sluice alerts PATH test [--channel NAME]`` (cli/alerts.py): a test alert really received by each channel's
server, a failing channel's exit status, a channel that does not exist."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from alert_receivers import Hook, Mailbox, free_port
from sluice.cli.main import cli


def project(tmp_path: Path, hook: Hook, smtp: Mailbox, webhook_url: str | None = None) -> str:
    (tmp_path / "sluice.yaml").write_text(
        f"""
name: shop
objects: [{{id: 1001, name: orders}}]
alerts:
  ui_url: http://ui.example:8000
  channels:
    mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, security: none, from: a@example.com, to: [b@example.com]}}
    hook: {{type: webhook, url: "{webhook_url or hook.url + "/hook"}", attempts: 1}}
""",
        encoding="utf-8",
    )
    return str(tmp_path)


def test_a_test_alert_goes_through_every_channel(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    result = CliRunner().invoke(cli, ["alerts", project(tmp_path, hook, smtp), "test"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["channel mail (email): test alert sent", "channel hook (webhook): test alert sent"]
    assert str(smtp.mails[0][2]["Subject"]).strip() == "[sluice] [INFO] shop: test alert: this channel works"
    ((path, _, body),) = hook.posts
    assert path == "/hook" and body["trigger"] == "test" and body["url"] == "http://ui.example:8000"


def test_one_channel_and_a_failing_one(tmp_path: Path, hook: Hook, smtp: Mailbox) -> None:
    path = project(tmp_path, hook, smtp, webhook_url=f"http://127.0.0.1:{free_port()}/down")
    only = CliRunner().invoke(cli, ["alerts", path, "test", "--channel", "mail"])
    assert only.exit_code == 0 and len(smtp.mails) == 1
    failing = CliRunner().invoke(cli, ["alerts", path, "test", "--channel", "hook"])
    assert failing.exit_code == 1 and "channel hook: not delivered: POST http://127.0.0.1:" in failing.stderr
    unknown = CliRunner().invoke(cli, ["alerts", path, "test", "--channel", "mial"])
    assert unknown.exit_code == 2 and "no channel named 'mial' (channels: mail, hook). Did you mean 'mail'?" in unknown.stderr


def test_list_shows_channels_without_secrets_rules_in_order_and_deadlines(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text(
        """
name: shop
objects: [{id: 1001, name: orders}]
schedules: {nightly: {cron: "0 2 * * *"}}
alerts:
  channels:
    mail: {type: email, host: smtp.example.com, from: a@example.com, to: [b@example.com], password: hunter2}
    team: {type: slack, url: "https://hooks.slack.com/services/T0/B0/secret"}
  rules:
    - {on: [run_failed, object_failed], criticality: high, channels: [mail], severity: critical, continue: true}
    - {on: run_failed, channels: [team], throttle: 1h}
  sla:
    - {schedule: nightly, finish_within: 2h}
    - {name: morning, targets: [orders], by: "06:00", timezone: Europe/Paris}
""",
        encoding="utf-8",
    )
    shown = CliRunner().invoke(cli, ["alerts", str(tmp_path), "list"])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        "channel mail (email): smtp.example.com:587 (starttls) to b@example.com",
        "channel team (slack): https://hooks.slack.com/...",
        "rule 1 'rule 1': on object_failed,run_failed criticality=high -> mail (throttle 900 s) severity=critical continue",
        "rule 2 'rule 2': on run_failed -> team (throttle 3600 s)",
        "sla 'sla 1': schedule nightly finished within 7200 s of their start",
        "sla 'morning': runs planning [1001] finished by 06:00 Europe/Paris",
    ]
    as_json = CliRunner().invoke(cli, ["alerts", str(tmp_path), "list", "--json"])
    assert "secret" not in as_json.stdout and "hunter2" not in as_json.stdout
    assert json.loads(as_json.stdout)["sla"][1] == {
        "name": "morning",
        "targets": [1001],
        "by": "06:00",
        "timezone": "Europe/Paris",
    }
