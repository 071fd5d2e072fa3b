"""Open a project's lake through its plugin (``lake: {type: local, path: ...}``; local by default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote, urlsplit

from sluice.errors import ConfigError
from sluice.lake.base import Lake
from sluice.lake.versioned import Retention
from sluice.plugins import registry
from sluice.project.model import Project

if TYPE_CHECKING:
    from sluice.lake.s3 import S3Lake


def open_lake(project: Project) -> Lake:
    """The lake ``project`` names (its ``lake`` section). Raises PluginError or MissingExtra."""
    factory = cast(Callable[[Project], Lake], registry().get("lake", project.lake.kind).load())
    return factory(project)


def open_local(project: Project) -> Lake:
    """A :class:`~sluice.lake.local.LocalLake` in the project's lake folder (``Project.resolve_lake_path``)."""
    from sluice.lake.local import LocalLake

    keep = int(getattr(project.lake.options, "keep_versions", 2) or 2)
    return LocalLake(project.resolve_lake_path(), Retention(keep_versions=keep))


def open_s3(project: Project) -> S3Lake:
    """An :class:`~sluice.lake.s3.S3Lake` from ``lake: {type: s3, ...}`` (see ``S3LakeOptions``).

    Credentials come from the named ``connection`` (``s3://KEY:SECRET@`` or ``http://KEY:SECRET@host:port``,
    which also sets the endpoint) or else from the AWS SDK's environment. Raises ConfigError for an
    unknown connection or a bad URL.
    """
    from sluice.lake.plugins import S3LakeOptions
    from sluice.lake.s3 import S3Access, S3Lake, s3_filesystem

    options = project.lake.options
    if not isinstance(options, S3LakeOptions):
        options = S3LakeOptions()
    endpoint, access_key, secret_key = options.endpoint, "", ""
    if options.connection:
        spec = project.connections.get(options.connection)
        if spec is None:
            known = ", ".join(sorted(project.connections)) or "none"
            raise ConfigError(
                f"lake (s3): connection {options.connection!r} is not defined (connections: {known}); add it under 'connections'"
            )
        parts = urlsplit(spec.url)
        access_key, secret_key = unquote(parts.username or ""), unquote(parts.password or "")
        if parts.scheme in ("http", "https") and not endpoint:
            endpoint = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    access = S3Access(endpoint, options.region, access_key, secret_key)
    fs = s3_filesystem(endpoint, region=options.region, access_key=access_key, secret_key=secret_key)
    retention = Retention(
        keep_versions=options.keep_versions, keep_s=options.keep_days * 86400, orphan_grace_s=options.orphan_grace_s
    )
    root = options.url.partition("?")[0]
    return S3Lake(
        fs, options.layers, default_root=root, retention=retention, create_buckets=options.create_buckets, access=access
    )
