"""Fixtures of the streaming tests (streams.py)."""

from __future__ import annotations

from streaming.streams import topics  # noqa: F401
