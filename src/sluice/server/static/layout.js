// Where each object of the DAG goes: one band per stage, columns by depth within the stage,
// objects ordered to reduce edge crossings (barycenter sweeps), tall columns wrapped.
// Pure functions: no DOM, no network.

export const NODE_W = 168;
export const NODE_H = 30;
const ROW_PITCH = 40; // the smallest; a short graph spreads its rows to fit the view's shape
const MAX_ROW_PITCH = 76;
const COLUMN_GAP = 52;
const STAGE_GAP = 20;
const BAND_PAD = 20;
export const HEADER_H = 44;
const SWEEPS = 3;

/**
 * @typedef {{id: number, name: string, stage: string, kind?: string, parents: number[], children?: number[]}} ObjectBrief
 * @typedef {{name: string, first_id?: number, last_id?: number}} Stage
 * @typedef {{id: number, name: string, stage: string, kind: string, parents: number[], children: number[], x: number, y: number}} Node
 * @typedef {{x: number, y0: number, ids: number[]}} Column
 * @typedef {{name: string, x0: number, x1: number, count: number}} Band
 * @typedef {{nodes: Map<number, Node>, columns: Column[], bands: Band[], edges: [number, number][], width: number,
 *   height: number, rowPitch: number}} Layout
 */

/**
 * Lay out `objects` (ObjectBrief from GET /objects) in the order of `stages`. `aspect` is the view's width
 * over its height: a graph wider than that spaces its rows out (up to MAX_ROW_PITCH) to fill the view.
 * @returns {Layout}
 */
export function layoutGraph(objects, stages, aspect = 1.6) {
  const nodes = new Map();
  for (const o of objects) {
    nodes.set(o.id, {
      id: o.id,
      name: o.name ?? String(o.id),
      stage: o.stage ?? "",
      kind: o.kind ?? "",
      parents: (o.parents ?? []).filter((p) => p !== o.id),
      children: [],
      x: 0,
      y: 0,
    });
  }
  const edges = [];
  for (const node of nodes.values()) {
    node.parents = node.parents.filter((p) => nodes.has(p));
    for (const p of node.parents) {
      nodes.get(p).children.push(node.id);
      edges.push([p, node.id]);
    }
  }
  const stageOrder = orderStages(nodes, stages);
  const levels = levelsByStage(nodes, stageOrder);
  orderLevels(levels, nodes);
  const maxRows = Math.max(12, Math.ceil(Math.sqrt(nodes.size / 0.35)));
  return place(levels, nodes, stageOrder, edges, maxRows, aspect);
}

function orderStages(nodes, stages) {
  const order = (stages ?? []).map((s) => s.name);
  for (const node of nodes.values()) {
    if (!order.includes(node.stage)) order.push(node.stage);
  }
  return order;
}

/** Topological order (Kahn); objects on a cycle (never valid in Sluice) are appended by id. */
function topologicalOrder(nodes) {
  const waiting = new Map();
  const queue = [];
  for (const node of nodes.values()) {
    waiting.set(node.id, node.parents.length);
    if (node.parents.length === 0) queue.push(node.id);
  }
  queue.sort((a, b) => a - b);
  const order = [];
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    order.push(id);
    for (const child of nodes.get(id).children) {
      const left = waiting.get(child) - 1;
      waiting.set(child, left);
      if (left === 0) queue.push(child);
    }
  }
  if (order.length < nodes.size) {
    const seen = new Set(order);
    for (const id of [...nodes.keys()].sort((a, b) => a - b)) if (!seen.has(id)) order.push(id);
  }
  return order;
}

/** For each stage in order, its levels: objects grouped by depth among parents of the same stage. */
function levelsByStage(nodes, stageOrder) {
  const depth = new Map();
  for (const id of topologicalOrder(nodes)) {
    const node = nodes.get(id);
    let d = 0;
    for (const p of node.parents) {
      if (nodes.get(p).stage === node.stage && depth.has(p)) d = Math.max(d, depth.get(p) + 1);
    }
    depth.set(id, d);
  }
  const levels = stageOrder.map(() => []);
  for (const node of nodes.values()) {
    const s = stageOrder.indexOf(node.stage);
    const d = depth.get(node.id);
    while (levels[s].length <= d) levels[s].push([]);
    levels[s][d].push(node.id);
  }
  return levels.map((stageLevels) => stageLevels.filter((level) => level.length > 0));
}

/** Barycenter heuristic: sort each level by the mean position of parents (down) or children (up). */
function orderLevels(levels, nodes) {
  const flat = levels.flat();
  const pos = new Map();
  const assign = (level) => level.forEach((id, i) => pos.set(id, (i + 0.5) / level.length));
  for (const level of flat) {
    level.sort((a, b) => a - b);
    assign(level);
  }
  const sortBy = (level, neighbours) => {
    const key = new Map();
    for (const id of level) {
      const known = neighbours(nodes.get(id)).filter((n) => pos.has(n));
      key.set(id, known.length ? known.reduce((sum, n) => sum + pos.get(n), 0) / known.length : pos.get(id));
    }
    level.sort((a, b) => key.get(a) - key.get(b) || a - b);
    assign(level);
  };
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    if (sweep % 2 === 0) {
      for (let i = 1; i < flat.length; i++) sortBy(flat[i], (n) => n.parents);
    } else {
      for (let i = flat.length - 2; i >= 0; i--) sortBy(flat[i], (n) => n.children);
    }
  }
}

/** Coordinates: a level taller than `maxRows` is spread row by row over several columns. */
function place(levels, nodes, stageOrder, edges, maxRows, aspect) {
  const columns = [];
  const bands = [];
  let x = BAND_PAD;
  let tallest = 1;
  for (let s = 0; s < stageOrder.length; s++) {
    const x0 = x - BAND_PAD;
    let count = 0;
    for (const level of levels[s]) {
      const width = Math.ceil(level.length / maxRows);
      const rows = Math.ceil(level.length / width);
      tallest = Math.max(tallest, rows);
      for (let c = 0; c < width; c++) {
        const ids = level.filter((_, i) => i % width === c);
        columns.push({ x, y0: 0, ids, rows });
        x += NODE_W + COLUMN_GAP;
      }
      count += level.length;
    }
    if (count === 0) continue;
    bands.push({ name: stageOrder[s], x0, x1: x - COLUMN_GAP + BAND_PAD, count });
    x += STAGE_GAP - COLUMN_GAP + 2 * BAND_PAD;
  }
  const width = bands.length ? bands[bands.length - 1].x1 : 0;
  const wanted = (width / Math.max(0.2, aspect) - HEADER_H - BAND_PAD) / tallest;
  const rowPitch = Math.round(Math.min(MAX_ROW_PITCH, Math.max(ROW_PITCH, wanted)));
  const height = HEADER_H + tallest * rowPitch + BAND_PAD;
  for (const column of columns) {
    // Centre each column vertically on the tallest one.
    column.y0 = HEADER_H + Math.round(((tallest - column.rows) * rowPitch) / 2);
    column.ids.forEach((id, row) => {
      const node = nodes.get(id);
      node.x = column.x;
      node.y = column.y0 + row * rowPitch;
    });
  }
  return { nodes, columns, bands, edges, width, height, rowPitch };
}

/** The id of the node at world point (wx, wy), or null. Columns are sorted by x. */
export function nodeAt(layout, wx, wy) {
  const columns = layout.columns;
  let lo = 0;
  let hi = columns.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const column = columns[mid];
    if (wx < column.x) hi = mid - 1;
    else if (wx > column.x + NODE_W) lo = mid + 1;
    else {
      const row = Math.floor((wy - column.y0) / layout.rowPitch);
      if (row < 0 || row >= column.ids.length || wy - column.y0 - row * layout.rowPitch > NODE_H) return null;
      return column.ids[row];
    }
  }
  return null;
}
