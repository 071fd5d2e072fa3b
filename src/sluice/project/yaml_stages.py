"""``stages:`` of ``sluice.yaml``: names, id ranges (``1000-1999``, ``3000+``, ``[low, high]``) that are not reversed
and do not overlap, each stage's options; naming only default stages overrides those (part of
:mod:`sluice.project.yaml_file`).
"""

from __future__ import annotations

import re
from typing import Any

from sluice.project.model import DEFAULT_STAGES, StageSpec
from sluice.project.settings import StageSettings
from sluice.project.yaml_reader import ReaderBase
from sluice.project.yaml_tree import YamlMap, duplicate_names

_STAGE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class StagesReader(ReaderBase):
    """Reads the ``stages:`` section."""

    def stages(self, raw: Any, line: int | None) -> tuple[StageSpec, ...]:
        if raw is None:
            return DEFAULT_STAGES
        mapping = self.mapping(raw, "'stages'", line, "{ingest: {ids: 1000-1999}}")
        if mapping is None:
            return DEFAULT_STAGES
        self.problems.extend(duplicate_names(mapping, "stage", self.file))
        defaults = {stage.name: stage for stage in DEFAULT_STAGES}
        result = []
        lines: dict[str, int | None] = {}
        for name, settings in mapping.items():
            where = mapping.line_of(name)
            if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
                self.problem(f"bad stage name {name!r}: use lower-case letters, digits, '_' or '-'", where)
                continue
            if settings is None:
                settings = YamlMap()
                settings.line, settings.key_lines, settings.duplicates = where, {}, []
            stage_map = self.mapping(settings, f"stage '{name}'", where, "{ids: 1000-1999, concurrency: 4}")
            checked = self.check(StageSettings, stage_map, f"stage '{name}'") if stage_map is not None else None
            if checked is None:
                continue
            base = defaults.get(name, StageSpec(name, None, None, layer=name))
            ids_line = stage_map.line_of("ids") if stage_map else where
            lines[name] = ids_line
            low, high = self.id_range(checked.ids, name, ids_line, base)
            result.append(
                StageSpec(
                    name=name,
                    min_id=low,
                    max_id=high,
                    concurrency=checked.concurrency or base.concurrency,
                    layer=checked.layer or base.layer,
                    delay_s=base.delay_s if checked.delay_s is None else checked.delay_s,
                )
            )
        if result and all(stage.name in defaults for stage in result):
            given = {stage.name: stage for stage in result}
            stages = tuple(given.get(stage.name, stage) for stage in DEFAULT_STAGES)
        else:
            stages = tuple(result) or DEFAULT_STAGES
        self.check_ranges(stages, lines, line)
        return stages

    def check_ranges(self, stages: tuple[StageSpec, ...], lines: dict[str, int | None], line: int | None) -> None:
        """A reversed id range, or two stages whose ranges overlap (an id would silently go to the first)."""
        for index, stage in enumerate(stages):
            where = lines.get(stage.name, line)
            if stage.min_id is not None and stage.max_id is not None and stage.min_id > stage.max_id:
                self.problem(f"stage '{stage.name}': ids {stage.describe_ids()} are reversed; write low-high", where)
                continue
            for other in stages[:index]:
                low = max(stage.min_id if stage.min_id is not None else -1, other.min_id if other.min_id is not None else -1)
                highs = [h for h in (stage.max_id, other.max_id) if h is not None]
                if not highs or low <= min(highs):
                    self.problem(
                        f"stage '{stage.name}': ids {stage.describe_ids()} overlap stage '{other.name}' "
                        f"({other.describe_ids()}); an object id must belong to one stage",
                        where,
                    )

    def id_range(self, raw: Any, name: str, line: int | None, base: StageSpec) -> tuple[int | None, int | None]:
        if raw is None:
            return base.min_id, base.max_id
        if isinstance(raw, list):
            if len(raw) == 2:
                return raw[0], raw[1]
        else:
            text = str(raw).replace(" ", "")
            if match := re.fullmatch(r"(\d+)\+", text):
                return int(match.group(1)), None
            if match := re.fullmatch(r"(\d+)-(\d+)", text):
                return int(match.group(1)), int(match.group(2))
        self.problem(f"stage '{name}': ids must look like '1000-1999', '3000+' or [low, high], got {raw!r}", line)
        return base.min_id, base.max_id
