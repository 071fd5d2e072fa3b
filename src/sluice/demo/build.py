"""Build the demo project (``sluice demo``) and describe what its run produced.

>>> from pathlib import Path
>>> root = build_demo(Path("/tmp/sluice-demo"), users=500, transactions=5000)  # doctest: +SKIP
>>> sorted(p.name for p in (root / "data").iterdir())                          # doctest: +SKIP
['countries.csv', 'fx_rates.csv', 'products.json', 'transactions_2025.parquet', 'transactions_web.jsonl', 'users.csv']

Building again is cheap and changes nothing that is already right: project files are written only when
their text differs, data files only when missing or made with other sizes or seed, so their modification
times stay and a second run skips every object as fresh. The ``.sluice/`` state is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from sluice.demo.data import DATA_FILES, DATA_VERSION, make_data
from sluice.errors import ConfigError
from sluice.project.model import Project
from sluice.runtime.summary import RunSummary
from sluice.urls import sqlite_path

TEMPLATES = Path(__file__).with_name("templates")
PROJECT_FILES = ("sluice.yaml", "transforms.py", "README.md")
GITIGNORE = "warehouse.duckdb\nwarehouse.duckdb.wal\n.sluice/\n__pycache__/\n"
MANIFEST = ".demo-data.json"
SAMPLE_TABLE = "revenue_by_country_month"
SAMPLE_QUERY = f"""
    SELECT country_name AS country, sum(orders) AS orders, round(sum(revenue_eur), 2) AS revenue_eur,
           round(sum(refunded_eur), 2) AS refunded_eur
    FROM {SAMPLE_TABLE} GROUP BY country_name ORDER BY revenue_eur DESC LIMIT 5
"""


def build_demo(directory: Path, *, users: int = 2000, transactions: int = 30000, seed: int = 7) -> Path:
    """Write the demo project into ``directory`` (created if needed) and return its absolute path."""
    if users < 10 or transactions < 10:
        raise ConfigError(f"the demo needs at least 10 users and 10 transactions, got users={users}, transactions={transactions}")
    root = directory.expanduser().resolve()
    _check_folder(root)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        write_if_changed(root / name, (TEMPLATES / name).read_bytes())
    write_if_changed(root / ".gitignore", GITIGNORE.encode())
    wanted = {"users": users, "transactions": transactions, "seed": seed, "version": DATA_VERSION}
    manifest = data / MANIFEST
    if _read_manifest(manifest) != wanted or not all((data / name).is_file() for name in DATA_FILES):
        for name, content in make_data(users=users, transactions=transactions, seed=seed).items():
            write_if_changed(data / name, content)
        write_if_changed(manifest, (json.dumps(wanted, sort_keys=True) + "\n").encode())
    return root


def _check_folder(root: Path) -> None:
    """Refuse a file, or a folder holding a project the demo did not write (its files would be overwritten)."""
    if root.exists() and not root.is_dir():
        raise ConfigError("is a file; give the demo a folder to build in (it is created if missing)", str(root))
    marker = (TEMPLATES / "sluice.yaml").read_bytes().split(b"\n", 1)[0]
    for name in ("sluice.yaml", "sluice.yml", "Objets.json"):
        existing = root / name
        if existing.is_file() and not existing.read_bytes().startswith(marker):
            raise ConfigError(
                "already holds a project the demo did not build; the demo would overwrite it: choose another folder",
                str(existing),
            )


def write_if_changed(path: Path, content: bytes) -> bool:
    """Write ``content`` unless the file already holds exactly it (its mtime then stays); True if written."""
    try:
        if path.read_bytes() == content:
            return False
    except OSError:
        pass
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(content)
    temporary.replace(path)
    return True


def _read_manifest(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ----- describing a run --------------------------------------------------------------------------


def describe_outputs(project: Project, summary: RunSummary) -> RenderableType:
    """What a run produced and where: lake layers, warehouse tables, a few rows of one aggregate."""
    parts: list[RenderableType] = [_lake_table(project, summary)]
    warehouse = warehouse_path(project)
    if warehouse is not None and warehouse.is_file():
        try:
            con = duckdb.connect(str(warehouse), read_only=True)
        except duckdb.Error as exc:
            parts.append(Text(f"warehouse {warehouse}: cannot open it read-only ({exc})", style="yellow"))
        else:
            try:
                parts.extend(_warehouse_tables(con, warehouse))
            finally:
                con.close()
    return Group(*parts)


def warehouse_path(project: Project) -> Path | None:
    """The demo's DuckDB warehouse file (its first ``duckdb:///`` connection), if it has one."""
    for connection in project.connections.values():
        if connection.scheme == "duckdb":
            return sqlite_path(connection.url, project.root)
    return None


def _lake_table(project: Project, summary: RunSummary) -> Table:
    from sluice.lake.local import LocalLake

    lake = LocalLake(project.resolve_lake_path())
    table = Table(title=f"lake  {lake.root}", title_justify="left", title_style="bold", show_edge=False)
    table.add_column("layer")
    table.add_column("stage", style="dim")
    table.add_column("files", justify="right")
    table.add_column("rows", justify="right")
    for stage in project.stages:
        locations = [s.location for s in summary.objects.values() if s.stage == stage.name and s.location]
        rows = sum(_parquet_rows(lake.parquet_path(location)) for location in locations)
        table.add_row(f"{stage.layer}/", stage.name, str(len(locations)), f"{rows:,}")
    return table


def _parquet_rows(path: str) -> int:
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, ValueError):
        return 0


def _warehouse_tables(con: duckdb.DuckDBPyConnection, path: Path) -> list[RenderableType]:
    listing = "SELECT table_name FROM information_schema.tables WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY table_name"
    names = [str(row[0]) for row in con.execute(listing).fetchall()]
    tables = Table(title=f"warehouse  {path}", title_justify="left", title_style="bold", show_edge=False)
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    for name in names:
        count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        tables.add_row(name, f"{count[0] if count else 0:,}")
    parts: list[RenderableType] = [tables]
    if SAMPLE_TABLE in names:
        parts.append(_sample(con, "revenue by country  (top 5)", SAMPLE_QUERY))
    query = f"import duckdb; duckdb.connect('{path}', read_only=True).sql('from monthly_kpis').show()"
    parts.append(Text(f'query it:  python3 -c "{query}"', style="dim"))
    return parts


def _sample(con: duckdb.DuckDBPyConnection, title: str, query: str) -> Table:
    result = con.execute(query)
    rows = result.fetchall()
    sample = Table(title=title, title_justify="left", title_style="bold", show_edge=False)
    for index, column in enumerate(result.description or []):
        numeric = bool(rows) and isinstance(rows[0][index], (int, float))
        sample.add_column(str(column[0]), justify="right" if numeric else "left")
    for row in rows:
        sample.add_row(
            *(
                f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
                for value in row
            )
        )
    return sample


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
