"""``api:`` settings from plain dicts, shared by the tests and by tiny_app.py (run as a separate process)."""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.api.settings import ApiSettings, ApiSource, AuthSettings, LimitSettings, ProxyRoute

SECRET = "a-test-secret-of-at-least-32-bytes-long!"


def api_settings(**sections: Any) -> ApiSettings:
    """An ``api:`` section: one SQLite source, roles ``anon``/``editor``/``viewer``, HS256 tokens for
    audience ``sluice``, no rate limit; ``sections`` replace or extend the top-level keys."""
    data: dict[str, Any] = {
        "sources": [{"connection": "db", "tables": ["*"]}],
        "roles": {"anon": {}, "editor": {}, "viewer": {}},
        "auth": {"anon_role": "anon", "jwt": {"algorithms": ["HS256"], "secret": SECRET, "audience": "sluice"}},
    }
    data.update(sections)
    # Section by section: msgspec cannot build a decoder for the whole ApiSettings on main yet
    # (SelectPermission.limit puts `ge` on `int | None`), and the parts this package reads decode fine.
    parts = {"sources": [msgspec.convert(source, ApiSource) for source in data.pop("sources")]}
    types = {"auth": AuthSettings, "limits": LimitSettings}
    for name, value in data.items():
        if name in types:
            parts[name] = msgspec.convert(value, types[name])
        elif name == "proxies":
            parts[name] = [msgspec.convert(route, ProxyRoute) for route in value]
        else:
            parts[name] = value
    return ApiSettings(**parts)
