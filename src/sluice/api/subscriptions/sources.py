"""Where the change events of a served table come from: the change topics of the project's syncs.

A served table (connection ``C``, ``namespace.name``) is covered by a sync when

- ``C`` is a side the sync **captures** and the sync's ``tables:`` select the table: its changes are on
  ``sluice.cdc.<sync>.<C>.<namespace.name>``, published after they committed in ``C``
  (:class:`Feed` with ``applied_by=None``);
- ``C`` is a side the sync **applies** to and the table is the target of a captured table (``rename:`` and
  the target namespace followed backwards): its changes are on the *source* table's topic, published before
  apply writes them into ``C``, so the feed names the apply consumer group (``applied_by``) whose committed
  offset tells when ``C`` holds them (apply commits its bus offsets after its target transaction).

Both ways (``direction: both``) a table is covered by both feeds. A connection is the same as a sync's side
when the names are equal or their URLs name the same database (:func:`database_identity`: a second
connection with another ``search_path`` is the same database). The source namespace of a target table is found from the
configuration (the MySQL URL's database, ``public`` for PostgreSQL, the namespaces written in ``tables:``
and ``rename:``) and from the sync's status file when it has run (``.sluice/syncs/<sync>.json`` lists each
table's source and target).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sluice.cdc.config import SyncSettings
from sluice.cdc.events import TableSchema, apply_group, change_topic
from sluice.cdc.status import read_status
from sluice.cdc.tables import default_target_namespace, selected, table_ref
from sluice.urls import connection_scheme

GLOB = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Feed:
    """One topic whose messages mean "this served table may have changed".

    ``applied_by``: None when a message is published after the change committed in the served database;
    else the consumer group whose committed offset passing a message means the served database holds it."""

    sync: str
    topic: str
    applied_by: str | None = None


@dataclass(frozen=True, slots=True)
class SyncSource:
    """What :func:`feeds_for` needs of one sync: its settings and its connections' URLs."""

    settings: SyncSettings
    urls: Mapping[str, str]


def database_identity(url: str) -> tuple[str, str, int | None, str]:
    """What makes two connection URLs the same database: the scheme's family, host, port and database (a SQLite
    file's path). The user, password and query (``?options=-csearch_path=...``, ``sslmode``...) are left out:
    a second connection to the same database with another search path sees the same tables.
    """
    scheme = connection_scheme(url)
    family = {"postgres": "postgresql", "mariadb": "mysql"}.get(scheme, scheme)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return family, (parts.hostname or "").lower(), port, unquote(parts.path.rstrip("/"))


def _same(connection: str, url: str, side: str, urls: Mapping[str, str]) -> bool:
    other = urls.get(side, "")
    return connection == side or (bool(url) and bool(other) and database_identity(other) == database_identity(url))


def _source_namespaces(settings: SyncSettings, url: str) -> list[str]:
    """Namespaces the source's tables may be in: the MySQL URL's database (or ``public``), and those written
    before a dot in ``tables:`` and ``rename:`` (without glob characters)."""
    found: list[str] = []
    if connection_scheme(url) in ("mysql", "mariadb"):
        database = unquote(urlsplit(url).path.lstrip("/"))
        if database:
            found.append(database)
    else:
        found.append("public")
    for entry in [*settings.tables, *settings.rename]:
        namespace, dot, _ = entry.partition(".")
        if dot and not GLOB & set(namespace):
            found.append(namespace)
    return list(dict.fromkeys(found))


def _captures(settings: SyncSettings, url: str, namespace: str, name: str) -> bool:
    """The sync's capture of ``url`` publishes ``namespace.name`` (a MySQL URL with a database lists only it)."""
    if connection_scheme(url) in ("mysql", "mariadb"):
        database = unquote(urlsplit(url).path.lstrip("/"))
        if database and database != namespace:
            return False
    return selected(settings, TableSchema(namespace, name, [], []))


def _target_namespace(settings: SyncSettings, url: str) -> str:
    return settings.target_namespace or default_target_namespace(url)


def _sources_of(settings: SyncSettings, urls: Mapping[str, str], namespace: str, name: str) -> list[str]:
    """The captured source tables (``namespace.name``) whose target is ``namespace.name`` of the target side."""
    if _target_namespace(settings, urls.get(settings.target, "")) != namespace:
        return []
    source_url = urls.get(settings.source, "")
    names = [name] + [key.rpartition(".")[2] for key, renamed in settings.rename.items() if renamed == name]
    found: list[str] = []
    for source_namespace in _source_namespaces(settings, source_url):
        for source_name in dict.fromkeys(names):
            table = TableSchema(source_namespace, source_name, [], [])
            if _captures(settings, source_url, source_namespace, source_name) and (
                table_ref(settings, table, namespace).target_name == name
            ):
                found.append(table.qualified)
    return found


def _from_status(work_dir: Path | None, settings: SyncSettings, qualified: str) -> list[str]:
    """Source tables the sync's status file pairs with the target ``qualified`` (forward direction)."""
    status = read_status(work_dir, settings.name) if work_dir is not None else None
    if status is None:
        return []
    forward = f"{settings.source} -> {settings.target}"
    return [t.source_table for t in status.tables if t.direction == forward and t.target_table == qualified]


def feeds_for(
    syncs: Iterable[SyncSource], connection: str, url: str, namespace: str, name: str, work_dir: Path | None = None
) -> list[Feed]:
    """The feeds of the table ``namespace.name`` of the served ``connection`` (its URL ``url``), in sync order."""
    feeds: list[Feed] = []
    qualified = f"{namespace}.{name}"
    for sync in syncs:
        settings, urls = sync.settings, sync.urls
        both = settings.direction == "both"
        on_source = _same(connection, url, settings.source, urls)
        on_target = _same(connection, url, settings.target, urls)
        if on_source and _captures(settings, urls.get(settings.source, ""), namespace, name):
            feeds.append(Feed(settings.name, change_topic(settings.name, settings.source, qualified)))
            if both:  # the other side's own changes, applied here
                target_namespace = _target_namespace(settings, urls.get(settings.target, ""))
                target = table_ref(settings, TableSchema(namespace, name, [], []), target_namespace)
                group = apply_group(settings.name, settings.target)
                feeds.append(Feed(settings.name, change_topic(settings.name, settings.target, target.target_qualified), group))
        if on_target:
            sources = _sources_of(settings, urls, namespace, name) or _from_status(work_dir, settings, qualified)
            group = apply_group(settings.name, settings.source)
            for source in dict.fromkeys(sources):
                feeds.append(Feed(settings.name, change_topic(settings.name, settings.source, source), group))
            if both and sources:  # captured here too: the changes made directly in this database
                feeds.append(Feed(settings.name, change_topic(settings.name, settings.target, qualified)))
    return list(dict.fromkeys(feeds))


def missing_feed_message(table: str, connection: str, sync_names: Sequence[str]) -> str:
    """The refusal of a subscription reading ``table`` of ``connection`` that no sync covers (one line)."""
    known = ", ".join(sync_names) if sync_names else "none"
    return (
        f"no change events for {table} of '{connection}': live subscriptions are pushed from the change topics of a "
        f"sync that captures or applies to '{connection}' with {table} in its tables (project syncs: {known}); "
        "add one under syncs: (docs/api/subscriptions.md)"
    )
