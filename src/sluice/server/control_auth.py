"""Authentication of the control API's mutating endpoints (``POST /orchestrate``, ``POST /runs/{id}/cancel``).

When a control token is set (``SLUICE_CONTROL_TOKEN`` in ``sluice serve``'s environment, or where the project's
``serve:`` section says, :mod:`sluice.server.serve_settings`; or
:attr:`~sluice.server.services.ServerSettings.control_token`), those endpoints answer 401 (with
``WWW-Authenticate: Bearer``) unless the request carries ``Authorization: Bearer <token>``; read-only endpoints
(``GET``: runs, objects, events, syncs, schedules, health, metrics) and the web UI's pages stay open (the UI
asks for the token the first time an action is refused). The token is compared with
:func:`hmac.compare_digest` (constant time), as the data API compares API keys' digests
(:mod:`sluice.api.security.keys`): a static secret shared by an operator and the server needs no JWT.
Without a token the endpoints are open as before, and ``sluice serve`` warns when it listens beyond loopback.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sluice.server.errors import ApiError
from sluice.server.serve_settings import CONTROL_TOKEN_ENV

_BEARER = HTTPBearer(auto_error=False, scheme_name="controlToken", description=f"The control token ({CONTROL_TOKEN_ENV}).")


class Unauthorized(ApiError):
    """A mutating control request without the control token (401)."""

    status = 401
    headers: Mapping[str, str] | None = MappingProxyType({"WWW-Authenticate": 'Bearer realm="sluice-control"'})


def token_required(token: str | None) -> Callable[..., None]:
    """A FastAPI dependency refusing (:class:`Unauthorized`) a request whose bearer token is not ``token``;
    it lets every request through when ``token`` is None."""

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if token is None:
            return
        if credentials is None:
            raise Unauthorized(f"this endpoint needs the control token: send 'Authorization: Bearer <{CONTROL_TOKEN_ENV}>'")
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            raise Unauthorized(
                f"the control token is wrong; send the server's ({CONTROL_TOKEN_ENV}, or what its sluice.yaml's serve: names)"
            )

    return check
