"""JSON Web Tokens (RFC 7519) checked with PyJWT: HS256/384/512 with a secret, RS*/ES256 with a PEM public key
or a local JWKS file (RFC 7517) whose ``kid`` picks the key.

The header's ``alg`` must be one of ``api.auth.jwt.algorithms``; ``none`` is never accepted, and the key is
chosen by the algorithm's family (HMAC takes only the secret, RSA/EC only public keys), so a public key can
never be used as an HMAC secret (the "algorithm confusion" attack of RFC 8725 §2.1). ``exp``, ``nbf`` and
``iat`` are checked with ``leeway_s`` seconds of clock skew; ``aud`` and ``iss`` when configured (then a token
without them is refused; without ``audience`` a token's ``aud`` is not looked at). ``exp`` is not required.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sluice.api.settings import JwtSettings
from sluice.errors import ConfigError

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


@dataclass(frozen=True, slots=True)
class TokenRefused(Exception):
    """Why a token was refused: ``code`` (``invalid-token``, ``expired-token``, ``token-not-yet-valid``,
    ``wrong-audience``, ``wrong-issuer``) and a message safe to show the client."""

    code: str
    message: str


class JwtVerifier:
    """Checks tokens against one ``api.auth.jwt`` section.

    ``project_dir`` resolves relative ``public_key_file`` and ``jwks_file``. Raises ConfigError (one line
    naming the setting and the file) when a key the algorithms need is missing or unreadable.
    """

    def __init__(self, settings: JwtSettings, project_dir: Path) -> None:
        self.settings = settings
        self.algorithms = list(settings.algorithms)
        self.secret = settings.secret
        self.public_key: Any = None
        self.jwks: dict[str | None, tuple[str | None, jwt.PyJWK]] = {}
        hmac = [alg for alg in self.algorithms if alg in HMAC_ALGORITHMS]
        public = [alg for alg in self.algorithms if alg not in HMAC_ALGORITHMS]
        if hmac and not self.secret:
            raise ConfigError(f"api.auth.jwt: {', '.join(hmac)} needs `secret` (use ${{ENV_VAR}})")
        if hmac and self.secret:
            # RFC 7518 §3.2: a key at least as long as the hash (32 bytes for HS256, 64 for HS512).
            needed = max(int(alg[2:]) // 8 for alg in hmac)
            if len(self.secret.encode("utf-8")) < needed:
                raise ConfigError(
                    f"api.auth.jwt.secret: {', '.join(hmac)} needs a secret of at least {needed} bytes (RFC 7518 §3.2); "
                    f"this one has {len(self.secret.encode('utf-8'))}"
                )
        if public and not (settings.public_key_file or settings.jwks_file):
            raise ConfigError(f"api.auth.jwt: {', '.join(public)} needs `public_key_file` or `jwks_file`")
        if public and settings.public_key_file:
            self.public_key = _read_pem(project_dir / settings.public_key_file)
        if public and settings.jwks_file:
            self.jwks = _read_jwks(project_dir / settings.jwks_file)

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims. Raises :class:`TokenRefused`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("invalid-token", "the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise TokenRefused("invalid-token", "unsigned tokens (alg none) are refused")
        if alg not in self.algorithms:
            raise TokenRefused("invalid-token", f"the algorithm {alg[:20]} is not accepted here")
        key = self._key(alg, header.get("kid"))
        options: dict[str, Any] = {"verify_aud": self.settings.audience is not None}
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired-token", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("token-not-yet-valid", "the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("wrong-audience", "the token is not meant for this API (aud)") from None
        except jwt.InvalidIssuerError:
            raise TokenRefused("wrong-issuer", "the token comes from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            if exc.claim == "aud":
                raise TokenRefused("wrong-audience", "the token has no audience (aud)") from None
            if exc.claim == "iss":
                raise TokenRefused("wrong-issuer", "the token has no issuer (iss)") from None
            raise TokenRefused("invalid-token", f"the token lacks the claim {exc.claim}") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("invalid-token", "the token's signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            # Malformed payload, a key of the wrong type for the algorithm...
            raise TokenRefused("invalid-token", "the token cannot be verified") from None
        return claims

    def _key(self, alg: str, kid: object) -> Any:
        if alg in HMAC_ALGORITHMS:
            return self.secret
        if self.jwks:
            found = self.jwks.get(kid) if isinstance(kid, str) else None
            if found is None and kid is None and len(self.jwks) == 1:
                found = next(iter(self.jwks.values()))
            if found is not None:
                declared, jwk = found
                if declared is not None and declared != alg:
                    raise TokenRefused("invalid-token", "the token's algorithm is not its key's")
                return jwk.key
            if self.public_key is None:
                raise TokenRefused("invalid-token", "no key of the JWKS matches the token's kid")
        return self.public_key


def role_of(claims: Mapping[str, Any], claim: str) -> object:
    """The claim named ``claim``: the key as written first (``https://example.com/role``), else a dotted
    path through nested objects (``app.role`` reads ``claims["app"]["role"]``). None when absent."""
    if claim in claims:
        return claims[claim]
    value: object = claims
    for part in claim.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _read_pem(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"api.auth.jwt.public_key_file: cannot read {path}: {exc.strerror}") from None
    try:
        return load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"api.auth.jwt.public_key_file: {path} is not a PEM public key ({exc})") from None


def read_json(path: Path, setting: str) -> Any:
    """The JSON content of the file a ``setting`` names. Raises ConfigError naming the setting and the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{setting}: {path} is not JSON ({exc})") from None


def _read_jwks(path: Path) -> dict[str | None, tuple[str | None, jwt.PyJWK]]:
    data = read_json(path, "api.auth.jwt.jwks_file")
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ConfigError(f"api.auth.jwt.jwks_file: {path} is not a JWKS (an object with a non-empty `keys` list)")
    keys: dict[str | None, tuple[str | None, jwt.PyJWK]] = {}
    for number, entry in enumerate(data["keys"], 1):
        if not isinstance(entry, dict):
            raise ConfigError(f"api.auth.jwt.jwks_file: {path}: key {number} is not an object")
        if entry.get("use", "sig") != "sig":
            continue
        try:
            declared = entry.get("alg")
            keys[entry.get("kid")] = (declared if isinstance(declared, str) else None, jwt.PyJWK(entry))
        except jwt.PyJWTError as exc:
            raise ConfigError(f"api.auth.jwt.jwks_file: {path}: key {number} cannot be used ({exc})") from None
    if not keys:
        raise ConfigError(f"api.auth.jwt.jwks_file: {path} has no signing key")
    return keys
