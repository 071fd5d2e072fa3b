"""Turn an ``Objets.json`` record's fields into work: a source, a lake layer, date partitions, a write mode.

The mapping applies when a ``sluice.yaml`` beside the file names it (``objets: {file: Objets.json}``, see
docs/objets-json.md); an ``Objets.json`` read on its own keeps every object a no-op. Field values are
compared without case, accents or surrounding spaces.

=======================  ==================================================================================
Field                    Becomes
=======================  ==================================================================================
``URL`` http(s)          ``source: {type: rest}``, when ``Format`` is ``json`` or absent: the URL's origin as
                         ``base_url`` (or a connection's URL), its path as ``path``, its query as ``params``,
                         ``records`` from ``objets.records`` ("" = the body is the array)
``URL`` ``file://`` or   the file source of ``Format`` (``csv``, ``json``, ``jsonl``, ``parquet``), the path
a path                   relative to the project folder
``TypeAuthentification`` ``basic`` / ``http basic``, ``bearer`` / ``token``, ``api key``; ``none`` or absent:
                         no auth. Secrets from the connection ``objets_<id>``, else the connection named after
                         the URL's host (dots and dashes as ``_``), else ``SLUICE_OBJET_<ID>_USER`` /
                         ``_PASSWORD``, ``_TOKEN``, ``_API_KEY``
``AppendMode``           ``false``, ``full``, ``replace``: mode ``replace``; ``true``, ``append``,
                         ``incremental``, ``delta``: ``append``; ``merge``, ``upsert``: ``merge``. It sets the
                         mode of a destination the object gets in ``sluice.yaml`` (unless that gives one); the
                         lake output itself is replaced at each load (the lake keeps versions, not rows)
``DataLakeRootFolder``   the lake layer: ``/lake/raw/crm`` -> layer ``raw`` (a leading ``lake`` or
                         ``datalake`` is dropped; a zone word such as ``standardized`` means its stage's
                         layer). The rest of the path (``crm``) is kept as metadata only: outputs are
                         ``<layer>/<name>``
``NiveauHierarchique``   ``year``, ``month``, ``day``, ``hour`` (or ``annee``, ``mois``, ``jour``, ``heure``):
                         ``partition_by`` on that part and the coarser ones, integer columns from
                         ``objets.date_column`` or the load time (UTC)
=======================  ==================================================================================

A field that cannot be mapped (an unknown ``Format`` or ``TypeAuthentification``, an ``sftp://`` URL, missing
credentials) leaves the object a no-op with one note, shown by ``sluice validate`` and ``sluice plan``
(an error instead with ``objets: {strict: true}``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from msgspec import Meta

from sluice.errors import ConfigError, SluiceError
from sluice.plugins.base import Settings
from sluice.project.model import ConnectionSpec, ObjectSpec, SourceSpec, StageSpec, WriteMode, source_options
from sluice.project.objets_dates import DATE_PARTS
from sluice.project.objets_json import plain_word, zone_stage


class ObjetsSettings(Settings):
    """``objets:`` in a ``sluice.yaml``: the ``Objets.json`` whose objects the project runs, and how its fields map."""

    file: Annotated[str, Meta(min_length=1, description="The Objets.json file, relative to sluice.yaml.")] = "Objets.json"
    records: Annotated[
        str, Meta(description='Dotted path to the records in a REST response (data.items); "" when the body is the array.')
    ] = ""
    date_column: Annotated[
        str | None,
        Meta(description="Column the NiveauHierarchique date parts come from (default: the load time, UTC)."),
    ] = None
    strict: Annotated[bool, Meta(description="Report a field that cannot be mapped as an error, not a note.")] = False


NO_AUTH = frozenset({"", "none", "aucune", "aucun", "sans", "anonymous", "anonyme", "no", "non"})
BASIC = frozenset({"basic", "http basic", "basic auth", "http_basic", "httpbasic"})
BEARER = frozenset({"bearer", "token", "bearer token", "jwt", "jeton"})
API_KEY = frozenset({"api key", "apikey", "api_key", "api-key", "cle api", "cle d'api", "key"})
REPLACE = frozenset({"false", "full", "replace", "overwrite", "complet", "ecrasement", "truncate"})
APPEND = frozenset({"true", "append", "incremental", "incremental append", "delta", "ajout", "incrementiel"})
MERGE = frozenset({"merge", "upsert"})
LEVELS = {"year": "year", "annee": "year", "month": "month", "mois": "month", "day": "day", "jour": "day",
          "date": "day", "hour": "hour", "heure": "hour"}  # fmt: skip
FILE_FORMATS = {"csv": "csv", "json": "json", "jsonl": "jsonl", "ndjson": "jsonl", "parquet": "parquet"}
LAKE_ROOTS = frozenset({"lake", "datalake", "data-lake", "data_lake"})
_LAYER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class Unmapped(SluiceError):
    """A field that cannot be mapped: the note says which and what to do (caught by :func:`map_object`)."""


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one record's fields became: the object with its work, and the note when a field could not be mapped."""

    object: ObjectSpec
    mode: WriteMode | None = None
    note: str | None = None


def env_name(object_id: int, what: str) -> str:
    """The environment variable of an object's secret: ``env_name(1002, "PASSWORD") == "SLUICE_OBJET_1002_PASSWORD"``."""
    return f"SLUICE_OBJET_{object_id}_{what}"


def write_mode(value: Any) -> WriteMode | None:
    """The write mode ``AppendMode`` names (``False``/``"full"`` -> replace, ``True`` -> append), None if unknown."""
    word = "true" if value is True else "false" if value is False else plain_word(value) if isinstance(value, str) else None
    if word in REPLACE:
        return "replace"
    if word in APPEND:
        return "append"
    return "merge" if word in MERGE else None


def map_object(
    obj: ObjectSpec,
    settings: ObjetsSettings,
    stages: tuple[StageSpec, ...],
    connections: Mapping[str, ConnectionSpec],
    env: Mapping[str, str] | None = None,
) -> Mapped:
    """``obj`` (read from ``Objets.json``, fields in ``obj.metadata``) with its source, layer and partitions set.

    ``env`` defaults to ``os.environ`` (only the user name of basic auth is read from it; passwords, tokens
    and keys stay environment variable names resolved when the object runs). An unmappable field gives the
    object unchanged with a note.
    """
    fields = obj.metadata
    env = os.environ if env is None else env
    label = f"object {obj.id} ({obj.name})"
    try:
        mode = _mode(fields)
        layer = _layer(fields.get("DataLakeRootFolder"), stages)
        parts = _parts(fields.get("NiveauHierarchique"))
        source = _source(obj.id, fields, settings, connections, env) if fields.get("URL") not in (None, "") else None
    except Unmapped as exc:
        return Mapped(obj, note=f"{label}: {exc}; it stays a no-op")
    mapped = replace(
        obj,
        source=source,
        layer=layer,
        partition_by=parts,
        date_parts=parts,
        date_column=settings.date_column if parts else None,
    )
    return Mapped(mapped, mode=mode)


def _mode(fields: Mapping[str, Any]) -> WriteMode | None:
    value = fields.get("AppendMode")
    if value is None:
        return None
    mode = write_mode(value)
    if mode is None:
        raise Unmapped(f"AppendMode {value!r} is unknown; use false/full (replace), true/append or merge")
    return mode


def _layer(value: Any, stages: tuple[StageSpec, ...]) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise Unmapped(f"DataLakeRootFolder {value!r} is not a path; give one such as /lake/raw/crm")
    segments = [s for s in value.replace("\\", "/").split("/") if s and s != "."]
    while segments and plain_word(segments[0]) in LAKE_ROOTS:
        segments = segments[1:]
    if not segments:
        return None
    first = segments[0]
    for stage in stages:
        if first.lower() == stage.layer.lower():
            return stage.layer
    stage_of_zone = zone_stage(first, stages)
    if stage_of_zone is not None:
        return stage_of_zone.layer
    if not _LAYER.fullmatch(first):
        raise Unmapped(f"DataLakeRootFolder {value!r}: {first!r} cannot be a lake layer; use letters, digits, _ . -")
    return first


def _parts(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return ()
    level = LEVELS.get(plain_word(value)) if isinstance(value, str) else None
    if level is None:
        raise Unmapped(f"NiveauHierarchique {value!r} is unknown; use year, month, day or hour")
    return DATE_PARTS[: DATE_PARTS.index(level) + 1]


def _source(
    object_id: int,
    fields: Mapping[str, Any],
    settings: ObjetsSettings,
    connections: Mapping[str, ConnectionSpec],
    env: Mapping[str, str],
) -> SourceSpec:
    url = fields["URL"]
    if not isinstance(url, str):
        raise Unmapped(f"URL {url!r} is not text")
    fmt = fields.get("Format")
    word = plain_word(fmt) if isinstance(fmt, str) else "" if fmt is None else str(fmt)
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if word not in ("", "json"):
            raise Unmapped(
                f"Format {fmt!r} over {scheme} is not read yet (only JSON APIs); download the file and give its path "
                "as URL, or give the object a source in sluice.yaml"
            )
        return _rest(object_id, url, fields.get("TypeAuthentification"), settings, connections, env)
    if scheme == "file" or (not scheme or len(scheme) == 1):  # a path (C:\\ has a one-letter scheme)
        kind = FILE_FORMATS.get(word)
        if kind is None:
            raise Unmapped(f"Format {fmt!r} of a file is unknown; use csv, json, jsonl or parquet")
        path = unquote(parts.path) if scheme == "file" else url.strip()
        return _spec(kind, {"path": path})
    raise Unmapped(
        f"URL scheme {scheme}:// is not supported (http, https, file or a path); give the object a source in sluice.yaml"
    )


def _rest(
    object_id: int,
    url: str,
    auth_field: Any,
    settings: ObjetsSettings,
    connections: Mapping[str, ConnectionSpec],
    env: Mapping[str, str],
) -> SourceSpec:
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    named = [f"objets_{object_id}", re.sub(r"[^A-Za-z0-9_]", "_", host)]
    connection = next((name for name in named if name in connections), None)
    options: dict[str, Any] = {"records": settings.records}
    if parts.query:
        options["params"] = dict(parse_qsl(parts.query, keep_blank_values=True))
    path_only = parts._replace(query="", fragment="").geturl()
    if connection is not None:  # its URL gives the credentials; the full URL as the path
        options |= {"connection": connection, "path": path_only}
    else:
        options |= {"base_url": f"{parts.scheme}://{parts.netloc}", "path": parts.path or "/"}
    word = plain_word(auth_field) if isinstance(auth_field, str) else "" if auth_field is None else str(auth_field)
    where = f"a connection {named[0]} or {named[1]} (https://user:${{PASSWORD}}@{host or 'host'})"
    if word in NO_AUTH:
        pass
    elif word in BASIC:
        if connection is not None:
            options["auth"] = {"type": "basic"}
        else:
            user = env.get(env_name(object_id, "USER"))
            if not user:
                raise Unmapped(
                    f"TypeAuthentification {auth_field!r} needs credentials: define {where}, or set "
                    f"{env_name(object_id, 'USER')} and {env_name(object_id, 'PASSWORD')}"
                )
            options["auth"] = {"type": "basic", "username": user, "password_env": env_name(object_id, "PASSWORD")}
    elif word in BEARER or word in API_KEY:
        kind, what, key = ("bearer", "TOKEN", "token_env") if word in BEARER else ("api_key", "API_KEY", "key_env")
        if connection is not None:
            options["auth"] = {"type": kind}
        elif env_name(object_id, what) in env:
            options["auth"] = {"type": kind, key: env_name(object_id, what)}
        else:
            raise Unmapped(
                f"TypeAuthentification {auth_field!r} needs a secret: define {where}, or set {env_name(object_id, what)}"
            )
    else:
        raise Unmapped(
            f"TypeAuthentification {auth_field!r} is not supported (http basic, bearer, api key or none); "
            "give the object a source in sluice.yaml"
        )
    return _spec("rest", options)


def _spec(kind: str, options: dict[str, Any]) -> SourceSpec:
    try:
        return SourceSpec(kind, source_options(kind, options))
    except ConfigError as exc:
        raise Unmapped(
            f"the {kind} source it maps to is invalid ({exc.message}); give the object a source in sluice.yaml"
        ) from exc
