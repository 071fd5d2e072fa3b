"""Connection URLs, parsed in one place: their scheme, the database file they name, the URL libpq wants.

File databases (``sqlite:///``, ``duckdb:///``): three slashes are relative to the project folder, four
absolute, like SQLAlchemy's URLs; the query string is not part of the path:

>>> database_file("sqlite:///data/app.db", Path("/p")), database_file("duckdb:////tmp/dw.duckdb", Path("/p"))
(PosixPath('/p/data/app.db'), PosixPath('/tmp/dw.duckdb'))
>>> database_file("duckdb:///:memory:", None) is None
True
>>> sqlite_path("sqlite:///bus.db?retention_days=3", Path("/p"))
PosixPath('/p/bus.db')

Schemes, as written and as Sluice groups them:

>>> url_scheme("PostgreSQL+psycopg://u@h/db"), connection_scheme("postgresql+psycopg://u@h/db")
('postgresql+psycopg', 'postgresql')
>>> connection_scheme("postgres://u@h/db"), connection_scheme("mariadb://u@h/db")
('postgresql', 'mysql')
>>> libpq_url("postgres://u@h/db?sslmode=require")
'postgresql://u@h/db?sslmode=require'
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from sluice.errors import ConfigError

FILE_SCHEMES = ("sqlite", "duckdb")
"""Schemes whose URL names a local database file."""

_SCHEME_ALIASES = {"postgres": "postgresql", "mariadb": "mysql"}


def url_scheme(url: str) -> str:
    """The scheme of ``url`` as written, lower-cased (``"postgresql+psycopg"``, ``"kafka"``): all before the
    first ``:``, or the whole of ``url`` when it has none (so an error can quote it)."""
    return url.split(":", 1)[0].lower()


def connection_scheme(url: str) -> str:
    """The normalised scheme of a connection URL: ``postgresql``, ``mysql``, ``sqlite``, ``duckdb``...

    A ``+driver`` suffix is dropped, ``postgres`` counts as ``postgresql`` and ``mariadb`` as ``mysql``.
    """
    base = url_scheme(url).split("+", 1)[0]
    return _SCHEME_ALIASES.get(base, base)


def database_file(url: str, root: Path | None) -> Path | None:
    """The file a ``scheme:`` URL names (query string ignored), relative paths under ``root`` (the current
    folder when None); None for an in-memory database (``sqlite://``, ``sqlite:///:memory:``)."""
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.startswith("/"):
            rest = rest[1:]
    if rest in ("", ":memory:"):
        return None
    path = Path(rest).expanduser()
    return path if path.is_absolute() else (root or Path.cwd()) / path


def sqlite_path(url: str, root: Path | None = None) -> Path:
    """The database file of a ``sqlite:///`` or ``duckdb:///`` URL (the scheme in any case), relative paths
    under ``root`` (the current folder when None).

    Raises ConfigError for another scheme, an in-memory database (``sqlite://``, ``sqlite:///:memory:``:
    nothing to share or read) or fewer than three slashes (``sqlite:data.db``, ``sqlite://data.db``).
    """
    scheme = url_scheme(url)
    shown = scheme if scheme in FILE_SCHEMES else "sqlite"
    forms = f"use {shown}:///relative/file.db or {shown}:////absolute/file.db"
    if scheme not in FILE_SCHEMES or not url[len(scheme) :].startswith(":"):
        raise ConfigError(f"not a database file URL: {url!r}; {forms}")
    path = database_file(url, root)
    if path is None:
        raise ConfigError(f"{url!r} is an in-memory database; name a database file ({forms})")
    if not url[len(scheme) :].startswith(":///"):
        raise ConfigError(f"{url!r} does not say where the file is; {forms}")
    return path


def libpq_url(url: str) -> str:
    """A PostgreSQL URL as libpq takes it: ``postgres://``, ``postgresql+driver://`` (any case) become
    ``postgresql://``; the rest (user, password, host, database, query string) is kept as written.

    Raises ConfigError (which does not quote ``url``: it may hold a password) when ``url`` is not a
    ``postgresql://`` or ``postgres://`` URL.
    """
    _, separator, rest = url.partition("://")
    if not separator or connection_scheme(url) != "postgresql":
        what = f"scheme {url_scheme(url)!r}" if ":" in url else "no scheme"
        raise ConfigError(f"a PostgreSQL URL looks like postgresql://user@host:port/database; this one ({what}) does not")
    return f"postgresql://{rest}"


def kafka_servers(url: str) -> str:
    """The ``bootstrap.servers`` of a ``kafka://host:port[,host:port...][?query]`` URL (the port defaults to 9092;
    the query string is the caller's).

    >>> kafka_servers("kafka://127.0.0.1:29092,broker2?namespace=a")
    '127.0.0.1:29092,broker2:9092'

    Raises ConfigError for another scheme, a path, a fragment, a user name, or a server that is not host:port.
    """
    parts = urlsplit(url)
    if connection_scheme(url) != "kafka" or parts.path not in ("", "/") or parts.fragment or "@" in parts.netloc:
        raise ConfigError(f"a Kafka URL is kafka://host:port[,host:port...][?partitions=N], got {url!r}")
    servers = []
    for server in parts.netloc.split(","):
        host, _, port = server.strip().rpartition(":") if ":" in server else (server.strip(), "", "9092")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"{server.strip() or 'an empty server'!r} in {url!r} is not host:port (e.g. kafka://127.0.0.1:29092)"
            )
        servers.append(f"{host}:{port}")
    return ",".join(servers)
