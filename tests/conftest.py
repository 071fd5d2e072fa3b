"""Shared fixtures. Server fixtures (PostgreSQL, MariaDB, Kafka) live in servers_fixtures.py; the alert channels'
receivers (a real SMTP server, a real HTTP server) in alert_receivers.py; the order of the test files (longest first)
in ordering.py."""

from __future__ import annotations

from alert_receivers import hook, smtp, smtp_tls  # noqa: F401
from ordering import pytest_collection_modifyitems, pytest_runtest_logreport, pytest_sessionfinish  # noqa: F401
from servers_fixtures import (  # noqa: F401
    chromium,
    kafka_ns_url,
    kafka_url,
    mysql_db_url,
    mysql_url,
    own_pg,
    pg_db_url,
    pg_url,
    redis_url,
    s3_url,
)
