"""The alert-channel seam's contract, over every built-in ``alert`` plugin, against real receivers: the SMTP
server and the HTTP server of conftest.py. Then what each channel sends, and how failures are told apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from alert_receivers import SMTP_PASSWORD, SMTP_USER, Hook, Mailbox, free_port
from sluice.alerts.channels import Channel, DeliveryError, open_channel
from sluice.alerts.model import Alert, ChannelSpec
from sluice.alerts.payloads import PAYLOAD_VERSION
from sluice.plugins import registry

ALERT = Alert(
    trigger="object_failed",
    title="object 1002 orders failed after 2 attempts",
    project="shop",
    severity="critical",
    error="TransientError: connection reset",
    run_id="r-42",
    logical_date="2026-11-30T02:00:00+00:00",
    schedule="nightly",
    object_id=1002,
    object_name="orders",
    stage="ingest",
    criticality="high",
    url="http://sluice.example:8000/?run=r-42",
    at=1_780_000_000.0,
    rule="oncall",
    details={"attempt": "2 of 2"},
    folded=7,
    folded_since=1_779_999_400.0,
)
BUILTINS = [p for p in registry().of_kind("alert") if p.package == "sluice"]


def options_for(kind: str, smtp: Mailbox, hook: Hook) -> dict[str, Any]:
    if kind == "email":
        return {
            "host": "127.0.0.1", "port": smtp.port, "security": "none", "username": SMTP_USER,
            "password": SMTP_PASSWORD, "from": "sluice@example.com", "to": ["oncall@example.com", "data@example.com"],
        }  # fmt: skip
    return (
        {"url": f"{hook.url}/{kind}", "headers": {"Authorization": "Bearer t0ken"}}
        if kind == "webhook"
        else {"url": f"{hook.url}/{kind}"}
    )


def channel(kind: str, options: dict[str, Any]) -> Channel:
    plugin = registry().get("alert", kind)
    return open_channel(ChannelSpec(kind, kind, msgspec.convert(options, plugin.options)))


def received(kind: str, smtp: Mailbox, hook: Hook) -> str:
    """The text of what the receiver got for ``kind``."""
    if kind == "email":
        assert len(smtp.mails) == 1
        return str(smtp.mails[0][2].get_content())
    assert len(hook.posts) == 1
    return str(hook.posts[0][2]["text"])


def test_every_builtin_channel_is_tested() -> None:
    assert {p.name for p in BUILTINS} == {"email", "slack", "webhook"}


@pytest.mark.parametrize("plugin", BUILTINS, ids=lambda p: p.name)
def test_contract_a_channel_delivers_what_where_error_and_link(plugin: Any, smtp: Mailbox, hook: Hook) -> None:
    target = plugin.load()
    assert isinstance(target, type) and issubclass(target, Channel)
    chan = channel(plugin.name, options_for(plugin.name, smtp, hook))
    chan.deliver(ALERT, sleep=lambda s: None)
    text = received(plugin.name, smtp, hook)
    for part in ("object 1002 orders failed", "shop", "1002 orders (ingest)", "r-42", "2026-11-30T02:00:00+00:00",
                 "connection reset", "http://sluice.example:8000/?run=r-42", "and 7 more since 2026-"):  # fmt: skip
        assert part in text, (part, text)


@pytest.mark.parametrize("plugin", BUILTINS, ids=lambda p: p.name)
def test_contract_an_unreachable_receiver_is_a_transient_delivery_error(plugin: Any, smtp: Mailbox, hook: Hook) -> None:
    options = options_for(plugin.name, smtp, hook)
    closed = free_port()
    if plugin.name == "email":
        options["port"] = closed
    else:
        options["url"] = f"http://127.0.0.1:{closed}/x"
    options["attempts"] = 2
    waits: list[float] = []
    with pytest.raises(DeliveryError) as caught:
        channel(plugin.name, options).deliver(ALERT, sleep=waits.append)
    assert caught.value.transient and waits == [0.5]


def test_email_is_really_received_with_login_subject_and_recipients(smtp: Mailbox, hook: Hook) -> None:
    channel("email", options_for("email", smtp, hook)).deliver(ALERT)
    sender, recipients, mail = smtp.mails[0]
    assert smtp.logins == [SMTP_USER]
    assert sender == "sluice@example.com" and recipients == ["oncall@example.com", "data@example.com"]
    assert mail["Subject"] == "[sluice] [CRITICAL] shop: object 1002 orders failed after 2 attempts"
    assert mail["To"] == "oncall@example.com, data@example.com"


def test_email_over_tls_checks_the_certificate_then_logs_in(smtp_tls: tuple[Mailbox, str, Path], hook: Hook) -> None:
    box, security, cert = smtp_tls
    options = {**options_for("email", box, hook), "security": security, "ca_file": str(cert)}
    channel("email", options).deliver(ALERT)
    assert box.logins == [SMTP_USER] and len(box.mails) == 1
    untrusted = {**options, "ca_file": None, "attempts": 1}  # the system's authorities do not know this certificate
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        channel("email", untrusted).deliver(ALERT)
    assert len(box.mails) == 1


def test_email_refused_recipient_is_terminal(smtp: Mailbox, hook: Hook) -> None:
    options = {**options_for("email", smtp, hook), "to": ["nobody@example.com"]}
    with pytest.raises(DeliveryError, match=r"refused every recipient: nobody@example\.com") as caught:
        channel("email", options).deliver(ALERT, sleep=lambda s: pytest.fail("a terminal error is not retried"))
    assert not caught.value.transient and smtp.mails == []


def test_slack_payload_has_text_and_blocks(hook: Hook) -> None:
    channel("slack", {"url": f"{hook.url}/services/T0/B0/x"}).deliver(ALERT)
    path, headers, body = hook.posts[0]
    assert path == "/services/T0/B0/x" and headers["Content-Type"] == "application/json"
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("[CRITICAL] shop: object 1002 orders failed after 2 attempts")
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds == ["header", "section", "section", "context", "actions"]
    assert body["blocks"][-1]["elements"][0]["url"] == "http://sluice.example:8000/?run=r-42"
    assert "and 7 more since" in body["blocks"][3]["elements"][0]["text"]


def test_webhook_posts_the_alert_as_json_with_headers(hook: Hook) -> None:
    channel("webhook", {"url": f"{hook.url}/hooks", "headers": {"Authorization": "Bearer t0ken"}}).deliver(ALERT)
    path, headers, body = hook.posts[0]
    assert path == "/hooks" and headers["Authorization"] == "Bearer t0ken"
    assert body["type"] == "sluice.alert" and body["v"] == PAYLOAD_VERSION
    assert {k: body[k] for k in ("trigger", "severity", "object_id", "run_id", "logical_date", "url", "folded")} == {
        "trigger": "object_failed", "severity": "critical", "object_id": 1002, "run_id": "r-42",
        "logical_date": "2026-11-30T02:00:00+00:00", "url": "http://sluice.example:8000/?run=r-42", "folded": 7,
    }  # fmt: skip
    assert body["at"] == "2026-05-28T20:26:40+00:00" and body["folded_since"] == "2026-05-28T20:16:40+00:00"


def test_a_5xx_is_retried_then_delivered_and_a_4xx_is_terminal(hook: Hook) -> None:
    hook.statuses = [503, 429]
    waits: list[float] = []
    channel("webhook", {"url": f"{hook.url}/a"}).deliver(ALERT, sleep=waits.append)
    assert len(hook.posts) == 3 and waits == [0.5, 1.0]
    hook.statuses = [404]
    with pytest.raises(DeliveryError, match="answered 404") as caught:
        channel("webhook", {"url": f"{hook.url}/b/secret-path?token=secret"}).deliver(ALERT, sleep=waits.append)
    assert not caught.value.transient and "secret" not in str(caught.value) and len(hook.posts) == 4
    assert str(caught.value).startswith(f"POST {hook.url}/... answered 404")
