"""Rate limits per API key, per subject and per client address, counted with the `limits` library.

Strategy: **moving window** (``limits.strategies.MovingWindowRateLimiter``). It keeps the time of each hit in
the window and allows a hit when fewer than N happened in the last window, so "100/minute" never lets 200
requests through around a window boundary as a fixed window does (the fixed window's 2x burst). It costs a
timestamp per hit and window (memory in the process, a list per key in Redis, updated atomically by a Lua
script), which is small for API limits of hundreds or thousands per window.

Storage: ``memory://`` counts in the process (one replica), ``redis://host:port[/db]`` counts in Redis so
every replica shares one limit. Keys are ``sluice-api/<limit>/<kind>/<id>`` under the ``sluice`` prefix.
When Redis fails, the request is let through without counting and
``sluice_api_rate_limit_storage_errors_total`` grows, as Kong's ``fault_tolerant`` default does: an outage
of the counter should not become an outage of the API.

Over a limit: :class:`DataApiError` 429 ``rate-limited`` (RFC 6585) with ``Retry-After`` (seconds, RFC 9110
§10.2.3) and the ``RateLimit-Limit``, ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds) and
``RateLimit-Policy`` fields of draft-ietf-httpapi-ratelimit-headers-06 (December 2022; the last draft with
separate fields; -07 merged them into one ``RateLimit`` field).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from dataclasses import dataclass

import limits
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from sluice.api.gate import DataApiError
from sluice.api.security import metrics
from sluice.api.settings import RateLimits
from sluice.errors import ConfigError

log = logging.getLogger("sluice.api")

KEY_PREFIX = "sluice"


@dataclass(frozen=True, slots=True)
class Limit:
    """One parsed limit of one kind (``key``, ``subject``, ``address``): ``100/second`` is amount 100, window 1 s."""

    kind: str
    item: limits.RateLimitItem

    @property
    def policy(self) -> str:
        """``100;w=1`` (draft-06 ``RateLimit-Policy`` item)."""
        return f"{self.item.amount};w={self.item.get_expiry()}"


def parse_limits(kind: str, text: str | None) -> list[Limit]:
    """The limits of ``text`` (``"1000/hour;50/minute"``). Raises ConfigError naming ``api.limits.rate.per_<kind>``."""
    if text is None:
        return []
    try:
        return [Limit(kind, item) for item in limits.parse_many(text)]
    except ValueError as exc:
        raise ConfigError(f"api.limits.rate.per_{kind}: {text!r} is not a rate limit like '100/second' ({exc})") from None


def storage_options(url: str) -> dict[str, float | str | bool]:
    """The options of the ``limits`` storage at ``url``. Raises ConfigError for a redis:// storage without the
    redis client installed."""
    if not url.startswith("redis"):
        return {}
    if importlib.util.find_spec("redis") is None:
        raise ConfigError("api.limits.rate.storage: a redis:// storage needs the redis client: pip install 'sluice[redis]'")
    return {"key_prefix": KEY_PREFIX, "socket_timeout": 2.0, "socket_connect_timeout": 2.0}


class RateLimiter:
    """The configured limits of one ``api:`` section over one storage.

    Raises ConfigError for a limit or a storage URL it cannot use (``memory://``, ``redis://...``).
    """

    def __init__(self, settings: RateLimits) -> None:
        self.per_kind = {
            "key": parse_limits("key", settings.per_key),
            "subject": parse_limits("subject", settings.per_subject),
            "address": parse_limits("address", settings.per_address),
        }
        self.storage_url = settings.storage
        self.enabled = any(self.per_kind.values())
        options = storage_options(settings.storage)
        try:
            self.storage = storage_from_string(settings.storage, **options)
        except (ConfigurationError, ValueError) as exc:
            raise ConfigError(
                f"api.limits.rate.storage: cannot use {settings.storage!r} ({exc}); use memory:// or redis://host:port"
            ) from None
        self.limiter = MovingWindowRateLimiter(self.storage)

    def hit(self, kind: str, identity: str, *, operation: str, role: str) -> None:
        """Count one request of ``identity`` (a key id, a subject or an address) against the limits of ``kind``.

        Raises DataApiError 429 with the limit's headers when one of them is exhausted (the request is not
        counted against the limits after the one that refused it).
        """
        for limit in self.per_kind[kind]:
            try:
                allowed = self.limiter.hit(limit.item, "sluice-api", kind, identity)
            except Exception as exc:  # the storage's own errors (redis.ConnectionError...): let the request through
                metrics.RATE_LIMIT_ERRORS.inc()
                log.warning("rate-limit storage %s failed, request not counted: %s", _where(self.storage_url), exc)
                return
            if not allowed:
                metrics.RATE_LIMITED.labels(operation, role, kind).inc()
                raise DataApiError(
                    f"rate limit exceeded: {limit.item.amount} per {_window(limit.item)} per {_kinds[kind]}",
                    status=429,
                    code="rate-limited",
                    headers=self._headers(limit, identity),
                )

    def _headers(self, limit: Limit, identity: str) -> dict[str, str]:
        try:
            stats = self.limiter.get_window_stats(limit.item, "sluice-api", limit.kind, identity)
            reset_at, remaining = stats.reset_time, max(0, stats.remaining)
        except Exception:  # the storage failed after refusing: a full window from now is a safe answer
            reset_at, remaining = time.time() + limit.item.get_expiry(), 0
        wait = max(1, math.ceil(reset_at - time.time()))
        return {
            "Retry-After": str(wait),
            "RateLimit-Limit": str(limit.item.amount),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(wait),
            "RateLimit-Policy": limit.policy,
        }

    def check(self) -> bool:
        """Whether the storage answers (``memory://`` always does)."""
        try:
            return bool(self.storage.check())
        except Exception:
            return False


_kinds = {"key": "API key", "subject": "subject", "address": "client address"}


def _window(item: limits.RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


def _where(url: str) -> str:
    """The storage URL without its password, for logs."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
