"""Connection URLs that name a local database file (``sqlite:///``, ``duckdb:///``).

Three slashes are relative to the project folder, four absolute, like SQLAlchemy's URLs:

>>> database_file("sqlite:///data/app.db", Path("/p")), database_file("duckdb:////tmp/dw.duckdb", Path("/p"))
(PosixPath('/p/data/app.db'), PosixPath('/tmp/dw.duckdb'))
>>> database_file("duckdb:///:memory:", None) is None
True
"""

from __future__ import annotations

from pathlib import Path


def database_file(url: str, root: Path | None) -> Path | None:
    """The file a URL names (query string ignored), relative paths under ``root``; None for in-memory."""
    rest = url.split(":", 1)[1].split("?", 1)[0]
    if rest.startswith("//"):
        rest = rest[2:]
        if rest.startswith("/"):
            rest = rest[1:]
    if rest in ("", ":memory:"):
        return None
    path = Path(rest).expanduser()
    return path if path.is_absolute() else (root or Path.cwd()) / path
