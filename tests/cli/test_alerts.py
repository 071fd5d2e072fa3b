"""``sluice alerts PATH test [--channel NAME]`` (cli/alerts.py): a test alert really received by each channel's
server, a failing channel's exit status, a channel that does not exist."""

from __future__ import annotations

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
