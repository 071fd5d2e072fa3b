"""Real receivers for alert channels: an SMTP server (aiosmtpd) and an HTTP server (``http.server``), both on
127.0.0.1 in threads of the test process, recording what they receive."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # aiosmtpd is imported by the SMTP fixtures only: without it, only the email tests fail
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

SMTP_USER = "alerts"
SMTP_PASSWORD = "s3cret-from-env"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP server accepted: (envelope sender, recipients, parsed message), and the logins it saw."""

    port: int
    mails: list[tuple[str, list[str], Message]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        self.mails.append((str(envelope.mail_from), list(envelope.rcpt_tos), message_from_bytes(content, policy=policy.default)))
        self.received.set()
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(data, LoginPassword) and data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode()
        if ok:
            self.logins.append(SMTP_USER)
        return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, accepting a login over the plain connection."""
    box = Mailbox(free_port())
    from aiosmtpd.controller import Controller

    controller = Controller(box, hostname="127.0.0.1", port=box.port, authenticator=box.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (``cert.pem``, ``key.pem`` in ``folder``): the one
    certificate authority a client given ``cert.pem`` trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sluice test SMTP")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture(params=["starttls", "ssl"])
def smtp_tls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Mailbox, str, Path]]:
    """A real SMTP server over TLS with a self-signed certificate: STARTTLS required before the login, or TLS from
    the first byte; the mailbox, the ``security`` to use and the certificate to trust."""
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    box = Mailbox(free_port())
    tls: dict[str, Any] = (
        {"tls_context": context, "require_starttls": True}
        if request.param == "starttls"
        else {"ssl_context": context, "auth_require_tls": False}  # aiosmtpd sees STARTTLS only: the socket is TLS
    )
    from aiosmtpd.controller import Controller

    controller = Controller(box, hostname="127.0.0.1", port=box.port, authenticator=box.authenticate, **tls)
    controller.start()
    try:
        yield box, str(request.param), cert
    finally:
        controller.stop()


@dataclass
class Hook:
    """What the HTTP server received: (path, headers, JSON body) per POST. ``statuses``: the answers to give,
    in order (then 200)."""

    url: str
    posts: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A real HTTP server on 127.0.0.1 (``http.server`` in a thread) recording JSON POSTs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    received = Hook(f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.posts.append((self.path, dict(self.headers), json.loads(body)))
            status = received.statuses.pop(0) if received.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
