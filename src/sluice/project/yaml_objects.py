"""``objects:`` of ``sluice.yaml``: each object's id, stage, parents, work (source, SQL, Python, PySpark), engine,
streaming options and destination (part of :mod:`sluice.project.yaml_file`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from sluice.checks.read import read_checks
from sluice.plugins.options import partial_settings
from sluice.project.model import ObjectSpec, Origin, StageSpec, stage_for_id
from sluice.project.settings import ObjectSettings
from sluice.project.yaml_sources import SourcesReader, flatten_options
from sluice.project.yaml_tree import YamlMap, plain
from sluice.streaming.settings import CompactSettings, StreamingSettings, TriggerSettings
from sluice.streaming.window_options import WindowOptions


class ObjectsReader(SourcesReader):
    """Reads the ``objects:`` section."""

    def objects(self, raw: Any, stages: tuple[StageSpec, ...], line: int | None) -> dict[int, ObjectSpec]:
        if not isinstance(raw, list):
            self.problem("'objects' must be a list of object definitions", line)
            return {}
        result: dict[int, ObjectSpec] = {}
        for item in raw:
            obj = self.object(item, stages, line)
            if obj is None:
                continue
            if obj.id in result:
                self.problem(
                    f"object id {obj.id} is defined twice (also at line {result[obj.id].origin.line}); ids must be unique",
                    obj.origin.line,
                )
                continue
            result[obj.id] = obj
        return result

    def object(self, item: Any, stages: tuple[StageSpec, ...], line: int | None) -> ObjectSpec | None:
        if not isinstance(item, YamlMap):
            self.problem(f"each object must be a mapping with at least an 'id', got {plain(item)!r}", line)
            return None
        line = item.line
        raw_id = item.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int):
            self.problem(f"malformed object id {raw_id!r}: ids must be integers", item.line_of("id"))
            return None
        name = item.get("name")
        label = f"object {raw_id} ({name})" if isinstance(name, str) and name else f"object {raw_id}"
        spec = self.check(ObjectSettings, item, label, ignore=("source", "destination", "checks", "streaming"))
        right = spec is not None
        if spec is None:  # go on with the keys that are right, so every problem of the object is reported at once
            spec, _ = partial_settings(ObjectSettings, item, {"id": raw_id})
        streaming, streaming_right = self.streaming(item.get("streaming"), label, item.line_of("streaming"))
        spec = msgspec.structs.replace(spec, streaming=streaming)
        right = right and streaming_right
        raw_stage = item.get("stage")
        stage_name = spec.stage or (raw_stage if isinstance(raw_stage, str) else None)
        if stage_name is None:
            stage = stage_for_id(raw_id, stages)
            if stage is None:
                ranges = ", ".join(f"{s.name} {s.describe_ids()}" for s in stages)
                self.problem(f"{label} matches no stage ({ranges}); set its 'stage' or change the stage id ranges", line)
                return None
            stage_name = stage.name
        work = [key for key in ("source", "sql", "python", "pyspark") if item.get(key) is not None]
        if len(work) > 1:
            self.problem(f"{label}: give only one of source, sql, python, pyspark (got {', '.join(work)})", line)
        engine = self.object_engine(spec, work, label, item.line_of("engine") or line)
        for key in ("sql", "python", "pyspark"):
            if key in item:
                self.engine(key, item, label, engine)
        if engine is not None and spec.partition_by:
            self.problem(
                f"{label}: partition_by is not supported on engine {engine} objects yet (Spark writes one parts folder); "
                "partition a child object run by DuckDB instead",
                item.line_of("partition_by"),
            )
        parents = spec.parents if isinstance(spec.parents, list) else [] if spec.parents is None else [spec.parents]
        if spec.streaming is not None:
            self.streaming_object(item, spec, label, engine)
        elif isinstance(item.get("source"), YamlMap) and item["source"].get("topics"):
            self.problem(
                f"{label}: a batch kafka source reads one topic ('topic'); 'topics' is for streaming objects "
                "(add streaming: {trigger: ...}) or give each topic an object of its own",
                item["source"].line_of("topics"),
            )
        source = self.source(item.get("source"), label, item.line_of("source"))
        destination = self.destination(item.get("destination"), label, item.line_of("destination"))
        checks = read_checks(self, item.get("checks"), label, item.line_of("checks"))
        if not right:
            return None
        return ObjectSpec(
            id=raw_id,
            name=spec.name or f"obj_{raw_id}",
            stage=stage_name,
            parents=tuple(dict.fromkeys(parents)),
            origin=Origin(
                self.file,
                line,
                tuple(
                    (key, item.key_lines[key])
                    for key in ("sql", "source", "python", "pyspark", "engine", "destination")
                    if key in item.key_lines
                ),
            ),
            source=source,
            sql=spec.sql,
            python=spec.python,
            destination=destination,
            lake=spec.lake,
            metadata=plain(spec.metadata),
            pyspark=spec.pyspark,
            chosen_engine=engine,
            partition_by=tuple(spec.partition_by),
            streaming=spec.streaming,
            checks=checks,
            tags=tuple(dict.fromkeys(spec.tags)),
            criticality=spec.criticality,
        )

    def streaming(self, raw: Any, label: str, line: int | None) -> tuple[StreamingSettings | None, bool]:
        """An object's ``streaming:`` (None for a batch object) and whether it is right. Each key is checked on its
        own, ``trigger``, ``window`` and ``compact`` at their options' lines; with a problem, the settings of the
        keys that are right, so the object's other checks still run and every problem is reported at once."""
        if raw is None:
            return None, True
        mapping = self.mapping(raw, f"{label}: streaming", line, "{trigger: 10s}")
        if mapping is None:
            return StreamingSettings(), False
        wrong: list[str] = []
        for key, nested, placeholder in (
            ("trigger", TriggerSettings, {}),
            ("window", WindowOptions, None),  # its checks are across keys (slide and type, aggregates and group_by)
            ("compact", CompactSettings, {}),
        ):
            block = mapping.get(key)
            if (
                isinstance(block, YamlMap)
                and self.check(nested, block, f"{label}: streaming: {key}", what="option", placeholder=placeholder) is None
            ):
                wrong.append(key)
        settings = self.check(
            StreamingSettings, mapping, f"{label}: streaming", ignore=tuple(wrong), what="option", placeholder={}
        )
        if settings is not None and not wrong:
            return settings, True
        return partial_settings(StreamingSettings, mapping, {})[0], False

    def streaming_object(self, item: YamlMap, spec: ObjectSettings, label: str, engine: str | None = None) -> None:
        """A streaming object reads a Kafka source and nothing else, into the lake (docs/streaming.md); on
        ``engine: spark`` its records' schema is declared (Spark parses with it, docs/engines.md)."""
        line = item.line_of("streaming")
        source = item.get("source")
        options = flatten_options(source) if isinstance(source, YamlMap) else {}
        if options.get("type") != "kafka":
            self.problem(f"{label}: a streaming object needs a source of type kafka (source: {{type: kafka, topic: ...}})", line)
        elif engine == "spark" and not options.get("schema"):
            self.problem(
                f"{label}: engine: spark needs the records' schema declared (source: schema: {{column: type}}); "
                "drop engine: spark to infer it on Sluice's micro-batcher",
                item.line_of("engine") or line,
            )
        schema = options.get("schema")
        if engine == "spark" and isinstance(schema, YamlMap):
            for column, zone in zoned_columns(schema):
                self.problem(
                    f"{label}: source: schema: column {column!r} is in time zone {zone}, but engine: spark writes "
                    "time-zone-aware timestamps in UTC: declare it timestamp[<unit>, tz=UTC], or drop engine: spark "
                    "to keep the zone on Sluice's micro-batcher",
                    schema.line_of(column),
                )
        if engine == "spark":
            block = item.get("streaming")
            given = [f"streaming: {k}" for k in ("window", "max_batch_bytes") if isinstance(block, YamlMap) and k in block]
            given += ["source: group"] if "group" in options else []
            for key in given:
                self.problem(
                    f"{label}: {key} is not supported on engine: spark (Spark Structured Streaming); "
                    "drop it, or drop engine: spark to run the object on Sluice's micro-batcher (docs/engines.md)",
                    item.line_of("engine") or line,
                )
        for key in ("sql", "python", "pyspark", "parents", "partition_by"):
            if item.get(key):
                self.problem(
                    f"{label}: a streaming object takes no {key!r}"
                    + (" (write it under streaming: sql, run on each micro-batch)" if key == "sql" else ""),
                    item.line_of(key),
                )
        if not spec.lake:
            self.problem(f"{label}: a streaming object's micro-batches go to the lake; drop 'lake: false'", item.line_of("lake"))
        if item.get("destination") is not None:
            name = spec.name or f"obj_{spec.id}"
            self.problem(
                f"{label}: a streaming object writes to the lake only, its destination would never be loaded; move "
                f"'destination' to a batch child object that reads the stream ({{id: ..., parents: [{spec.id}], "
                f"sql: SELECT * FROM {name}, destination: ...}}, loaded by sluice run; docs/streaming.md)",
                item.line_of("destination"),
            )
        if isinstance(options, YamlMap) and "batch_size" in options:
            self.problem(
                f"{label}: source: batch_size is for a batch kafka source; a streaming object's micro-batches are "
                "bounded by streaming: max_batch_records and max_batch_bytes: drop it",
                options.line_of("batch_size"),
            )
        sql = spec.streaming.sql if spec.streaming is not None else None
        if sql:
            from sqlglot.errors import ParseError

            from sluice.project.checks import sql_tables, syntax_error
            from sluice.streaming.settings import BATCH_TABLE

            try:
                others = [t for t in sql_tables(sql) if t.lower() != BATCH_TABLE]
            except ParseError as exc:
                self.problem(f"{label}: streaming: sql: {syntax_error(exc)}", line)
                return
            if others:
                self.problem(
                    f"{label}: streaming: sql reads {others[0]!r}; it runs on each micro-batch, "
                    f"which it reads as the table {BATCH_TABLE!r}",
                    line,
                )

    def object_engine(self, spec: ObjectSettings, work: list[str], label: str, line: int | None) -> str | None:
        """The engine of an object (None: the default), from its ``engine:`` or the project's; wrong pairs reported."""
        explicit = spec.engine is not None
        engine = self.engine_name(spec.engine, label, line) if explicit else None
        if spec.streaming is not None:  # Sluice's micro-batcher (the default) or Spark Structured Streaming
            if engine not in (None, "spark"):
                why = f"a streaming object runs on Sluice's micro-batcher or on engine: spark, not {engine}"
                self.problem(f"{label}: {why}", line)
                return None
            return engine
        if explicit and not {"sql", "pyspark", "python"} & set(work):
            self.problem(f"{label}: 'engine' applies to sql and pyspark objects; this one has no sql or pyspark", line)
            return None
        if "python" in work:
            if engine is not None:
                self.problem(
                    f"{label}: a python function runs in Sluice on Arrow tables, not on {engine}; "
                    "for a PySpark function write pyspark: module:function",
                    line,
                )
            return None
        if "pyspark" in work:
            if explicit and engine is None:
                self.problem(f"{label}: pyspark runs on Spark, not on {spec.engine}; drop 'engine' or use python:", line)
            return engine or "spark"
        if "sql" not in work:
            return None
        return engine if explicit else self.default_engine

    def engine(self, key: str, item: YamlMap, label: str, engine: str | None = None) -> None:
        """Check an object's ``sql:``, ``python:`` or ``pyspark:`` against its engine plugin's options."""
        plugin = self.plugin("engine", engine or key, f"{label}: {key}", item.line_of(key))
        if plugin is not None:
            only = YamlMap({key: item[key]})
            only.line, only.key_lines, only.duplicates = item.line_of(key), {}, []
            self.check(plugin.options, only, label, what="option")


def zoned_columns(schema: YamlMap) -> list[tuple[str, str]]:
    """The declared columns of ``schema`` that are timestamps in a time zone other than UTC, with their zone (types
    that do not parse are reported by the source's own checks)."""
    import pyarrow as pa

    from sluice.connectors.batching import arrow_type
    from sluice.errors import SluiceError

    found = []
    for column, kind in schema.items():
        try:
            arrow = arrow_type(str(kind))
        except SluiceError:
            continue
        if pa.types.is_timestamp(arrow) and arrow.tz not in (None, "UTC"):
            found.append((str(column), str(arrow.tz)))
    return found
