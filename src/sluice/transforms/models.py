"""Model engines: what runs a SQL model of the ``models/`` folder, and the DuckDB one (docs/models.md).

A model engine is an ``engine`` plugin whose class derives from :class:`ModelEngine`; a model's
``engine`` names it (``duckdb``, ``warehouse``; ``spark`` when pyspark is installed). An engine
plugin that is a plain :class:`~sluice.transforms.engines.Engine` can run ``table`` models too: its
:meth:`~sluice.transforms.engines.Engine.run` gets the model's object with the rendered SQL.

:class:`DuckdbModelEngine` runs a model in an in-memory DuckDB over its parents' Parquet files, like a
``sql:`` object, with dbt's materialisations (https://docs.getdbt.com/docs/build/materializations):

- ``table``: the query's result replaces the model's lake output (and is published to its destination);
- ``view``: nothing is stored; a model that reads it gets it as a DuckDB view over the view's own parents
  (the view's SQL is inlined where it is read, as a database view would be);
- ``incremental``: the first run stores the full query; later runs (the lake holds an output) run the
  ``is_incremental()`` form, in which ``{{ this }}`` is the previous output, and store the new rows plus
  the previous rows whose ``unique_key`` is not among them. The rows counted are the new rows.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from sluice.connectors.batching import stream
from sluice.errors import TerminalError
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.project.model_spec import ModelSpec
from sluice.project.model_sql import THIS
from sluice.transforms.engines import Engine, sql_tables
from sluice.transforms.sql import BATCH_ROWS, create_input_views, create_view, quote_identifier, sql_error


@dataclass(frozen=True, slots=True)
class Materialized:
    """What a model's run produced: ``reader`` (Arrow batches for the lake and the destination; None when
    nothing leaves the engine), ``rows`` (rows affected, when not the rows of ``reader``) and ``target``
    (the table it landed in, for a push-down engine)."""

    reader: pa.RecordBatchReader | None
    rows: int | None = None
    target: str | None = None


class ModelEngine(Engine):
    """An engine that materialises models (:attr:`ObjectSpec.model`)."""

    @abstractmethod
    def materialize(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> Materialized:
        """Run model ``obj`` given its parents' lake locations (parent name -> location). Raises
        TerminalError for the model's mistakes, TransientError for what a retry may get past."""

    def run(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> pa.RecordBatchReader:
        """The model's output as Arrow; a TerminalError when it leaves none (a view, a push-down)."""
        result = self.materialize(obj, inputs, object_label=object_label)
        if result.reader is None:
            raise TerminalError(f"{object_label}: this model produces no rows to read; it is materialised where it runs")
        return result.reader


def model_of(obj: ObjectSpec, object_label: str) -> ModelSpec:
    """``obj``'s model; a TerminalError naming ``object_label`` for an object that is not a model."""
    if obj.model is None:
        raise TerminalError(f"{object_label}: is not a SQL model of the models/ folder; this engine runs models only")
    return obj.model


def rewrite(model: ModelSpec, sql: str, tables: Mapping[str, str], *, write: str, object_label: str) -> str:
    """``sql`` (in the model's dialect) with each table reference bound to the table ``tables`` names
    (reference as written, lower case -> table, possibly ``schema.table``), written in dialect ``write``."""
    try:
        tree = sqlglot.parse_one(sql, read=model.dialect)
    except sqlglot.errors.SqlglotError as exc:
        raise TerminalError(f"{object_label}: {model.path}: SQL does not parse as {model.dialect}: {exc}") from exc

    def bind(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            ref = f"{node.db}.{node.name}".lower() if node.db else node.name.lower()
            target = tables.get(ref)
            if target is not None:
                schema, dot, name = target.rpartition(".")
                bound = exp.table_(
                    exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True) if dot else None
                )
                bound.set("alias", node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name)))
                return bound
        return node

    return tree.transform(bind).sql(dialect=write)


def lake_names(project: Project, model: ModelSpec) -> dict[str, str]:
    """Each table reference of ``model`` bound to its parent's DuckDB view, ``<layer>.<name>``."""
    names = {}
    for ref, parent_id in model.parents:
        parent = project.objects.get(parent_id)
        if parent is not None:
            names[ref] = f"{layer_of(project, parent)}.{parent.name}"
    names[THIS] = THIS
    return names


class DuckdbModelEngine(ModelEngine):
    """``engine: duckdb`` (the default): the model runs in DuckDB over the lake; see the module's docs."""

    def previous(self, obj: ObjectSpec) -> str | None:
        """The lake location of the model's last output, if there is one (:meth:`Lake.current_location`)."""
        return self.lake.current_location(layer_of(self.project, obj), obj.name)

    def materialize(self, obj: ObjectSpec, inputs: Mapping[str, str], *, object_label: str) -> Materialized:
        model = model_of(obj, object_label)
        previous = self.previous(obj) if model.materialized == "incremental" else None
        sql = rewrite(
            model, model.sql(previous is not None), lake_names(self.project, model), write="duckdb", object_label=object_label
        )
        paths = {name: self.lake.duckdb_input(location) for name, location in sql_tables(self.project, obj, inputs).items()}
        if previous is not None:
            paths[THIS] = self.lake.duckdb_input(previous)
        con = duckdb.connect(":memory:")
        try:
            create_input_views(con, paths)
            for view_id in model.views:
                view = self.project.objects[view_id]
                assert view.model is not None
                names = lake_names(self.project, view.model)
                body = rewrite(view.model, view.model.full_sql, names, write="duckdb", object_label=object_label)
                create_view(con, f"{layer_of(self.project, view)}.{view.name}", body)
            if model.materialized == "view":
                con.sql(sql).columns  # noqa: B018 - binds the query: unknown columns fail now, not in a reader
                con.close()
                return Materialized(None, rows=0)
            rows: int | None = None
            if previous is not None:
                con.execute(f"CREATE TEMPORARY TABLE _sluice_new AS {sql}")
                rows = int(con.execute("SELECT count(*) FROM _sluice_new").fetchall()[0][0])
                key = ", ".join(quote_identifier(column) for column in model.unique_key)
                sql = (
                    f"SELECT * FROM _sluice_new UNION ALL BY NAME "
                    f"SELECT p.* FROM {THIS} AS p ANTI JOIN _sluice_new AS n USING ({key})"
                )
            relation = con.sql(sql)
            if relation is None:
                raise TerminalError(f"{object_label}: {model.path}: the SQL returns no rows; a model must be a query")
            reader = relation.to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            con.close()
            raise sql_error(exc, paths, f"{object_label} ({model.path})") from exc
        except BaseException:
            con.close()
            raise

        def translate(exc: Exception) -> Exception | None:
            return sql_error(exc, paths, object_label) if isinstance(exc, duckdb.Error) else None

        return Materialized(stream(reader.schema, reader, on_error=translate, on_close=con.close), rows=rows)
