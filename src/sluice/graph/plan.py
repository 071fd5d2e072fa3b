"""Planning: which objects a run needs, in which order, and which are fresh.

The plan is the targets plus all their ancestors, each once. An object is *fresh* when its
fingerprint (its definition, its input, its parents' content) equals the one of its last successful
run: it is skipped unless forced. Freshness known before the run (every ancestor fresh too) is
decided here; an object whose parent runs is decided when the parent's new output is known.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sluice.errors import ConfigError
from sluice.graph.dag import Graph
from sluice.project.model import ObjectSpec, Project
from sluice.state.base import LatestOutput


def fingerprint(definition_hash: str, input_fingerprint: str | None, parent_hashes: Iterable[str]) -> str:
    """The identity of one object's work: same definition, same input and same parents' content."""
    text = "|".join((definition_hash, input_fingerprint or "", *sorted(parent_hashes)))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class Plan:
    """``order`` lists every planned object in topological order; ``fresh`` those skipped as unchanged."""

    targets: list[int]
    order: list[int]
    fresh: dict[int, LatestOutput] = field(default_factory=dict)

    @property
    def to_run(self) -> list[int]:
        return [object_id for object_id in self.order if object_id not in self.fresh]


def project_graph(project: Project) -> Graph:
    return Graph({obj.id: obj.parents for obj in project.objects.values()})


def default_targets(project: Project) -> list[int]:
    """The final objects: those of the last stage, or the graph's leaves when that stage is empty."""
    last = project.stages[-1].name
    finals = sorted(obj.id for obj in project.objects.values() if obj.stage == last)
    return finals or project_graph(project).leaves()


def check_targets(project: Project, targets: Sequence[int]) -> None:
    for target in targets:
        left_out = project.left_out.get(target)
        if left_out is not None:
            raise ConfigError(
                f"target object {target} ({left_out.object.name}) is left out of every plan: {left_out.reason}; "
                "make it active (EtatObjet: actif) or choose another target"
            )
    unknown = [target for target in targets if target not in project.objects]
    if unknown:
        ids = ", ".join(str(t) for t in unknown)
        raise ConfigError(f"unknown target object id(s): {ids}; run 'sluice plan PATH' to see the project's objects")


def make_plan(
    project: Project,
    targets: Sequence[int] | None = None,
    *,
    latest: Mapping[int, LatestOutput] | None = None,
    force: bool = False,
    input_fingerprint: Callable[[ObjectSpec], str | None] | None = None,
    output_exists: Callable[[str], bool] | None = None,
    published: Callable[[ObjectSpec], bool] | None = None,
) -> Plan:
    """Plan a run of ``targets`` (default: the final objects).

    ``latest`` holds the last successful outputs; ``input_fingerprint`` describes an object's
    external input (None: unknown, so never fresh); ``output_exists`` checks a lake location and
    ``published`` that an object's destination table is still there.
    """
    chosen = sorted(set(targets)) if targets else default_targets(project)
    check_targets(project, chosen)
    graph = project_graph(project)
    needed = graph.ancestors(chosen) | set(chosen)
    order = graph.topological_order(needed)
    plan = Plan(targets=chosen, order=order)
    if force or not latest:
        return plan
    for object_id in order:
        obj = project.objects[object_id]
        previous = latest.get(object_id)
        if previous is None or any(parent not in plan.fresh for parent in obj.parents):
            continue
        source_fp = input_fingerprint(obj) if input_fingerprint else ""
        if source_fp is None:
            continue
        fp = fingerprint(obj.definition_hash(), source_fp, (plan.fresh[p].content_hash for p in obj.parents))
        if fp != previous.fingerprint:
            continue
        if previous.location and output_exists is not None and not output_exists(previous.location):
            continue
        if published is not None and not published(obj):
            continue
        plan.fresh[object_id] = previous
    return plan
