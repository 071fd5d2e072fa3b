"""The ``serve:`` section of ``sluice.yaml``: where ``sluice serve`` reads its control token, without the secret in the file.

.. code-block:: yaml

    serve:
      control_token_env: SHOP_CONTROL_TOKEN          # an environment variable holding the token
      # or: control_token_file: /run/secrets/sluice-control   (a file holding it; relative to the project folder)

The token guards ``POST /orchestrate`` and ``POST /runs/{id}/cancel`` (:mod:`sluice.server.control_auth`,
docs/api.md). Without ``serve:`` (or with neither key) it is ``SLUICE_CONTROL_TOKEN``'s value, as before, and the
endpoints are open when that is unset. A source the file names must give a token: a variable that is unset or
empty, or a file that is missing, unreadable or empty, is a :class:`~sluice.errors.ConfigError` naming
``sluice.yaml``'s line (``sluice validate`` reports it; ``sluice serve`` refuses to start rather than serve the
endpoints open). The idea of a ``*_FILE`` secret is Docker's and Kubernetes' secrets mounted as files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from msgspec import Meta

from sluice.errors import ConfigError
from sluice.plugins.base import Settings

if TYPE_CHECKING:
    from sluice.project.model import Origin, Project

CONTROL_TOKEN_ENV = "SLUICE_CONTROL_TOKEN"  # noqa: S105 (a variable name, not a secret)
"""The environment variable holding the control token when ``serve:`` names no other source."""
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ServeSettings(Settings):
    """``serve: {control_token_env: NAME}`` or ``serve: {control_token_file: PATH}``."""

    control_token_env: Annotated[
        Annotated[str, Meta(pattern=ENV_NAME)] | None,
        Meta(
            description="The environment variable holding the control token of POST /orchestrate and "
            "POST /runs/{id}/cancel (default SLUICE_CONTROL_TOKEN; docs/api.md)."
        ),
    ] = None
    control_token_file: Annotated[
        Annotated[str, Meta(min_length=1)] | None,
        Meta(description="A file holding the control token (e.g. a mounted secret); relative to the project folder."),
    ] = None

    def __post_init__(self) -> None:
        if self.control_token_env is not None and self.control_token_file is not None:
            raise ValueError("control_token_file: give control_token_env or control_token_file, not both")


@dataclass(frozen=True, slots=True)
class ServeSpec:
    """The ``serve:`` section: its checked settings and where it is written (for messages)."""

    settings: ServeSettings
    origin: Origin


def control_token(project: Project) -> str | None:
    """The control token ``sluice serve`` requires for ``project`` (surrounding whitespace removed), None when the
    endpoints stay open (no ``serve:`` source and ``SLUICE_CONTROL_TOKEN`` unset or empty).

    Raises ConfigError (file and line of the key) when a source named by ``serve:`` gives no token."""
    spec = project.serve
    settings = spec.settings if spec is not None else ServeSettings()
    if spec is not None and settings.control_token_file is not None:
        where = (spec.origin.file, spec.origin.line_of("control_token_file"))
        path = Path(settings.control_token_file).expanduser()
        path = path if path.is_absolute() else project.root / path
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(f"serve: control_token_file {str(path)!r} cannot be read ({reason}); create it", *where) from None
        if not token:
            raise ConfigError(f"serve: control_token_file {str(path)!r} is empty; write the token into it", *where)
        return token
    if spec is not None and settings.control_token_env is not None:
        name = settings.control_token_env
        token = os.environ.get(name, "").strip()
        if not token:
            raise ConfigError(
                f"serve: control_token_env names {name}, which is not set (or empty) in this environment; set it to the "
                "token (e.g. openssl rand -hex 32)",
                spec.origin.file,
                spec.origin.line_of("control_token_env"),
            )
        return token
    return control_token_from_env()


def control_token_from_env() -> str | None:
    """The control token of the environment (:data:`CONTROL_TOKEN_ENV`), None when unset or empty."""
    return os.environ.get(CONTROL_TOKEN_ENV, "").strip() or None
