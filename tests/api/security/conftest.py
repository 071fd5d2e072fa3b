"""Helpers of the security tests: signing keys and tokens, a local upstream (settings: support.py)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .support import SECRET


def token(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256", headers: dict[str, Any] | None = None) -> str:
    """A signed JWT; ``exp`` defaults to one hour from now, ``aud`` to ``sluice``."""
    body = {"aud": "sluice", "exp": int(time.time()) + 3600, **claims}
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


class RsaKey:
    """An RSA key pair with its PEM public key and its JWK (``kid`` given)."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return token(claims, self.private, "RS256", {"kid": kid or self.kid})


@pytest.fixture(scope="session")
def rsa_key() -> RsaKey:
    return RsaKey("key-1")


@pytest.fixture(scope="session")
def other_rsa_key() -> RsaKey:
    return RsaKey("key-2")


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadServer:
    """An ASGI app served by uvicorn in a thread of the test process on a free loopback port."""

    def __init__(self, app: Any, lifespan: str = "off") -> None:
        self.sock = free_socket()
        host, port = self.sock.getsockname()
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "the upstream did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (the port was just bound and released)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def project_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "project"
    folder.mkdir()
    yield folder
