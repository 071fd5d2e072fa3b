"""A small dependency graph of integer object ids. No I/O, no dependencies.

>>> g = Graph({1: [], 2: [1], 3: [1, 2]})
>>> g.topological_order()
[1, 2, 3]
>>> sorted(g.ancestors([3]))
[1, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class Graph:
    """Objects and their parents. Parents not present as nodes are reported by :meth:`unknown_parents`."""

    def __init__(self, parents: Mapping[int, Iterable[int]]) -> None:
        self.parents: dict[int, tuple[int, ...]] = {node: tuple(ps) for node, ps in parents.items()}
        self.children: dict[int, list[int]] = {node: [] for node in self.parents}
        for node, ps in self.parents.items():
            for parent in ps:
                if parent in self.children:
                    self.children[parent].append(node)

    def __contains__(self, node: object) -> bool:
        return node in self.parents

    def __len__(self) -> int:
        return len(self.parents)

    def unknown_parents(self) -> list[tuple[int, int]]:
        """``(object, parent)`` pairs whose parent is not an object of the graph."""
        return [(node, p) for node, ps in self.parents.items() for p in ps if p not in self.parents]

    def find_cycle(self) -> list[int] | None:
        """One cycle as a path ``[a, b, ..., a]`` (each an ancestor of the next), or None."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.parents, white)
        for start in sorted(self.parents):
            if color[start] != white:
                continue
            stack: list[tuple[int, int]] = [(start, 0)]
            path = [start]
            color[start] = grey
            while stack:
                node, index = stack[-1]
                kids = self.children[node]
                if index < len(kids):
                    stack[-1] = (node, index + 1)
                    child = kids[index]
                    if color[child] == grey:
                        return [*path[path.index(child) :], child]
                    if color[child] == white:
                        color[child] = grey
                        stack.append((child, 0))
                        path.append(child)
                else:
                    color[node] = black
                    stack.pop()
                    path.pop()
        return None

    def topological_order(self, nodes: Iterable[int] | None = None) -> list[int]:
        """Kahn's order of ``nodes`` (default all), ties broken by id. The graph must be acyclic."""
        subset = set(self.parents if nodes is None else nodes)
        pending = {n: sum(1 for p in self.parents[n] if p in subset) for n in subset}
        ready = sorted(n for n, count in pending.items() if count == 0)
        order: list[int] = []
        while ready:
            batch, ready = ready, []
            for node in batch:
                order.append(node)
                for child in self.children[node]:
                    if child in pending:
                        pending[child] -= 1
                        if pending[child] == 0:
                            ready.append(child)
            ready.sort()
        if len(order) != len(subset):
            raise ValueError("graph has a cycle; call find_cycle() first")
        return order

    def ancestors(self, nodes: Iterable[int]) -> set[int]:
        """Every node some of ``nodes`` depends on, directly or not (``nodes`` excluded unless reached)."""
        seen: set[int] = set()
        stack = [p for n in nodes for p in self.parents.get(n, ())]
        while stack:
            node = stack.pop()
            if node in seen or node not in self.parents:
                continue
            seen.add(node)
            stack.extend(self.parents[node])
        return seen

    def descendants(self, nodes: Iterable[int]) -> set[int]:
        """Every node that depends on some of ``nodes``, directly or not."""
        seen: set[int] = set()
        stack = [c for n in nodes for c in self.children.get(n, ())]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(self.children[node])
        return seen

    def leaves(self) -> list[int]:
        """Nodes no other node depends on."""
        return sorted(n for n, kids in self.children.items() if not kids)
