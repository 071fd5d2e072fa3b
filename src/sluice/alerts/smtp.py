"""The email channel: an alert as a plain-text message through an SMTP server (the standard library's smtplib).

``security``: ``starttls`` upgrades a plain connection (port 587), ``ssl`` speaks TLS from the start (465),
``none`` sends in clear (a local relay). A refused connection, a time-out and SMTP 4xx answers are transient;
5xx answers (a recipient refused, a failed login) and a server without STARTTLS or AUTH are terminal.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from sluice.alerts.channels import Channel, DeliveryError
from sluice.alerts.model import Alert
from sluice.alerts.payloads import subject, text
from sluice.alerts.plugins import EmailOptions


def message(alert: Alert, options: EmailOptions) -> EmailMessage:
    """The email of ``alert``: subject ``<prefix> [SEVERITY] project: what failed``, the text payload as body."""
    mail = EmailMessage()
    mail["Subject"] = f"{options.subject_prefix} {subject(alert)}".strip()
    mail["From"] = options.from_
    mail["To"] = ", ".join(options.to)
    mail.set_content(text(alert) + "\n")
    return mail


def tls(options: EmailOptions) -> ssl.SSLContext:
    """A TLS context that checks the server's certificate and name: against ``ca_file`` when given, else the
    system's certificate authorities."""
    return ssl.create_default_context(cafile=options.ca_file)


class EmailChannel(Channel):
    """``type: email``: one message per alert to every address of ``to``."""

    options: EmailOptions

    def send(self, alert: Alert) -> None:
        o = self.options
        where = f"SMTP {o.host}:{o.port}"
        try:
            smtp: smtplib.SMTP
            if o.security == "ssl":
                smtp = smtplib.SMTP_SSL(o.host, o.port, timeout=o.timeout_s, context=tls(o))
            else:
                smtp = smtplib.SMTP(o.host, o.port, timeout=o.timeout_s)
            with smtp:
                if o.security == "starttls":
                    smtp.starttls(context=tls(o))
                if o.username:
                    smtp.login(o.username, o.password or "")
                smtp.send_message(message(alert, o))
        except smtplib.SMTPResponseException as exc:
            reason = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(f"{where} answered {exc.smtp_code}: {reason}", transient=400 <= exc.smtp_code < 500) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"{where} refused every recipient: {', '.join(exc.recipients)}", transient=False) from exc
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or no AUTH: the settings, not the moment
            raise DeliveryError(f"{where}: {exc}; check security and username", transient=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{where}: {exc or type(exc).__name__}", transient=True) from exc
