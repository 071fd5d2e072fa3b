from __future__ import annotations

from itertools import pairwise

import pytest

from sluice.graph.dag import Graph


def test_topological_order_respects_parents() -> None:
    graph = Graph({3: [1, 2], 2: [1], 1: [], 4: [3, 1]})
    order = graph.topological_order()
    assert order == [1, 2, 3, 4]


def test_subset_order_and_ancestors() -> None:
    graph = Graph({1: [], 2: [1], 3: [2], 4: [1], 5: [4]})
    assert graph.ancestors([3]) == {1, 2}
    assert graph.topological_order({3, 2, 1}) == [1, 2, 3]
    assert graph.descendants([1]) == {2, 3, 4, 5}
    assert graph.leaves() == [3, 5]


def test_find_cycle_returns_closed_path() -> None:
    graph = Graph({1: [3], 2: [1], 3: [2], 4: []})
    cycle = graph.find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {1, 2, 3}
    for parent, child in pairwise(cycle):
        assert parent in graph.parents[child]


def test_acyclic_graph_has_no_cycle() -> None:
    assert Graph({1: [], 2: [1]}).find_cycle() is None


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        Graph({1: [2], 2: [1]}).topological_order()


def test_unknown_parents() -> None:
    assert Graph({1: [9]}).unknown_parents() == [(1, 9)]
