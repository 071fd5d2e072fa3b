"""The ``api:`` section of ``sluice.yaml``: the data API (GraphQL, REST) served by ``sluice serve``.

::

    connections:
      hr: mysql://sluice:sluice@127.0.0.1:23306/hr
      warehouse: postgresql://postgres@127.0.0.1:25432/postgres
    api:
      sources:
        - connection: warehouse          # queries read here
          tables: [employes, "public.dept_*"]
      mutations: {employes: hr}          # insert/update/delete of `employes` go to MariaDB (seed 000)
      operations:
        employes: {list: employes, by_pk: employe_par_id, aggregate: stats_employes, insert_one: create_employe}
      auth:
        anon_role: anon                  # null: a request without credentials is refused (401)
        jwt: {algorithms: [HS256], secret: "${JWT_SECRET}", audience: sluice, leeway_s: 30}
      roles:
        anon:
          employes: {select: {columns: [id, nom, departement], limit: 100}}
        editor:
          articles:
            select: {}
            insert: {columns: [titre, contenu], set: {author_id: {claim: sub}}}
            update: {filter: {author_id: {_eq: {claim: sub}}}}
            delete: {filter: {author_id: {_eq: {claim: sub}}}}
      limits:
        rate: {per_key: 100/second, per_subject: 50/second, per_address: 20/second, storage: "memory://"}
        graphql: {max_depth: 8, max_cost: 5000, max_batch: 10, max_rows: 1000, timeout_s: 10}
        subscriptions: {per_connection: 100, init_timeout_s: 10}
      proxies:
        - {path: /svc/catalogue, upstream: "http://127.0.0.1:8081", roles: [editor]}
      cors: {allow_origins: ["https://app.example.com"]}   # browsers on other origins (none when absent)
      sync_mutations:                    # a GraphQL mutation running a pass of a sync of `syncs:` (seed 000)
        sync_employes: {sync: employees, roles: [editor], resync: true, timeout_s: 60}

Row filters (``filter``, ``check``) use the boolean expressions of the GraphQL ``where`` argument
(``{col: {_op: value}}``, ``_and``, ``_or``, ``_not``), the shape Hasura uses for its permissions; a value
``{claim: NAME}`` is the authenticated request's claim ``NAME`` (a JWT claim; ``sub`` for an API key's owner).
Each structure is checked with file and line like the rest of the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

BoolExp = dict[str, Any]
"""A boolean expression in the GraphQL ``where`` format: ``{"author_id": {"_eq": {"claim": "sub"}}}``."""


class ApiSource(Settings):
    """One connection whose tables and views the API exposes."""

    connection: Annotated[str, Meta(min_length=1, description="A connection name (postgresql://, mysql://, sqlite://).")]
    tables: Annotated[
        list[str], Meta(min_length=1, description="Tables and views by name or glob pattern (`public.*`, `dept_*`).")
    ]
    exclude: Annotated[list[str], Meta(description="Names or patterns left out of `tables`.")] = msgspec.field(
        default_factory=list
    )
    read_only: Annotated[bool, Meta(description="Expose no mutation for these tables.")] = False


class OperationNames(Settings):
    """Custom GraphQL field names of one table (default: generated from the table name)."""

    list: Annotated[str | None, Meta(description="The list query field (default: the table name).")] = None
    by_pk: Annotated[str | None, Meta(description="The by-primary-key query field (default: `<table>_by_pk`).")] = None
    aggregate: Annotated[str | None, Meta(description="The aggregate query field (default: `<table>_aggregate`).")] = None
    insert: Annotated[str | None, Meta(description="Insert many (default: `insert_<table>`).")] = None
    insert_one: Annotated[str | None, Meta(description="Insert one (default: `insert_<table>_one`).")] = None
    update: Annotated[str | None, Meta(description="Update by filter (default: `update_<table>`).")] = None
    update_by_pk: Annotated[str | None, Meta(description="Update by key (default: `update_<table>_by_pk`).")] = None
    delete: Annotated[str | None, Meta(description="Delete by filter (default: `delete_<table>`).")] = None
    delete_by_pk: Annotated[str | None, Meta(description="Delete by key (default: `delete_<table>_by_pk`).")] = None
    subscription: Annotated[str | None, Meta(description="The list subscription field (default: the table name).")] = None


class SelectPermission(Settings):
    """What a role may read of a table."""

    columns: Annotated[list[str] | Literal["*"], Meta(description="Readable columns, or `*` for all.")] = "*"
    filter: Annotated[BoolExp, Meta(description="Rows the role may read (a `where` expression, may use claims).")] = (
        msgspec.field(default_factory=dict)
    )
    limit: Annotated[Annotated[int, Meta(ge=1)] | None, Meta(description="Most rows per request for this role.")] = None
    aggregate: Annotated[bool, Meta(description="Whether aggregate fields are allowed.")] = True


class InsertPermission(Settings):
    """What a role may insert into a table."""

    columns: Annotated[list[str] | Literal["*"], Meta(description="Writable columns, or `*`.")] = "*"
    check: Annotated[BoolExp, Meta(description="Every inserted row must satisfy this expression.")] = msgspec.field(
        default_factory=dict
    )
    set: Annotated[dict[str, Any], Meta(description="Column presets, e.g. `{author_id: {claim: sub}}`.")] = msgspec.field(
        default_factory=dict
    )


class UpdatePermission(Settings):
    """What a role may update in a table."""

    columns: Annotated[list[str] | Literal["*"], Meta(description="Writable columns, or `*`.")] = "*"
    filter: Annotated[BoolExp, Meta(description="Rows the role may update.")] = msgspec.field(default_factory=dict)
    check: Annotated[BoolExp, Meta(description="Every updated row must still satisfy this expression.")] = msgspec.field(
        default_factory=dict
    )
    set: Annotated[dict[str, Any], Meta(description="Column presets applied on every update.")] = msgspec.field(
        default_factory=dict
    )


class DeletePermission(Settings):
    """What a role may delete from a table."""

    filter: Annotated[BoolExp, Meta(description="Rows the role may delete.")] = msgspec.field(default_factory=dict)


class TablePermissions(Settings):
    """A role's permissions on one table; an operation left out is refused."""

    select: SelectPermission | None = None
    insert: InsertPermission | None = None
    update: UpdatePermission | None = None
    delete: DeletePermission | None = None


class JwtSettings(Settings):
    """JSON Web Tokens (RFC 7519) checked with PyJWT."""

    algorithms: Annotated[
        list[Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256"]],
        Meta(min_length=1, description="Accepted algorithms; `none` is never accepted."),
    ] = msgspec.field(default_factory=lambda: ["HS256"])
    secret: Annotated[str | None, Meta(description="HMAC secret for HS* (use ${ENV_VAR}).")] = None
    public_key_file: Annotated[str | None, Meta(description="PEM public key for RS*/ES* (path relative to the project).")] = None
    jwks_file: Annotated[str | None, Meta(description="A local JWKS file (RFC 7517); the token's `kid` picks the key.")] = None
    audience: Annotated[str | None, Meta(description="Required `aud`.")] = None
    issuer: Annotated[str | None, Meta(description="Required `iss`.")] = None
    leeway_s: Annotated[float, Meta(ge=0, le=600, description="Clock skew allowed on `exp` and `nbf`, seconds.")] = 30.0
    role_claim: Annotated[str, Meta(description="Claim holding the role (dotted path allowed: `https://x/role`).")] = "role"


class AuthSettings(Settings):
    """How requests are authenticated."""

    anon_role: Annotated[str | None, Meta(description="Role of a request without credentials; null refuses them.")] = "anon"
    jwt: JwtSettings | None = None
    api_keys: Annotated[bool, Meta(description="Accept API keys (`X-API-Key` or `Authorization: ApiKey ...`).")] = True


class RateLimits(Settings):
    """Rate limits in the notation of the `limits` library (`100/second`, `1000/hour;50/minute`)."""

    per_key: Annotated[str | None, Meta(description="Per API key.")] = None
    per_subject: Annotated[str | None, Meta(description="Per JWT subject.")] = None
    per_address: Annotated[str | None, Meta(description="Per client address.")] = None
    storage: Annotated[str, Meta(description="`memory://` (one process) or `redis://host:port` (shared by replicas).")] = (
        "memory://"
    )


class GraphqlLimits(Settings):
    """Limits on GraphQL documents and on every request."""

    max_depth: Annotated[int, Meta(ge=1, le=100, description="Deepest selection nesting.")] = 10
    max_cost: Annotated[int, Meta(ge=1, description="Most cost points per document (one per field, times list limits).")] = 50_000
    max_batch: Annotated[int, Meta(ge=1, le=1000, description="Most operations in one batched request.")] = 10
    max_rows: Annotated[int, Meta(ge=1, description="Most rows returned by one list field.")] = 10_000
    timeout_s: Annotated[float, Meta(gt=0, description="Statement time-out of one request, seconds.")] = 10.0
    persisted_queries_file: Annotated[
        str | None, Meta(description="A JSON file {hash: document}; when set, only these documents run.")
    ] = None


class SubscriptionLimits(Settings):
    """Limits of live subscriptions (WebSocket and Server-Sent Events, docs/api/subscriptions.md)."""

    per_connection: Annotated[
        int, Meta(ge=1, le=10_000, description="Most active subscriptions on one WebSocket (the next is refused).")
    ] = 100
    init_timeout_s: Annotated[
        float, Meta(gt=0, le=600, description="Seconds a WebSocket may wait before `connection_init` (then closed 4408).")
    ] = 10.0


class LimitSettings(Settings):
    """Rate limits, GraphQL limits and subscription limits."""

    rate: RateLimits = msgspec.field(default_factory=RateLimits)
    graphql: GraphqlLimits = msgspec.field(default_factory=GraphqlLimits)
    subscriptions: SubscriptionLimits = msgspec.field(default_factory=SubscriptionLimits)


class ProxyRoute(Settings):
    """A gateway route: requests under ``path`` are forwarded to ``upstream`` after authentication and limits."""

    path: Annotated[str, Meta(pattern=r"^/[A-Za-z0-9_./-]*$", description="Path prefix served by Sluice.")]
    upstream: Annotated[str, Meta(pattern=r"^https?://", description="Base URL of the upstream service.")]
    roles: Annotated[list[str] | None, Meta(description="Roles allowed (default: any authenticated role).")] = None
    timeout_s: Annotated[float, Meta(gt=0, description="Upstream time-out, seconds.")] = 30.0


class CorsSettings(Settings):
    """Cross-origin requests from browsers to the data API (GraphQL, REST, proxies), by the Fetch standard's CORS
    protocol (https://fetch.spec.whatwg.org/#http-cors-protocol), answered by Starlette's ``CORSMiddleware``."""

    allow_origins: Annotated[
        list[str],
        Meta(
            min_length=1,
            description="Origins allowed (`https://app.example.com`, `https://*.example.com` for its subdomains), "
            "or `*` for any.",
        ),
    ]
    allow_headers: Annotated[list[str], Meta(description="Request headers a browser may send.")] = msgspec.field(
        default_factory=lambda: ["authorization", "content-type", "x-api-key", "prefer", "range", "accept"]
    )
    expose_headers: Annotated[list[str], Meta(description="Response headers scripts may read.")] = msgspec.field(
        default_factory=lambda: [
            "content-range",
            "retry-after",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "ratelimit-policy",
        ]
    )
    allow_credentials: Annotated[bool, Meta(description="Let browsers send cookies and HTTP authentication (not with `*`).")] = (
        False
    )
    max_age_s: Annotated[int, Meta(ge=0, le=86_400, description="Seconds a browser may cache a preflight answer.")] = 600


class SyncMutation(Settings):
    """A GraphQL mutation field that runs one pass of a sync of the project's ``syncs:`` and answers what it
    applied (seed 000's ``sync_employes``; docs/api/graphql.md, "Sync mutations")."""

    sync: Annotated[str, Meta(min_length=1, description="The name of a sync in `syncs:`.")]
    roles: Annotated[
        list[str], Meta(min_length=1, description="Roles that may call it (`admin_role` always may); others get 403.")
    ]
    resync: Annotated[
        bool, Meta(description="Whether callers may ask for tables to be copied again (the field's `resync` argument).")
    ] = False
    timeout_s: Annotated[
        float, Meta(gt=0, le=3600, description="Most seconds a call waits for the pass; then it answers `state: timeout`.")
    ] = 60.0


class ApiSettings(Settings):
    """The ``api:`` section."""

    sources: Annotated[list[ApiSource], Meta(min_length=1, description="Connections and tables exposed.")]
    mutations: Annotated[
        dict[str, str], Meta(description="Table -> connection that its mutations write (default: the table's source).")
    ] = msgspec.field(default_factory=dict)
    operations: Annotated[dict[str, OperationNames], Meta(description="Per table: custom operation names.")] = msgspec.field(
        default_factory=dict
    )
    roles: Annotated[
        dict[str, dict[str, TablePermissions]], Meta(description="Role -> table -> permissions. No entry: refused.")
    ] = msgspec.field(default_factory=dict)
    admin_role: Annotated[str, Meta(description="A role with every permission on every exposed table.")] = "admin"
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    proxies: Annotated[list[ProxyRoute], Meta(description="Gateway routes to upstream HTTP services.")] = msgspec.field(
        default_factory=list
    )
    sync_mutations: Annotated[
        dict[str, SyncMutation], Meta(description="GraphQL field name -> the sync a call runs one pass of (seed 000).")
    ] = msgspec.field(default_factory=dict)
    cors: Annotated[CorsSettings | None, Meta(description="Cross-origin requests from browsers (none allowed when absent).")] = (
        None
    )
    log_requests: Annotated[
        bool,
        Meta(
            description="One INFO line per data API request on the sluice.api.requests logger (false: none; the "
            "metrics count every request either way)."
        ),
    ] = True
    graphql_path: Annotated[str, Meta(description="Where GraphQL is served.")] = "/graphql"
    rest_path: Annotated[str, Meta(description="Where REST is served.")] = "/rest"
