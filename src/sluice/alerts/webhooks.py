"""Webhook channels over HTTP (httpx): a Slack-compatible incoming webhook and a generic JSON POST.

A time-out, a refused connection, HTTP 429 and 5xx are transient (tried again by :meth:`Channel.deliver`);
other 4xx answers are terminal (a wrong URL or token: trying again cannot help).
"""

from __future__ import annotations

from typing import Any

import httpx

from sluice.alerts.channels import Channel, DeliveryError
from sluice.alerts.model import Alert
from sluice.alerts.payloads import as_json, slack
from sluice.alerts.plugins import SlackOptions, WebhookOptions


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> None:
    """POST ``body`` as JSON to ``url``; raise DeliveryError (transient or not) unless the answer is 2xx."""
    parsed = httpx.URL(url)
    where = f"{parsed.scheme}://{parsed.netloc.decode()}/..."  # never print a token (Slack's is in the path)
    try:
        answer = httpx.post(url, json=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"POST {where} timed out after {timeout_s:g} s ({type(exc).__name__})", transient=True) from exc
    except httpx.TransportError as exc:
        raise DeliveryError(f"POST {where} failed: {exc}", transient=True) from exc
    if answer.is_success:
        return
    transient = answer.status_code == 429 or answer.status_code >= 500
    raise DeliveryError(f"POST {where} answered {answer.status_code}: {answer.text[:200]}", transient=transient)


class SlackChannel(Channel):
    """``type: slack``: the alert as a Slack message (``text`` and ``blocks``) to an incoming webhook."""

    options: SlackOptions

    def send(self, alert: Alert) -> None:
        post_json(self.options.url, slack(alert), {}, self.options.timeout_s)


class WebhookChannel(Channel):
    """``type: webhook``: the alert as JSON (docs/alerts.md, payloads) POSTed with the configured headers."""

    options: WebhookOptions

    def send(self, alert: Alert) -> None:
        post_json(self.options.url, as_json(alert), dict(self.options.headers), self.options.timeout_s)
