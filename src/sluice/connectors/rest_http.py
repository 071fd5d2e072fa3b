"""HTTP for the REST source: authentication, retries with backoff, ``Retry-After``, a client-side rate limit.

One :class:`HttpClient` per read wraps an ``httpx.Client`` (keep-alive connections, HTTP/1.1). A request is
retried on 429, 5xx, time-outs and transport errors, waiting either the server's ``Retry-After`` (RFC 9110
section 10.2.3: seconds or an HTTP date) or an exponential backoff with "full jitter" (a random wait in
``[0, min(max_backoff_s, backoff_s * 2**(n-1))]``, AWS Architecture Blog, "Exponential Backoff and Jitter").
When attempts run out it raises :class:`~sluice.errors.TransientError` (the run may retry the object);
any other 4xx raises :class:`~sluice.errors.TerminalError` at once. Messages name the object, the URL
without its secrets (:func:`shown_url`) and the status; secrets are never put in a message or a log line
(httpx's own request log lines are rewritten the same way, :class:`RedactUrls`).

**Credentials stay at home.** The credentials (auth headers, the API key's query parameter, basic auth) go only to
requests whose origin (scheme, host, port: RFC 6454) is the base URL's. A next-page link or a redirect to another
origin is still followed, without them (as browsers, curl and requests do), and a DEBUG line says so. Redirects are
followed here, not by httpx, so that every hop is checked: at most :data:`MAX_REDIRECTS` per request.

>>> retry_after_s("120", now=0.0)
120.0
>>> retry_after_s("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
30.0
>>> retry_after_s("soon", now=0.0) is None
True
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from sluice.connectors.rest_options import ApiKeyAuth, Auth, BasicAuth, BearerAuth, Retries
from sluice.errors import TerminalError, TransientError
from sluice.pacing import TokenBucket

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 10
"""Redirects followed for one request before it fails (TerminalError)."""
DEFAULT_PORTS = {"http": 80, "https": 443}

log = logging.getLogger(__name__)


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """``url``'s origin: (scheme, host, port), the port given even when it is the scheme's default.

    >>> origin(httpx.URL("HTTPS://Api.Example.com/v1")) == origin(httpx.URL("https://api.example.com:443/x"))
    True
    >>> origin(httpx.URL("http://127.0.0.1:8000/")) == origin(httpx.URL("http://127.0.0.1:8001/"))
    False
    """
    return url.scheme, url.host, url.port if url.port is not None else DEFAULT_PORTS.get(url.scheme)


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date, RFC 9110), or None if absent or
    unreadable. A date in the past gives 0. ``now`` is seconds since the epoch."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, moment.timestamp() - now)


def backoff_s(retry: int, retries: Retries, rand: Callable[[], float] = random.random) -> float:
    """The full-jitter wait before retry number ``retry`` (1 = the first retry), in seconds."""
    ceiling = min(retries.max_backoff_s, retries.backoff_s * 2 ** (retry - 1))
    return float(ceiling * rand())


@dataclass(slots=True)
class Credentials:
    """What authentication adds to each request to the base URL's origin (:class:`HttpClient`); ``secret_params``
    are query names left out of messages."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None
    secret_params: frozenset[str] = frozenset()


def credentials(auth: Auth | None, user: str | None, password: str | None, where: str) -> Credentials:
    """The credentials of ``auth``: secrets from its ``*_env`` variable, else from the connection's ``password``.

    Raises TerminalError naming the variable (never its value) when it is unset or empty, or when neither gives one.
    """
    if auth is None:
        return Credentials()
    if isinstance(auth, BearerAuth):
        return Credentials(headers={"Authorization": f"Bearer {_secret(auth.token_env, password, where, 'token')}"})
    if isinstance(auth, ApiKeyAuth):
        key = _secret(auth.key_env, password, where, "API key")
        if auth.location == "header":
            return Credentials(headers={auth.name: key})
        return Credentials(params={auth.name: key}, secret_params=frozenset({auth.name}))
    assert isinstance(auth, BasicAuth)
    name = auth.username if auth.username is not None else user
    if not name:
        raise TerminalError(f"{where}: basic auth needs a 'username' (or a connection URL with one: https://user:pass@host)")
    return Credentials(basic=(name, _secret(auth.password_env, password, where, "password")))


def _secret(env: str | None, password: str | None, where: str, what: str) -> str:
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            raise TerminalError(f"{where}: the {what} comes from the environment variable {env}, which is not set")
        return value
    if password:
        return password
    raise TerminalError(f"{where}: auth needs a {what}: name an environment variable (*_env) or use a connection with one")


_SECRET_PARAMS: set[str] = set()


class RedactUrls(logging.Filter):
    """Rewrites the URLs of httpx's own ``HTTP Request: GET <url> ...`` log lines (logger ``httpx``, level INFO,
    which a worker's default ``--log-level info`` shows) as :func:`shown_url` does: no user, password or
    query-parameter key of any REST source's auth."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, httpx.URL) for arg in record.args):
            secret = frozenset(_SECRET_PARAMS)
            record.args = tuple(shown_url(arg, secret) if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return True


_REDACT = RedactUrls()


def _guard_httpx_log(secret_params: frozenset[str]) -> None:
    _SECRET_PARAMS.update(secret_params)
    logger = logging.getLogger("httpx")
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)


def shown_url(url: httpx.URL, secret_params: frozenset[str]) -> str:
    """``url`` as messages show it: no user or password, no secret query parameters."""
    clean = url.copy_with(username=None, password=None) if url.userinfo else url
    for name in secret_params:
        if name in clean.params:
            clean = clean.copy_remove_param(name)
    return str(clean)


class HttpClient:
    """GETs JSON with retries and a rate limit. ``where`` names the object in every message.

    ``creds`` are sent only to URLs of ``base_url``'s origin (scheme, host, port; see the module's docstring).
    ``sleep`` and ``rand`` are injectable for tests; ``now`` gives seconds since the epoch (for HTTP dates).
    """

    def __init__(
        self,
        where: str,
        creds: Credentials,
        retries: Retries,
        timeout_s: float,
        headers: Mapping[str, str],
        rate_limit: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        *,
        base_url: str,
    ) -> None:
        self.where = where
        self.creds = creds
        self.home = origin(httpx.URL(base_url))
        """The origin the credentials may go to."""
        self.retries = retries
        self.sleep, self.rand = sleep, rand
        self.bucket = TokenBucket(rate_limit, sleep=sleep) if rate_limit else None
        _guard_httpx_log(creds.secret_params)
        self.basic = httpx.BasicAuth(*creds.basic) if creds.basic else None
        self.client = httpx.Client(
            headers={"Accept": "application/json", **headers},
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,  # followed by send(), which checks each hop's origin
        )
        self.requests = 0
        """HTTP requests sent so far (each retry and each redirect hop counted)."""
        self.received = 0
        """Bytes of the successful responses' bodies so far (progress lines)."""
        self._count = threading.Lock()  # pages may be fetched in threads (paginate.concurrency)

    def get(self, url: str, params: Mapping[str, Any]) -> httpx.Response:
        """The successful (2xx) response to ``GET url?params``, redirects followed; retried as the class says.

        The response's ``request.url`` is the last hop's. Raises TransientError when attempts run out on a
        retryable failure, TerminalError on another 4xx or more than :data:`MAX_REDIRECTS` redirects, both naming
        the object, the URL (secrets left out) and the status or error.
        """
        # Merged into the URL's own query (a next-page link keeps its parameters; httpx's params= would replace them).
        target = httpx.URL(url).copy_merge_params({k: _text(v) for k, v in params.items()})
        shown = shown_url(target, self.creds.secret_params)
        attempts = self.retries.attempts
        for attempt in range(1, attempts + 1):
            if self.bucket is not None:
                self.bucket.acquire()
            try:
                response = self.send(target, shown)
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if attempt == attempts:
                    raise TransientError(f"{self.where}: GET {shown} failed {_times(attempts)}, last: {failure}") from None
                self.sleep(backoff_s(attempt, self.retries, self.rand))
                continue
            except httpx.HTTPError as exc:
                raise TerminalError(f"{self.where}: GET {shown}: {type(exc).__name__}") from None
            status = response.status_code
            if status < 400:
                with self._count:
                    self.received += len(response.content)
                return response
            if status not in RETRY_STATUSES:
                raise TerminalError(f"{self.where}: GET {shown} answered {status} {response.reason_phrase}{_hint(status)}")
            wait = retry_after_s(response.headers.get("Retry-After"), time.time())
            if attempt == attempts:
                raise TransientError(f"{self.where}: GET {shown} answered {status} {_times(attempts)} (retries exhausted)")
            if wait is not None and wait > self.retries.max_retry_after_s:
                raise TransientError(
                    f"{self.where}: GET {shown} answered {status} with Retry-After {wait:.0f} s, "
                    f"longer than retries.max_retry_after_s ({self.retries.max_retry_after_s:.0f} s)"
                )
            self.sleep(wait if wait is not None else backoff_s(attempt, self.retries, self.rand))
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, url: httpx.URL, shown: str) -> httpx.Response:
        """One GET of ``url`` (no credentials in it), following up to :data:`MAX_REDIRECTS` redirects; credentials
        added to each hop whose origin is the base URL's. The last hop's response, whatever its status.

        Raises httpx's errors (the caller retries transport errors) and TerminalError past the redirect limit.
        """
        for _ in range(MAX_REDIRECTS + 1):
            with self._count:
                self.requests += 1
            if origin(url) == self.home:
                request = self.client.build_request("GET", url.copy_merge_params(self.creds.params), headers=self.creds.headers)
                response = self.client.send(request, auth=self.basic)
            else:
                if self.creds.headers or self.creds.params or self.basic:
                    log.debug(
                        "%s: GET %s without credentials: not the base URL's origin", self.where, shown_url(url, frozenset())
                    )
                response = self.client.send(self.client.build_request("GET", url), auth=None)
            if not response.is_redirect:
                return response
            response.close()
            # joined to the URL without credentials: a Location with no query of its own must not carry the API key on
            url = url.join(response.headers["Location"])
        raise TerminalError(f"{self.where}: GET {shown}: more than {MAX_REDIRECTS} redirects")

    def close(self) -> None:
        self.client.close()


def _times(count: int) -> str:
    """``"1 time"``, ``"3 times"``."""
    return "1 time" if count == 1 else f"{count} times"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _hint(status: int) -> str:
    if status in (401, 403):
        return "; check the source's auth and its credentials"
    if status == 404:
        return "; check base_url and path"
    return ""
