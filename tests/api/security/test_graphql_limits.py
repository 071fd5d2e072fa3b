"""Depth, cost, persisted-query and batch limits on real graphql-core documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from graphql import GraphQLError, build_schema, get_introspection_query, parse, specified_rules, validate

from sluice.api.gate import DataApiError
from sluice.api.security import build_gate
from sluice.api.security.gate import SecurityGate
from sluice.errors import ConfigError

from .support import api_settings

SCHEMA = build_schema(
    """
    type Query {
      employes(limit: Int, offset: Int): [Employe!]!
      employe_par_id(id: Int!): Employe
      departements(first: Int): [Departement!]!
      stats_employes: Stats
    }
    type Mutation { create_employe(nom: String!): Employe }
    type Employe { id: Int! nom: String departement: Departement }
    type Departement { id: Int! nom: String employes(limit: Int): [Employe!]! }
    type Stats { count: Int avg_salaire: Float }
    """
)


def gate(project_dir: Path, **graphql: object) -> SecurityGate:
    built = build_gate(api_settings(limits={"graphql": graphql}), project_dir, f"sqlite:///{project_dir / 'state.db'}")
    assert isinstance(built, SecurityGate)
    return built


def errors(gate: SecurityGate, document: str) -> list[GraphQLError]:
    return validate(SCHEMA, parse(document), [*specified_rules, *gate.graphql_rules()])


def codes(gate: SecurityGate, document: str) -> list[str]:
    return [str((error.extensions or {}).get("code")) for error in errors(gate, document)]


def cost_of(project_dir: Path, document: str, max_rows: int = 1000) -> int:
    """The cost the rule computes, read from its error with a max_cost of 1."""
    found = errors(gate(project_dir, max_cost=1, max_rows=max_rows, max_depth=100), document)
    if not found:
        return 1
    extensions = found[0].extensions or {}
    assert extensions["code"] == "query-too-costly", found
    return int(extensions["cost"])


def test_depth_counts_nesting_through_fragments(project_dir: Path) -> None:
    deep = "{ departements(first: 1) { employes(limit: 1) { departement { employes(limit: 1) { id } } } } }"  # depth 5
    assert codes(gate(project_dir, max_depth=5), deep) == []
    assert codes(gate(project_dir, max_depth=4), deep) == ["query-too-deep"]
    with_fragments = """
        query Deep { departements(first: 1) { ...D } }
        fragment D on Departement { employes(limit: 1) { ... on Employe { departement { nom } } } }
    """  # departements > employes > departement > nom: 4
    assert codes(gate(project_dir, max_depth=4), with_fragments) == []
    found = errors(gate(project_dir, max_depth=3), with_fragments)
    assert [e.extensions["code"] for e in found if e.extensions] == ["query-too-deep"]
    assert "the query Deep is nested 4 levels deep; the most allowed is 3" in found[0].message


def test_cost_is_one_per_field_times_literal_limits(project_dir: Path) -> None:
    assert cost_of(project_dir, "{ employes(limit: 20) { id nom } }") == 1 + 20 * 2
    assert cost_of(project_dir, "{ employe_par_id(id: 1) { id nom departement { nom } } }") == 1 + 3 + 1
    nested = "{ departements(first: 5) { nom employes(limit: 10) { id nom } } }"
    assert cost_of(project_dir, nested) == 1 + 5 * (1 + 1 + 10 * 2)
    assert cost_of(project_dir, "{ a: stats_employes { count } b: stats_employes { count avg_salaire } }") == 2 + 3


def test_cost_of_a_list_without_literal_limit_is_max_rows(project_dir: Path) -> None:
    assert cost_of(project_dir, "{ employes { id nom } }", max_rows=500) == 1 + 500 * 2
    assert cost_of(project_dir, "query($n: Int) { employes(limit: $n) { id } }", max_rows=500) == 1 + 500
    assert cost_of(project_dir, "{ employes(limit: 100000) { id } }", max_rows=500) == 1 + 500  # capped


def test_cost_limit_refuses_and_admits(project_dir: Path) -> None:
    document = "{ employes(limit: 20) { id nom } }"  # 41
    assert codes(gate(project_dir, max_cost=41), document) == []
    assert codes(gate(project_dir, max_cost=40), document) == ["query-too-costly"]


def test_a_fragment_reused_many_times_is_counted_each_time_and_measured_once(project_dir: Path) -> None:
    """A "fragment bomb": 20 levels of fragments each spreading the next one twice would be 2^20 visits."""
    levels = 20
    fragments = [f"fragment F{i} on Employe {{ departement {{ id }} ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    fragments.append(f"fragment F{levels} on Employe {{ id }}")
    document = "{ employe_par_id(id: 1) { ...F0 } }\n" + "\n".join(fragments)
    # cost(F_n) = 1, cost(F_i) = 2 + 2 * cost(F_i+1)  ->  cost(F_0) = 2^20 + 2 * (2^20 - 1) = 3 * 2^20 - 2
    assert cost_of(project_dir, document) == 1 + 3 * 2**levels - 2


def test_fragment_cycles_do_not_hang_the_rules(project_dir: Path) -> None:
    document = "{ employe_par_id(id: 1) { ...A } } fragment A on Employe { id ...B } fragment B on Employe { nom ...A }"
    found = codes(gate(project_dir), document)
    assert "query-too-deep" not in found and "query-too-costly" not in found
    assert any("cannot spread fragment" in e.message.lower() for e in errors(gate(project_dir), document))


def test_graphiql_introspection_passes_the_default_limits(project_dir: Path) -> None:
    assert errors(gate(project_dir, max_depth=10, max_cost=50_000, max_rows=10_000), get_introspection_query()) == []


def test_each_operation_of_a_document_is_measured_on_its_own(project_dir: Path) -> None:
    document = "query Small { stats_employes { count } } query Big { employes(limit: 50) { id nom } }"
    found = errors(gate(project_dir, max_cost=50), document)
    assert [e.message.split(" costs")[0] for e in found] == ["the query Big"]
    assert codes(gate(project_dir, max_cost=50), 'mutation { create_employe(nom: "x") { id } }') == []


def test_persisted_queries_allow_only_their_documents(project_dir: Path) -> None:
    allowed = "query Liste { employes(limit: 10) { id nom } }"
    (project_dir / "persisted.json").write_text(json.dumps({"abc123": allowed}))
    only = gate(project_dir, persisted_queries_file="persisted.json")
    assert codes(only, allowed) == []
    assert codes(only, "# a comment\nquery Liste {\n  employes(limit: 10) {\n    id\n    nom\n  }\n}") == []
    assert codes(only, "query Liste { employes(limit: 11) { id nom } }") == ["query-not-allowed"]
    assert only.persisted_document("abc123") == allowed
    assert only.persisted_document("nope") is None
    assert gate(project_dir).persisted_document("abc123") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "JSON object"), ("{not json", "is not JSON"), ('{"q": "query {"}', "'q' does not parse")],
)
def test_a_bad_persisted_queries_file_is_a_config_error(project_dir: Path, content: str, message: str) -> None:
    (project_dir / "persisted.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        gate(project_dir, persisted_queries_file="persisted.json")


def test_batch_size(project_dir: Path) -> None:
    limited = gate(project_dir, max_batch=3)
    limited.check_batch(3)
    with pytest.raises(DataApiError) as caught:
        limited.check_batch(4)
    assert (caught.value.status, caught.value.code) == (400, "batch-too-large")
    assert "at most 3 operations; this one holds 4" in str(caught.value)
