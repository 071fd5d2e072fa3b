"""The lake contract fixtures (contract.py) for every test of this folder."""

from __future__ import annotations

from lake.contract import backend  # noqa: F401
