"""Who a request is: API key, JWT or the anonymous role, and the refusals with their codes.

Credentials, one per request (RFC 6750 §2: "clients MUST NOT use more than one method"):

- ``X-API-Key: slk_...`` or ``Authorization: ApiKey slk_...``: a key made by ``sluice api-key create``;
  the principal is the key's role and owner (claims ``{"sub": owner, "role": role}``).
- ``Authorization: Bearer <jwt>``: a token checked by :class:`~sluice.api.security.jwt_tokens.JwtVerifier`;
  the role is the ``role_claim`` claim, the subject ``sub``, the claims the token's.
- nothing: ``api.auth.anon_role``, or 401 ``credentials-required`` when it is null.

A role must be one of ``api.roles`` or ``api.admin_role``, else 403 ``unknown-role``. Refusals are
:class:`DataApiError` with a stable code and a ``WWW-Authenticate`` challenge as RFC 6750 §3 describes
(``Bearer`` for tokens; the same parameters on an ``ApiKey`` challenge for keys): no ``error`` parameter
when credentials are missing, ``invalid_request`` (400) for a malformed request, ``invalid_token`` (401)
for bad, expired or revoked credentials, ``insufficient_scope`` (403) for a role the API does not know.

Codes: ``credentials-required``, ``invalid-request``, ``invalid-token``, ``expired-token``,
``token-not-yet-valid``, ``wrong-audience``, ``wrong-issuer``, ``unknown-role``, ``unknown-key``,
``revoked-key``, ``expired-key``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.security.jwt_tokens import JwtVerifier, TokenRefused, role_of
from sluice.api.security.keys import ApiKeyRecord, KeyStore, key_id_of, matches
from sluice.api.settings import ApiSettings

REALM = "sluice"
KEY_CACHE_ENTRIES = 10_000
_STATUS_ERROR = {400: "invalid_request", 401: "invalid_token", 403: "insufficient_scope"}


def challenge(scheme: str, status: int | None = None, description: str | None = None) -> str:
    """One ``WWW-Authenticate`` challenge: ``Bearer realm="sluice", error="invalid_token", error_description="..."``.

    ``status`` picks the RFC 6750 error code (none when None: credentials were missing); the description keeps
    only the characters RFC 6750 §3 allows in it (printable ASCII without ``"`` and ``\\``).
    """
    parts = [f'realm="{REALM}"']
    if status is not None:
        parts.append(f'error="{_STATUS_ERROR[status]}"')
        if description:
            text = "".join(ch for ch in description if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\')
            parts.append(f'error_description="{text}"')
    return f"{scheme} " + ", ".join(parts)


class Authenticator:
    """Turns request headers into a :class:`Principal` for one ``api:`` section.

    ``keys`` is the API key store (None when ``api.auth.api_keys`` is false). Key records are cached for
    ``key_cache_s`` seconds (0: asked each time), so a revoked key is refused by every replica within that
    time. Raises ConfigError at construction when the JWT settings cannot be used.
    """

    def __init__(self, settings: ApiSettings, project_dir: Path, keys: KeyStore | None, key_cache_s: float = 1.0) -> None:
        self.settings = settings
        self.auth = settings.auth
        self.roles = frozenset(settings.roles) | {settings.admin_role}
        self.jwt = JwtVerifier(settings.auth.jwt, project_dir) if settings.auth.jwt is not None else None
        self.keys = keys if settings.auth.api_keys else None
        self.key_cache_s = key_cache_s
        self._cache: dict[str, tuple[ApiKeyRecord | None, float]] = {}
        self._cache_lock = threading.Lock()
        self.schemes = [scheme for scheme, on in (("Bearer", self.jwt is not None), ("ApiKey", self.keys is not None)) if on]

    def authenticate(self, headers: Mapping[str, str], address: str) -> Principal:
        """The request's principal. ``headers`` have lower-case names. Raises DataApiError 400/401/403."""
        api_key = headers.get("x-api-key")
        authorization = headers.get("authorization")
        if api_key is not None and authorization is not None:
            raise self.refuse(400, "invalid-request", "send one credential: X-API-Key or Authorization, not both", None)
        if authorization is not None:
            scheme, _, value = authorization.strip().partition(" ")
            scheme, value = scheme.lower(), value.strip()
            if scheme == "bearer" and value:
                return self._token(value, address)
            if scheme == "apikey" and value:
                return self._key(value, address)
            raise self.refuse(400, "invalid-request", "the Authorization header must be 'Bearer <token>' or 'ApiKey <key>'", None)
        if api_key is not None:
            return self._key(api_key.strip(), address)
        if self.auth.anon_role is None:
            raise DataApiError(
                "credentials are required: an API key (X-API-Key) or a token (Authorization: Bearer)",
                status=401,
                code="credentials-required",
                headers={"WWW-Authenticate": ", ".join(challenge(s) for s in self.schemes or ["Bearer"])},
            )
        return Principal(role=self.auth.anon_role, address=address)

    def refuse(self, status: int, code: str, message: str, scheme: str | None) -> DataApiError:
        """A refusal with its challenge: for ``scheme`` alone, or for every accepted scheme when None."""
        schemes = [scheme] if scheme else (self.schemes or ["Bearer"])
        value = ", ".join(challenge(s, status, message) for s in schemes)
        return DataApiError(message, status=status, code=code, headers={"WWW-Authenticate": value})

    def _role(self, role: object, scheme: str) -> str:
        if not isinstance(role, str) or role not in self.roles:
            shown = f"'{role[:40]}'" if isinstance(role, str) else "missing"
            raise self.refuse(403, "unknown-role", f"the role {shown} is not one this API serves", scheme)
        return role

    def _token(self, token: str, address: str) -> Principal:
        if self.jwt is None:
            raise self.refuse(401, "invalid-token", "this API does not accept tokens (no api.auth.jwt)", "Bearer")
        try:
            claims = self.jwt.verify(token)
        except TokenRefused as refused:
            raise self.refuse(401, refused.code, refused.message, "Bearer") from None
        role = self._role(role_of(claims, self.jwt.settings.role_claim), "Bearer")
        subject = claims.get("sub")
        return Principal(role=role, subject=None if subject is None else str(subject), claims=claims, address=address)

    def _key(self, key: str, address: str) -> Principal:
        if self.keys is None:
            raise self.refuse(401, "invalid-token", "this API does not accept API keys (api.auth.api_keys is false)", "ApiKey")
        key_id = key_id_of(key)
        record = None if key_id is None else self._record(key_id)
        if record is None or not matches(record, key):
            raise self.refuse(401, "unknown-key", "the API key is not known", "ApiKey")
        state = record.state(time.time())
        if state == "revoked":
            raise self.refuse(401, "revoked-key", "the API key was revoked", "ApiKey")
        if state == "expired":
            raise self.refuse(401, "expired-key", "the API key has expired", "ApiKey")
        role = self._role(record.role, "ApiKey")
        return Principal(
            role=role,
            subject=record.owner,
            claims={"sub": record.owner, "role": role},
            key_id=record.key_id,
            address=address,
        )

    def _record(self, key_id: str) -> ApiKeyRecord | None:
        assert self.keys is not None
        now = time.monotonic()
        if self.key_cache_s > 0:
            with self._cache_lock:
                cached = self._cache.get(key_id)
            if cached is not None and now - cached[1] < self.key_cache_s:
                return cached[0]
        record = self.keys.get(key_id)
        if self.key_cache_s > 0:
            with self._cache_lock:
                if len(self._cache) >= KEY_CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[key_id] = (record, now)
        return record
