"""The reference pages in ``docs/reference/``: one Markdown page per plugin kind, and one for sluice.yaml.

Generated from the same structures as ``sluice plugins`` and ``sluice schema`` (built-in plugins only,
so the pages do not depend on what else is installed)::

    PYTHONPATH=src python3 -m sluice.plugins.reference docs/reference

``tests/plugins/test_reference.py`` fails when the committed pages differ from what this writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from sluice.alerts.settings import AlertsSettings, RuleSettings, SlaSettings
from sluice.api.settings import (
    ApiSettings,
    ApiSource,
    AuthSettings,
    CorsSettings,
    DeletePermission,
    GraphqlLimits,
    InsertPermission,
    JwtSettings,
    OperationNames,
    ProxyRoute,
    RateLimits,
    SelectPermission,
    SubscriptionLimits,
    SyncMutation,
    UpdatePermission,
)
from sluice.cdc.config import ColumnRules, SyncSettings
from sluice.plugins.base import KINDS, Plugin, Settings
from sluice.plugins.describe import OptionInfo, PluginInfo, describe_all, struct_options
from sluice.plugins.registry import builtin_plugins
from sluice.plugins.schema import SQL_TYPE, source_type
from sluice.project.model import RetrySpec
from sluice.project.settings import ConnectionSettings, ObjectSettings, ProjectSettings, StageSettings
from sluice.server.serve_settings import ServeSettings
from sluice.transforms.plugins import SparkSettings

REGENERATE = "PYTHONPATH=src python3 -m sluice.plugins.reference docs/reference"
GENERATED = f"<!-- Generated from the plugins' option structures by `{REGENERATE}`; do not edit by hand. -->"

TITLES = {
    "source": "Sources",
    "destination": "Destinations",
    "lake": "Lakes",
    "engine": "Transform engines",
    "bus": "Buses",
    "state": "State stores",
    "alert": "Alert channels",
    "check": "Data-quality checks",
}
INTROS = {
    "source": (
        "An object's `source:` says what it extracts; `type` picks the plugin: `source: {type: csv, path: data/users.csv}`. "
        f"The plugins that read a database share `type: {SQL_TYPE}`: the URL scheme of the object's `connection` picks one "
        "(`source: {type: sql, connection: shop, table: orders}`)."
    ),
    "destination": (
        "An object's `destination:` publishes its result to a table besides the lake: "
        "`destination: {connection: warehouse, table: dim_users, mode: merge, key: [user_id]}`. "
        "The URL scheme of the connection picks the plugin."
    ),
    "lake": (
        "The top-level `lake:` keeps every object's output as Parquet: a folder (`lake: lake`), a URL whose scheme "
        "picks the plugin and whose query string its options (`lake: s3://bucket/prefix?endpoint=http://127.0.0.1:29000`), "
        "or a plugin and its options (`lake: {type: local, path: lake}`). Default: `.sluice/lake`. "
        "Design, partitions and retention: [docs/lakes.md](../lakes.md)."
    ),
    "engine": (
        "An object's `sql:`, `python:` or `pyspark:` key picks the engine that computes it from its parents; "
        "`engine: spark` (on the object or at the top level) runs `sql:` on Spark (see [../engines.md](../engines.md)); "
        "a SQL model's `engine` (docs/models.md) picks the one that materialises it."
    ),
    "bus": (
        "The top-level `bus:` URL (or `--bus`); its scheme picks the plugin and the query string "
        "carries the options: `bus: kafka://127.0.0.1:9092?partitions=12`."
    ),
    "state": "The top-level `state:` URL (or `--state`); its scheme picks the plugin.",
    "alert": (
        "Each channel of `alerts.channels`, by name; `type` picks the plugin: "
        "`alerts: {channels: {team: {type: slack, url: ${SLACK_WEBHOOK_URL}}}}`. "
        "Rules, throttling, deadlines and payloads: [../alerts.md](../alerts.md)."
    ),
    "check": (
        "Each item of an object's `checks:` names its type by its one key besides `name`, `severity` (`error`, `warn`), "
        "`sample` and `rows` (`load`: only the rows of the load being checked; `table`: the whole output; the default is "
        "`table` for `freshness` and `row_count`, `load` for the other types): "
        "`checks: [{not_null: {columns: [user_id]}}, {expression: amount >= 0, severity: warn, rows: table}]`. "
        "Where they run, results and cost: [docs/checks.md](../checks.md)."
    ),
}
PROJECT_SECTIONS: tuple[tuple[str, type[Settings], str], ...] = (
    ("Top level", ProjectSettings, "The keys of `sluice.yaml` itself."),
    ("objects[]", ObjectSettings, "Each item of `objects:`. See [source.md](source.md) and [destination.md](destination.md)."),
    ("stages.NAME", StageSettings, "Each stage of `stages:`, by name."),
    ("connections.NAME", ConnectionSettings, "Each connection of `connections:`, by name: a URL, or `{url: ...}`."),
    ("retry", RetrySpec, "The top-level `retry:`: how failed objects are retried."),
    (
        "spark",
        SparkSettings,
        "The top-level `spark:`: the Spark session of `engine: spark` objects. See [../engines.md](../engines.md).",
    ),
    (
        "syncs[]",
        SyncSettings,
        "Each item of `syncs:`: tables kept in sync by change-data capture. See [../cdc/README.md](../cdc/README.md).",
    ),
    ("syncs[].columns.TABLE", ColumnRules, "Columns of one source table left out or masked."),
    ("api", ApiSettings, "The data API served by `sluice serve` (GraphQL). See [../api/README.md](../api/README.md)."),
    ("api.sources[]", ApiSource, "Each connection whose tables and views the API exposes."),
    ("api.operations.TABLE", OperationNames, "Custom GraphQL field names of one table."),
    ("api.roles.ROLE.TABLE.select", SelectPermission, "What a role may read of a table."),
    ("api.roles.ROLE.TABLE.insert", InsertPermission, "What a role may insert into a table."),
    ("api.roles.ROLE.TABLE.update", UpdatePermission, "What a role may update in a table."),
    ("api.roles.ROLE.TABLE.delete", DeletePermission, "What a role may delete from a table."),
    ("api.auth", AuthSettings, "How requests are authenticated."),
    ("api.auth.jwt", JwtSettings, "JSON Web Tokens (RFC 7519)."),
    ("api.limits.rate", RateLimits, "Rate limits (the `limits` library's notation)."),
    ("api.limits.graphql", GraphqlLimits, "Limits on GraphQL documents and requests."),
    (
        "api.limits.subscriptions",
        SubscriptionLimits,
        "Limits of live subscriptions. See [../api/subscriptions.md](../api/subscriptions.md).",
    ),
    ("api.proxies[]", ProxyRoute, "Gateway routes to upstream HTTP services."),
    (
        "api.sync_mutations.FIELD",
        SyncMutation,
        "A GraphQL mutation running one pass of a sync. See [../api/graphql.md](../api/graphql.md#sync-mutations).",
    ),
    ("api.cors", CorsSettings, "Cross-origin requests from browsers. See [../api/security.md](../api/security.md#cors)."),
    ("alerts", AlertsSettings, "Alert channels, rules and deadlines. See [../alerts.md](../alerts.md) and [alert.md](alert.md)."),
    ("alerts.rules[]", RuleSettings, "Each rule of `alerts.rules`, tried in order: the first that matches an event wins."),
    ("alerts.sla[]", SlaSettings, "Each deadline of `alerts.sla`: `finish_within` a run's start, or `by` a time of day."),
    (
        "serve",
        ServeSettings,
        "The top-level `serve:`: where `sluice serve` reads its control token (one of the two keys). "
        "See [../api.md](../api.md#authentication).",
    ),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def options_table(options: Iterable[OptionInfo]) -> list[str]:
    """A Markdown table of options: name, type, default, description."""
    rows = ["| option | type | default | description |", "| --- | --- | --- | --- |"]
    for option in options:
        default = "*required*" if option.required else f"`{option.default_text}`"
        rows.append(f"| `{option.name}` | {_cell(option.type)} | {_cell(default)} | {_cell(option.doc)} |")
    return rows


def _plugin_section(info: PluginInfo, plugin: Plugin) -> list[str]:
    lines = [f"## {info.name}", "", info.summary, ""]
    if info.kind == "source":
        lines.append(f"- `type: {source_type(plugin)}`")
    if info.schemes:
        lines.append("- URL schemes: " + ", ".join(f"`{scheme}://`" for scheme in info.schemes))
    if info.extra:
        lines.append(f"- Needs the `{info.extra}` extra: `pip install 'sluice[{info.extra}]'`")
    lines.append(f"- Options: `{plugin.options.__module__}.{plugin.options.__qualname__}`")
    lines.append("")
    if info.options:
        lines += [*options_table(info.options), ""]
    else:
        lines += ["No options.", ""]
    return lines


def kind_page(kind: str, plugins: list[Plugin]) -> str:
    """The page of one kind's plugins."""
    lines = [f"# {TITLES.get(kind, kind.title())}", "", GENERATED, "", INTROS.get(kind, ""), ""]
    lines += [f"- [{plugin.name}](#{plugin.name}): {plugin.summary}" for plugin in plugins] + [""]
    for info, plugin in zip(describe_all(plugins=plugins), plugins, strict=True):
        lines += _plugin_section(info, plugin)
    return "\n".join(lines).rstrip() + "\n"


def project_page() -> str:
    """The page of sluice.yaml's own sections."""
    lines = [
        "# sluice.yaml",
        "",
        GENERATED,
        "",
        "The sections of `sluice.yaml` itself; the plugins' options are on their own pages. "
        "`sluice schema` prints the same as a JSON Schema for editors (see [../plugins.md](../plugins.md)).",
        "",
    ]
    for title, settings, intro in PROJECT_SECTIONS:
        _, _, options = struct_options(settings)
        lines += [f"## {title}", "", intro, "", *options_table(options), ""]
    return "\n".join(lines).rstrip() + "\n"


def reference_pages(plugins: Iterable[Plugin] | None = None) -> dict[str, str]:
    """File name → Markdown text of every reference page (default: the built-in plugins)."""
    chosen = list(plugins) if plugins is not None else builtin_plugins()
    pages: dict[str, str] = {}
    for kind in KINDS:
        of_kind = [plugin for plugin in chosen if plugin.kind == kind]
        if of_kind:
            pages[f"{kind}.md"] = kind_page(kind, of_kind)
    pages["project.md"] = project_page()
    index = ["# Reference", "", GENERATED, ""]
    index += [f"- [{TITLES.get(name[:-3], 'sluice.yaml')}]({name})" for name in pages]
    index += ["", "How to write a plugin and point an editor at the schema: [../plugins.md](../plugins.md)."]
    pages["README.md"] = "\n".join(index) + "\n"
    return pages


def write_reference(directory: Path) -> list[Path]:
    """Write :func:`reference_pages` into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in reference_pages().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {REGENERATE}", file=sys.stderr)
        return 2
    for path in write_reference(Path(argv[0])):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
