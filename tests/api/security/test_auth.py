"""Authentication through the gate: each refusal's status, code and WWW-Authenticate challenge (RFC 6750)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from sluice.api.gate import DataApiError
from sluice.api.security import build_gate
from sluice.api.security.gate import SecurityGate
from sluice.api.security.keys import open_key_store
from sluice.errors import ConfigError

from .conftest import RsaKey, bearer, token
from .support import SECRET, api_settings


def state_url(project_dir: Path) -> str:
    return f"sqlite:///{project_dir / '.sluice' / 'state.db'}"


def gate(project_dir: Path, **sections: Any) -> SecurityGate:
    built = build_gate(api_settings(**sections), project_dir, state_url(project_dir))
    assert isinstance(built, SecurityGate)
    built.authenticator.key_cache_s = 0  # see revocations at once
    return built


def refusal(gate: SecurityGate, headers: dict[str, str]) -> DataApiError:
    with pytest.raises(DataApiError) as caught:
        gate.admit(headers, "10.0.0.1", "graphql")
    return caught.value


def test_a_valid_hs256_token_gives_its_role_subject_and_claims(project_dir: Path) -> None:
    principal = gate(project_dir).admit(bearer(token({"sub": "u1", "role": "editor", "team": 7})), "10.0.0.1", "graphql")
    assert (principal.role, principal.subject, principal.claims["team"], principal.key_id) == ("editor", "u1", 7, None)
    assert principal.address == "10.0.0.1" and not principal.anonymous


def test_bad_signature_is_invalid_token(project_dir: Path) -> None:
    error = refusal(gate(project_dir), bearer(token({"sub": "u1", "role": "editor"}, key="another-secret-of-32-bytes-or-more!!")))
    assert (error.status, error.code) == (401, "invalid-token")
    assert error.headers["WWW-Authenticate"].startswith('Bearer realm="sluice", error="invalid_token", error_description="')


def test_expired_token(project_dir: Path) -> None:
    error = refusal(gate(project_dir), bearer(token({"sub": "u1", "role": "editor", "exp": int(time.time()) - 3600})))
    assert (error.status, error.code) == (401, "expired-token")
    assert 'error="invalid_token"' in error.headers["WWW-Authenticate"]
    assert "expired" in error.headers["WWW-Authenticate"]


def test_leeway_accepts_a_token_expired_within_the_clock_skew(project_dir: Path) -> None:
    expired_10s_ago = bearer(token({"sub": "u1", "role": "editor", "exp": int(time.time()) - 10}))
    lenient = gate(project_dir, auth={"jwt": {"algorithms": ["HS256"], "secret": SECRET, "audience": "sluice", "leeway_s": 60}})
    assert lenient.admit(expired_10s_ago, "10.0.0.1", "rest").role == "editor"
    strict = gate(project_dir, auth={"jwt": {"algorithms": ["HS256"], "secret": SECRET, "audience": "sluice", "leeway_s": 0}})
    assert refusal(strict, expired_10s_ago).code == "expired-token"


def test_not_before_in_the_future(project_dir: Path) -> None:
    error = refusal(gate(project_dir), bearer(token({"sub": "u1", "role": "editor", "nbf": int(time.time()) + 3600})))
    assert (error.status, error.code) == (401, "token-not-yet-valid")


def test_wrong_or_missing_audience(project_dir: Path) -> None:
    assert refusal(gate(project_dir), bearer(token({"sub": "u1", "role": "editor", "aud": "billing"}))).code == "wrong-audience"
    no_aud = jwt.encode({"sub": "u1", "role": "editor"}, SECRET, algorithm="HS256")
    assert refusal(gate(project_dir), bearer(no_aud)).code == "wrong-audience"


def test_wrong_issuer(project_dir: Path) -> None:
    checked = gate(project_dir, auth={"jwt": {"algorithms": ["HS256"], "secret": SECRET, "audience": "sluice", "issuer": "idp"}})
    assert checked.admit(bearer(token({"role": "editor", "iss": "idp"})), "a", "rest").role == "editor"
    assert refusal(checked, bearer(token({"role": "editor", "iss": "evil"}))).code == "wrong-issuer"


def test_alg_none_is_refused(project_dir: Path) -> None:
    unsigned = jwt.encode({"sub": "u1", "role": "admin", "aud": "sluice"}, None, algorithm="none")
    error = refusal(gate(project_dir), bearer(unsigned))
    assert (error.status, error.code) == (401, "invalid-token")
    assert "alg none" in str(error)


def test_an_algorithm_not_listed_is_refused(project_dir: Path) -> None:
    hs512 = token({"sub": "u1", "role": "editor"}, key=SECRET * 2, algorithm="HS512")
    assert refusal(gate(project_dir), bearer(hs512)).code == "invalid-token"


def test_a_public_key_is_never_used_as_an_hmac_secret(project_dir: Path, rsa_key: RsaKey) -> None:
    """Algorithm confusion (RFC 8725 §2.1): HS256 signed with the RS256 public key's PEM text."""
    (project_dir / "public.pem").write_bytes(rsa_key.public_pem)
    both = gate(
        project_dir,
        auth={"jwt": {"algorithms": ["RS256", "HS256"], "secret": SECRET, "public_key_file": "public.pem", "audience": "sluice"}},
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"role": "admin", "aud": "sluice", "exp": int(time.time()) + 60}).encode())
    signature = b64(hmac.new(rsa_key.public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert refusal(both, bearer(f"{header}.{payload}.{signature}")).code == "invalid-token"


def test_garbage_token(project_dir: Path) -> None:
    assert refusal(gate(project_dir), bearer("not.a.jwt")).code == "invalid-token"


def test_unknown_role_is_403_insufficient_scope(project_dir: Path) -> None:
    error = refusal(gate(project_dir), bearer(token({"sub": "u1", "role": "superuser"})))
    assert (error.status, error.code) == (403, "unknown-role")
    assert 'error="insufficient_scope"' in error.headers["WWW-Authenticate"]
    assert refusal(gate(project_dir), bearer(token({"sub": "u1"}))).code == "unknown-role"  # no role claim


def test_admin_role_and_a_nested_role_claim(project_dir: Path) -> None:
    nested = gate(
        project_dir,
        auth={
            "jwt": {
                "algorithms": ["HS256"],
                "secret": SECRET,
                "audience": "sluice",
                "role_claim": "https://sluice.dev/claims.role",
            }
        },
    )
    as_key = bearer(token({"https://sluice.dev/claims.role": "admin"}))
    assert nested.admit(as_key, "a", "rest").role == "admin"
    dotted = gate(
        project_dir, auth={"jwt": {"algorithms": ["HS256"], "secret": SECRET, "audience": "sluice", "role_claim": "app.role"}}
    )
    assert dotted.admit(bearer(token({"app": {"role": "viewer"}})), "a", "rest").role == "viewer"


def test_rs256_with_a_pem_public_key(project_dir: Path, rsa_key: RsaKey, other_rsa_key: RsaKey) -> None:
    (project_dir / "keys").mkdir()
    (project_dir / "keys" / "public.pem").write_bytes(rsa_key.public_pem)
    rs = gate(project_dir, auth={"jwt": {"algorithms": ["RS256"], "public_key_file": "keys/public.pem", "audience": "sluice"}})
    assert rs.admit(bearer(rsa_key.sign({"sub": "u2", "role": "viewer"})), "a", "rest").subject == "u2"
    assert refusal(rs, bearer(other_rsa_key.sign({"sub": "u2", "role": "viewer"}))).code == "invalid-token"
    assert refusal(rs, bearer(token({"sub": "u2", "role": "viewer"}))).code == "invalid-token"  # HS256 not listed


def test_rs256_with_a_jwks_file_picks_the_key_by_kid(project_dir: Path, rsa_key: RsaKey, other_rsa_key: RsaKey) -> None:
    (project_dir / "jwks.json").write_text(json.dumps({"keys": [rsa_key.jwk, other_rsa_key.jwk]}))
    rs = gate(project_dir, auth={"jwt": {"algorithms": ["RS256"], "jwks_file": "jwks.json", "audience": "sluice"}})
    assert rs.admit(bearer(rsa_key.sign({"sub": "a", "role": "viewer"})), "x", "rest").subject == "a"
    assert rs.admit(bearer(other_rsa_key.sign({"sub": "b", "role": "viewer"})), "x", "rest").subject == "b"
    # Signed by key-2 but claiming key-1's kid: verified against key-1, refused.
    assert refusal(rs, bearer(other_rsa_key.sign({"sub": "b", "role": "viewer"}, kid="key-1"))).code == "invalid-token"
    assert refusal(rs, bearer(rsa_key.sign({"sub": "a", "role": "viewer"}, kid="key-9"))).code == "invalid-token"


@pytest.mark.parametrize(
    ("jwt_section", "message"),
    [
        ({"algorithms": ["HS256"]}, "needs `secret`"),
        ({"algorithms": ["HS256"], "secret": "short"}, "at least 32 bytes"),
        ({"algorithms": ["HS512"], "secret": SECRET}, "at least 64 bytes"),
        ({"algorithms": ["RS256"]}, "needs `public_key_file` or `jwks_file`"),
        ({"algorithms": ["RS256"], "public_key_file": "missing.pem"}, "cannot read"),
        ({"algorithms": ["RS256"], "jwks_file": "bad.json"}, "not a JWKS"),
    ],
)
def test_unusable_jwt_settings_are_one_line_config_errors(project_dir: Path, jwt_section: dict[str, Any], message: str) -> None:
    (project_dir / "bad.json").write_text('{"keys": []}')
    with pytest.raises(ConfigError, match=message) as caught:
        gate(project_dir, auth={"jwt": jwt_section})
    assert "\n" not in str(caught.value)


def test_no_credentials_gives_the_anon_role(project_dir: Path) -> None:
    principal = gate(project_dir).admit({}, "10.0.0.9", "rest")
    assert (principal.role, principal.anonymous, principal.address) == ("anon", True, "10.0.0.9")


def test_anon_disabled_requires_credentials_with_a_challenge_without_error(project_dir: Path) -> None:
    closed = gate(project_dir, auth={"anon_role": None, "jwt": {"algorithms": ["HS256"], "secret": SECRET}})
    error = refusal(closed, {})
    assert (error.status, error.code) == (401, "credentials-required")
    assert error.headers["WWW-Authenticate"] == 'Bearer realm="sluice", ApiKey realm="sluice"'


def test_two_credentials_or_an_unknown_scheme_are_invalid_requests(project_dir: Path) -> None:
    both = {"x-api-key": "slk_x", "authorization": "Bearer abc"}
    error = refusal(gate(project_dir), both)
    assert (error.status, error.code) == (400, "invalid-request")
    assert 'error="invalid_request"' in error.headers["WWW-Authenticate"]
    assert refusal(gate(project_dir), {"authorization": "Basic dXNlcjpwdw=="}).code == "invalid-request"


def test_api_keys_unknown_valid_revoked_and_expired(project_dir: Path) -> None:
    the_gate = gate(project_dir)
    store = open_key_store(state_url(project_dir))
    try:
        record, key = store.create("editor", "alice")
        principal = the_gate.admit({"x-api-key": key}, "10.0.0.1", "rest")
        assert (principal.role, principal.subject, principal.key_id) == ("editor", "alice", record.key_id)
        assert principal.claims == {"sub": "alice", "role": "editor"}
        assert the_gate.admit({"authorization": f"ApiKey {key}"}, "10.0.0.1", "rest").key_id == record.key_id

        wrong_secret = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        for presented in (wrong_secret, "slk_0123456789abcdef_nothing", "not-a-key"):
            error = refusal(the_gate, {"x-api-key": presented})
            assert (error.status, error.code) == (401, "unknown-key")
            assert error.headers["WWW-Authenticate"].startswith('ApiKey realm="sluice", error="invalid_token"')

        store.revoke(record.key_id)
        assert refusal(the_gate, {"x-api-key": key}).code == "revoked-key"

        _old, expired = store.create("editor", "bob", expires_at=time.time() - 1)
        assert refusal(the_gate, {"x-api-key": expired}).code == "expired-key"
        _gone, orphan = store.create("intern", "carol")  # a role the api: section does not define
        assert refusal(the_gate, {"x-api-key": orphan}).code == "unknown-role"
    finally:
        store.close()
        the_gate.close()


def test_api_keys_disabled(project_dir: Path) -> None:
    no_keys = gate(project_dir, auth={"api_keys": False, "jwt": {"algorithms": ["HS256"], "secret": SECRET}})
    assert no_keys.keys is None
    assert refusal(no_keys, {"x-api-key": "slk_0123456789abcdef_x"}).code == "invalid-token"


def test_auth_failures_are_counted_by_code(project_dir: Path) -> None:
    from prometheus_client import REGISTRY

    def count() -> float:
        return (
            REGISTRY.get_sample_value("sluice_api_auth_failures_total", {"operation": "subscription", "code": "expired-token"})
            or 0.0
        )

    before = count()
    refusal_gate = gate(project_dir)
    with pytest.raises(DataApiError):
        refusal_gate.admit(bearer(token({"role": "editor", "exp": int(time.time()) - 3600})), "a", "subscription")
    assert count() == before + 1
