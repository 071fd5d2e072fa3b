"""Who a request is: the result of authentication, the input of permissions and rate limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated (or anonymous) caller.

    - ``role``: the role whose permissions apply (``api.roles``; ``api.admin_role`` has them all).
    - ``subject``: the JWT ``sub`` or the API key's owner; ``None`` for the anonymous role.
    - ``claims``: the JWT claims (an API key gives ``{"sub": owner, "role": role}``); row filters read them
      through ``{claim: NAME}``.
    - ``key_id``: the API key's public id when an API key authenticated the request.
    - ``address``: the client's IP address (rate limits per address).
    """

    role: str
    subject: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    key_id: str | None = None
    address: str = ""

    @property
    def anonymous(self) -> bool:
        """True when no credentials were given."""
        return self.subject is None and self.key_id is None
