"""The typed options of ``source: {type: rest, ...}`` (imports nothing but msgspec: see :mod:`sluice.plugins`).

Pagination styles are named after dlt's paginators (``offset``, ``page_number``, ``cursor``,
``header_link``, ``json_link``, ``single_page``) so a dlt ``rest_api`` configuration maps over one to one.
Secrets never appear in these options: they come from environment variables named here (``token_env``,
``key_env``, ``password_env``) or from a connection's URL (``https://user:secret@host``), whose text the
project never shows (an object's definition, which the server and ``sluice plan`` show, holds only names).
"""

from __future__ import annotations

import os
import re
from typing import Annotated, ClassVar, Literal

from msgspec import Meta, field

from sluice.plugins.base import Settings

Param = str | int | float | bool
RecordPath = Annotated[
    str,
    Meta(description='Dotted path to the records in a response body (data.items); "" when the body is the array itself.'),
]
TotalPath = Annotated[
    str | None,
    Meta(description="Dotted path to the total in the body (meta.total): paging stops once it is reached."),
]
EnvName = Annotated[str, Meta(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="An environment variable's name.")]


class OffsetPages(Settings, tag_field="style", tag="offset"):
    """``?offset=0&limit=100``, then 100, 200...: stops on an empty page or once ``total_path``'s total is reached."""

    limit: Annotated[int, Meta(ge=1, description="Records asked for per page.")] = 100
    offset: Annotated[int, Meta(ge=0, description="The first offset.")] = 0
    offset_param: Annotated[str, Meta(min_length=1, description="Query parameter of the offset.")] = "offset"
    limit_param: Annotated[str, Meta(min_length=1, description="Query parameter of the page size.")] = "limit"
    total_path: TotalPath = None
    concurrency: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="Pages requested at once (their numbers are known in advance), yielded in order; 1 = one after "
            "another. Without a total, up to concurrency - 1 requests past the last page are wasted.",
        ),
    ] = 1


class PageNumberPages(Settings, tag_field="style", tag="page_number"):
    """``?page=1``, 2, 3...: stops on an empty page or after ``total_path``'s number of pages."""

    base_page: Annotated[int, Meta(ge=0, description="The first page's number.")] = 1
    page_param: Annotated[str, Meta(min_length=1, description="Query parameter of the page number.")] = "page"
    page_size: Annotated[int, Meta(ge=1, description="Records per page, sent as page_size_param when set.")] | None = None
    page_size_param: Annotated[str, Meta(min_length=1, description="Query parameter of the page size.")] = "per_page"
    total_path: Annotated[
        str | None, Meta(description="Dotted path to the number of pages in the body: paging stops after that page.")
    ] = None
    concurrency: Annotated[
        int,
        Meta(
            ge=1,
            le=64,
            description="Pages requested at once (their numbers are known in advance), yielded in order; 1 = one after "
            "another. Without a total, up to concurrency - 1 requests past the last page are wasted.",
        ),
    ] = 1


class CursorPages(Settings, tag_field="style", tag="cursor"):
    """A cursor in the body (``{"next_cursor": "abc"}``) sent back as ``?cursor=abc``: stops when it is null or empty."""

    cursor_path: Annotated[str, Meta(min_length=1, description="Dotted path to the next cursor in the body.")] = "next_cursor"
    cursor_param: Annotated[str, Meta(min_length=1, description="Query parameter the cursor is sent as.")] = "cursor"


class HeaderLinkPages(Settings, tag_field="style", tag="header_link"):
    """The ``Link`` header's ``rel="next"`` URL (RFC 8288, as GitHub's API): stops when there is none."""

    rel: Annotated[str, Meta(min_length=1, description="The link relation to follow.")] = "next"


class JsonLinkPages(Settings, tag_field="style", tag="json_link"):
    """A next-page URL in the body (``{"next": "https://..."}``, absolute or relative): stops when it is null or empty."""

    next_url_path: Annotated[str, Meta(min_length=1, description="Dotted path to the next page's URL in the body.")] = "next"


class SinglePage(Settings, tag_field="style", tag="single_page"):
    """One request, no paging."""


Paginate = Annotated[
    OffsetPages | PageNumberPages | CursorPages | HeaderLinkPages | JsonLinkPages | SinglePage,
    Meta(
        description="How to reach the next page: {style: offset | page_number | cursor | header_link | json_link | "
        "single_page, ...}; default single_page (docs/sources.md)."
    ),
]


class BearerAuth(Settings, tag_field="type", tag="bearer"):
    """``Authorization: Bearer <token>`` (RFC 6750); the token from ``token_env`` or the connection's password."""

    token_env: EnvName | None = None


class ApiKeyAuth(Settings, tag_field="type", tag="api_key"):
    """An API key in a header or a query parameter; the key from ``key_env`` or the connection's password."""

    name: Annotated[str, Meta(min_length=1, description="Header or query parameter name.")] = "X-API-Key"
    location: Annotated[Literal["header", "query"], Meta(description="Where the key goes.")] = "header"
    key_env: EnvName | None = None


class BasicAuth(Settings, tag_field="type", tag="basic"):
    """HTTP Basic (RFC 7617): ``username`` and the password from ``password_env``, or both from the connection's URL."""

    username: Annotated[str | None, Meta(description="User name (default: the connection URL's).")] = None
    password_env: EnvName | None = None


Auth = BearerAuth | ApiKeyAuth | BasicAuth


class Incremental(Settings):
    """Load only what changed: the largest ``cursor`` value seen is kept in the state store once the object's
    output is written, and sent as ``param`` on the next run (``sluice state reset`` forgets it). The lake output
    accumulates: the previous one plus what a run read, merged on ``primary_key`` when there is one."""

    cursor: Annotated[str, Meta(min_length=1, description="The record field that grows (updated_at, id).")]
    param: Annotated[str, Meta(min_length=1, description="Query parameter the last value is sent as (updated_since).")]
    initial: Annotated[Param | None, Meta(description="Sent on the first run; nothing is sent when unset.")] = None
    primary_key: Annotated[
        tuple[Annotated[str, Meta(min_length=1)], ...],
        Meta(
            description="Fields that identify a record: the lake output keeps the newest record of each key (default: "
            "the destination's merge key or primary_key; none: every record read is kept)."
        ),
    ] = ()


class Retries(Settings):
    """Retries of one request on 429, 5xx, time-outs and transport errors: exponential backoff with full jitter
    (``random(0, min(max_backoff_s, backoff_s * 2**(n-1)))``), or the server's ``Retry-After`` (RFC 9110 10.2.3)."""

    attempts: Annotated[int, Meta(ge=1, le=100, description="Attempts per request, the first included.")] = 5
    backoff_s: Annotated[float, Meta(ge=0, description="Seconds of the first backoff (doubled each retry).")] = 0.5
    max_backoff_s: Annotated[float, Meta(ge=0, description="Longest backoff, in seconds.")] = 30.0
    max_retry_after_s: Annotated[
        float, Meta(ge=0, description="Longest Retry-After honoured, in seconds; a longer one fails the attempt (transient).")
    ] = 300.0


class Parent(Settings):
    """The parent endpoint of a child one: for each parent record, the source's ``path`` is requested with the
    record's fields in its ``{placeholders}`` (``/customers/{id}/orders``)."""

    path: Annotated[str, Meta(min_length=1, description="The parent endpoint, relative to base_url.")]
    records: RecordPath = ""
    params: Annotated[dict[str, Param], Meta(description="Query parameters of the parent requests.")] = field(
        default_factory=dict
    )
    paginate: Paginate = field(default_factory=SinglePage)
    keys: Annotated[
        dict[str, str],
        Meta(description="Parent fields copied onto each child record, by child column name ({customer_id: id})."),
    ] = field(default_factory=dict)


class RestOptions(Settings):
    """A JSON API over HTTP(S): paginated, authenticated, retried, rate-limited, optionally incremental."""

    connection_schemes: ClassVar[tuple[str, ...]] = ("http", "https")
    """What ``connection`` may name: checked by ``sluice validate`` at its line."""
    path: Annotated[str, Meta(description="The endpoint, relative to base_url (/customers) or absolute.")] = ""
    base_url: Annotated[str | None, Meta(description="https://api.example.com/v1 (or the connection's URL).")] = None
    connection: Annotated[
        str | None, Meta(description="A project connection whose URL is the base URL; its user and password feed auth.")
    ] = None
    params: Annotated[dict[str, Param], Meta(description="Query parameters of every request.")] = field(default_factory=dict)
    headers: Annotated[dict[str, str], Meta(description="Headers of every request (no secrets: see auth).")] = field(
        default_factory=dict
    )
    records: RecordPath = ""
    paginate: Paginate = field(default_factory=SinglePage)
    auth: Annotated[
        Auth | None, Meta(description="How requests authenticate: {type: bearer | api_key | basic, ...}; secrets by env name.")
    ] = None
    incremental: Incremental | None = None
    parent: Parent | None = None
    retries: Retries = field(default_factory=Retries)
    timeout_s: Annotated[float, Meta(gt=0, description="Seconds to connect, and between bytes of a response.")] = 30.0
    rate_limit: Annotated[float, Meta(gt=0, description="Most requests per second (a token bucket).")] | None = None
    max_pages: Annotated[int, Meta(ge=1, description="Stop after this many pages per endpoint (a safety net).")] | None = None
    column_types: Annotated[
        dict[str, str] | None,
        Meta(description="Arrow types by field (string keeps any JSON value as its text), instead of guessing."),
    ] = None
    schema_buffer_bytes: Annotated[
        int,
        Meta(
            ge=0,
            description="Bytes of records held (as Arrow) while the schema may still grow; past that it is fixed and a "
            "new field or type fails the read (declare it in column_types).",
        ),
    ] = 64 << 20

    def __post_init__(self) -> None:
        if (self.base_url is None) == (self.connection is None) and not self.path.startswith(("http://", "https://")):
            raise ValueError("give either 'base_url' or 'connection' (exactly one), or an absolute 'path'")
        if self.parent is None and "{" in self.path:
            raise ValueError(f"path {self.path!r} has {{placeholders}}: they are filled from a 'parent' endpoint's records")
        if self.parent is not None:
            unbalanced = re.sub(r"\{[^{}]+\}", "", self.path)
            if "{" in unbalanced or "}" in unbalanced:
                raise ValueError(f"path {self.path!r}: a {{placeholder}} is not closed; write it as /customers/{{id}}/orders")
            if "{" not in self.path:
                raise ValueError(
                    f"path {self.path!r} has no {{placeholder}}: every parent record would fetch the same URL; "
                    "name a parent field in it (/customers/{id}/orders)"
                )
        if self.auth is not None and self.connection is None and _secret_env(self.auth) is None:
            tag = str(self.auth.__struct_config__.tag)
            name = {"bearer": "token_env", "api_key": "key_env", "basic": "password_env"}[tag]
            raise ValueError(
                f"auth {tag}: no secret: set auth.{name} to the environment variable that "
                "holds it, or use a connection whose URL carries it as the password"
            )
        from sluice.connectors.plugins import check_column_types

        check_column_types(self.column_types)


def unset_secret(options: object) -> str | None:
    """For REST source ``options`` whose auth reads its secret from an environment variable that is not set now:
    what to tell (``sluice validate`` notes it; the run would fail with it), else None."""
    auth = getattr(options, "auth", None)
    if not isinstance(options, RestOptions) or auth is None:
        return None
    name = _secret_env(auth)
    if name is None or name in os.environ:
        return None
    tag = str(auth.__struct_config__.tag)
    return f"auth {tag} reads its secret from the environment variable {name}, which is not set here; set it before the run"


def _secret_env(auth: Auth) -> str | None:
    """The environment variable ``auth`` reads its secret from, or None (then only a connection can give it)."""
    if isinstance(auth, BearerAuth):
        return auth.token_env
    if isinstance(auth, ApiKeyAuth):
        return auth.key_env
    return auth.password_env
