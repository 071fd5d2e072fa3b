"""Deterministic layered no-op DAG shared by Sluice's benchmark and its peers."""

from __future__ import annotations

LAYER_ID_BASE = 1_000_000


def layered_dag(n_objects: int, layers: int = 3) -> dict[int, list[int]]:
    """Map object id -> parent ids for ``n_objects`` split into ``layers`` layers.

    Layer sizes differ by at most one (earlier layers get the extra objects).
    Object ``i`` of layer ``k`` has id ``1_000_000 * (k + 1) + i``. Layer 0 has
    no parents; object ``i`` of layer ``k > 0`` depends on positions
    ``i % p`` and ``(i + 1) % p`` of layer ``k - 1`` (``p`` its size), which is
    a single parent when ``p == 1``. Keys are in topological order.
    """
    if n_objects < 0:
        raise ValueError("n_objects must be >= 0")
    if layers < 1:
        raise ValueError("layers must be >= 1")
    if n_objects >= LAYER_ID_BASE:
        raise ValueError(f"n_objects must be < {LAYER_ID_BASE}")
    base, extra = divmod(n_objects, layers)
    dag: dict[int, list[int]] = {}
    prev: list[int] = []
    for k in range(layers):
        size = base + (1 if k < extra else 0)
        layer = [LAYER_ID_BASE * (k + 1) + i for i in range(size)]
        for i, oid in enumerate(layer):
            if not prev:
                dag[oid] = []
            elif len(prev) == 1:
                dag[oid] = [prev[0]]
            else:
                dag[oid] = [prev[i % len(prev)], prev[(i + 1) % len(prev)]]
        if layer:
            prev = layer
    return dag
