"""The built-in alert channels (plugins of kind ``alert``): email over SMTP, Slack-compatible and generic webhooks.

A channel is written in ``alerts.channels`` as ``{type: <plugin name>, ...options}``; its options are
checked against the structures below before anything runs (docs/alerts.md). Secrets come from the
environment with ``${VAR}``, which sluice.yaml expands in every string.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Plugin, Settings

Timeout = Annotated[float, Meta(gt=0, description="Seconds to wait for the server at each attempt.")]
Attempts = Annotated[int, Meta(ge=1, le=10, description="Attempts in all for a transient failure (the first included).")]


def check_web_url(url: str) -> None:
    """Raise ValueError (``url: ...``, reported at the ``url:`` line) when ``url`` cannot be POSTed to: no host, or
    not a URL httpx reads; the scheme is the field's pattern's."""
    import httpx  # the client that posts (webhooks.py); imported only when a channel is read

    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"url: {url!r} is not a URL ({exc}); write https://host/path") from None
    if not host:
        raise ValueError(f"url: {url!r} has no host; write https://host/path")


class EmailOptions(Settings):
    """``{type: email, host: smtp.example.com, port: 587, security: starttls, username: ..., password: ${SMTP_PASSWORD},
    from: sluice@example.com, to: [oncall@example.com]}``."""

    host: Annotated[str, Meta(min_length=1, description="SMTP server host name.")]
    to: Annotated[list[str], Meta(min_length=1, description="Recipients' addresses.")]
    from_: Annotated[str, Meta(min_length=3, description="The sender's address (From:).")] = msgspec.field(name="from")
    port: Annotated[int, Meta(ge=1, le=65535, description="SMTP port (587 with starttls, 465 with ssl, 25 without).")] = 587
    security: Annotated[
        Literal["starttls", "ssl", "none"],
        Meta(description="starttls (upgrade a plain connection), ssl (TLS from the start) or none (local relays)."),
    ] = "starttls"
    username: Annotated[str | None, Meta(description="Login name; none: no authentication.")] = None
    password: Annotated[str | None, Meta(description="Password, usually ${SMTP_PASSWORD} from the environment.")] = None
    ca_file: Annotated[
        str | None,
        Meta(
            description="PEM file of the certificate authorities to trust for TLS (relative to the project; "
            "default: the system's)."
        ),
    ] = None
    subject_prefix: Annotated[str, Meta(description="Text put before every subject.")] = "[sluice]"
    timeout_s: Timeout = 10.0
    attempts: Attempts = 3


class SlackOptions(Settings):
    """``{type: slack, url: ${SLACK_WEBHOOK_URL}}``: a Slack (or Mattermost, Rocket.Chat...) incoming webhook."""

    url: Annotated[str, Meta(pattern=r"^https?://", description="The incoming webhook's URL.")]
    timeout_s: Timeout = 10.0
    attempts: Attempts = 3

    def __post_init__(self) -> None:
        check_web_url(self.url)


class WebhookOptions(Settings):
    """``{type: webhook, url: https://example.com/hooks/sluice, headers: {Authorization: 'Bearer ${TOKEN}'}}``."""

    url: Annotated[str, Meta(pattern=r"^https?://", description="Where the alert is POSTed as JSON.")]
    headers: Annotated[dict[str, str], Meta(description="Extra HTTP headers (authentication).")] = msgspec.field(
        default_factory=dict
    )
    timeout_s: Timeout = 10.0
    attempts: Attempts = 3

    def __post_init__(self) -> None:
        check_web_url(self.url)


PLUGINS: list[Plugin] = [
    Plugin(
        "alert",
        "email",
        EmailOptions,
        "sluice.alerts.smtp:EmailChannel",
        "Email through an SMTP server (smtplib): STARTTLS or SSL, login, several recipients.",
    ),
    Plugin(
        "alert",
        "slack",
        SlackOptions,
        "sluice.alerts.webhooks:SlackChannel",
        "A Slack-compatible incoming webhook: a message with text and blocks.",
    ),
    Plugin(
        "alert",
        "webhook",
        WebhookOptions,
        "sluice.alerts.webhooks:WebhookChannel",
        "A generic JSON POST of the alert to any URL, with optional headers.",
    ),
]
