// The DAG on two stacked canvases: stage bands and edges below (redrawn when the view moves), nodes
// above (redrawn when a status changes). Redraws are coalesced: at most one per animation frame.
// Wheel zooms around the pointer, dragging pans, a click selects the node under the pointer.

import { FrameLoop } from "./frames.js";
import { HEADER_H, NODE_H, NODE_W, nodeAt } from "./layout.js";

export const COLOURS = {
  pending: { fill: "#e8edf3", edge: "#94a3b8" },
  ready: { fill: "#dbeafe", edge: "#3b82f6" },
  running: { fill: "#fef3c7", edge: "#d97706" },
  retrying: { fill: "#ffedd5", edge: "#ea580c" },
  loaded: { fill: "#dcfce7", edge: "#16a34a" },
  failed: { fill: "#fee2e2", edge: "#dc2626" },
  skipped: { fill: "#f3e8ff", edge: "#9333ea" },
  fresh: { fill: "#ccfbf1", edge: "#0d9488" }, // skipped as unchanged: its output is there, unlike a skip after a failure
  none: { fill: "#ffffff", edge: "#cbd5e1" },
};
// The badge on a node whose data-quality checks did not all pass (run_state.js checkState).
export const CHECK_BADGES = { failed: "#b91c1c", warned: "#f59e0b" };
const BADGE_R = 7; // world units, kept at least BADGE_MIN_PX on screen
const BADGE_MIN_PX = 3;
const TEXT = "#0f172a";
const MUTED = "#64748b";
const EDGE = "rgba(71, 85, 105, 0.22)";
const EDGE_HIGHLIGHT = "#0f172a";
const BAND_FILLS = ["#f8fafc", "#f1f5f9"];
const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const MIN_SCALE = 0.02;
const MAX_SCALE = 4;
const CLICK_SLOP_PX = 4;
const HEADER_SPACE_PX = 40;

export class DagView {
  /** @param {HTMLElement} host an element with a size; the canvases fill it. */
  constructor(host) {
    this.host = host;
    this.edgesCanvas = makeCanvas(host, "dag-edges");
    this.nodesCanvas = makeCanvas(host, "dag-nodes");
    this.nodesCanvas.tabIndex = 0;
    this.nodesCanvas.setAttribute("role", "img");
    this.nodesCanvas.setAttribute("aria-label", "The objects' graph, by stage, coloured by status");
    this.tooltip = document.createElement("div");
    this.tooltip.className = "dag-tooltip";
    this.tooltip.hidden = true;
    host.append(this.tooltip);
    this.layout = null;
    this.statusOf = () => null; // id -> status in the run shown, or null when the run does not plan it
    this.checkOf = () => null; // id -> "failed" | "warned" | "passed" | null: its checks in the run shown
    this.describe = (id) => String(id); // id -> tooltip text
    this.onSelect = () => {};
    this.selected = null;
    this.hovered = null;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.width = 0;
    this.height = 0;
    this.dpr = 1;
    this.edgesDirty = true;
    this.nodesDirty = true;
    this.frames = new FrameLoop(() => this.draw());
    this.fitted = false;
    this.autoFit = false; // the view is as fit() left it: re-fit when the size or an inset changes
    this.insetRight = 0; // pixels on the right an overlay (the object panel) covers
    this.listen();
    new ResizeObserver(() => this.resize()).observe(host);
    this.resize();
  }

  /** The view's width over its height (the layout spreads a short graph to this shape). */
  aspect() {
    return this.width > 1 && this.height > 1 ? this.width / Math.max(1, this.height - HEADER_SPACE_PX) : 1.6;
  }

  setLayout(layout) {
    this.layout = layout;
    this.selected = null;
    this.hovered = null;
    this.fitted = false;
    this.fit();
  }

  /** Statuses changed: redraw the nodes in the next frame. */
  invalidate() {
    this.nodesDirty = true;
    this.schedule();
  }

  /** A promise resolved once the next frame has been drawn. */
  nextFrame() {
    this.nodesDirty = true;
    return this.frames.nextFrame();
  }

  select(id) {
    this.selected = id;
    this.invalidate();
  }

  /** Keep the right `px` pixels free (an overlay such as the object panel covers them); re-fit a fitted view. */
  setInsetRight(px) {
    if (px === this.insetRight) return;
    this.insetRight = px;
    if (this.autoFit) this.fit();
  }

  /** The width of the view not covered by an overlay. */
  get visibleWidth() {
    return Math.max(this.width / 3, this.width - this.insetRight);
  }

  /** Show the whole graph in the part of the view no overlay covers. */
  fit() {
    if (!this.layout || this.width === 0) return;
    const margin = 16;
    const top = HEADER_SPACE_PX; // room for the stage names above the graph
    const width = this.visibleWidth;
    const sx = (width - 2 * margin) / Math.max(1, this.layout.width);
    const sy = (this.height - top - margin) / Math.max(1, this.layout.height - HEADER_H);
    this.scale = clamp(Math.min(sx, sy, 1.25), MIN_SCALE, MAX_SCALE);
    this.tx = (width - this.layout.width * this.scale) / 2;
    this.autoFit = true;
    const graphH = (this.layout.height - HEADER_H) * this.scale;
    this.ty = Math.max(top, (this.height - graphH) / 2) - HEADER_H * this.scale;
    this.fitted = true;
    this.viewChanged();
  }

  zoomBy(factor, cx = this.width / 2, cy = this.height / 2) {
    this.autoFit = false;
    const scale = clamp(this.scale * factor, MIN_SCALE, MAX_SCALE);
    this.tx = cx - ((cx - this.tx) * scale) / this.scale;
    this.ty = cy - ((cy - this.ty) * scale) / this.scale;
    this.scale = scale;
    this.viewChanged();
  }

  /** Centre the view on a node, zooming in enough to read it. */
  focus(id) {
    const node = this.layout?.nodes.get(id);
    if (!node) return;
    this.autoFit = false;
    this.scale = Math.max(this.scale, 0.9);
    this.tx = this.visibleWidth / 2 - (node.x + NODE_W / 2) * this.scale;
    this.ty = this.height / 2 - (node.y + NODE_H / 2) * this.scale;
    this.viewChanged();
  }

  /** The centre of a node in viewport (client) coordinates, or null when it is not in the graph. */
  clientPoint(id) {
    const node = this.layout?.nodes.get(id);
    if (!node) return null;
    const rect = this.nodesCanvas.getBoundingClientRect();
    return {
      x: rect.left + this.tx + (node.x + NODE_W / 2) * this.scale,
      y: rect.top + this.ty + (node.y + NODE_H / 2) * this.scale,
    };
  }

  /** A node's rectangle in viewport (client) coordinates, or null when it is not in the graph. */
  clientBox(id) {
    const node = this.layout?.nodes.get(id);
    if (!node) return null;
    const rect = this.nodesCanvas.getBoundingClientRect();
    return {
      left: rect.left + this.tx + node.x * this.scale,
      top: rect.top + this.ty + node.y * this.scale,
      width: NODE_W * this.scale,
      height: NODE_H * this.scale,
    };
  }

  /** The centre of an object's check badge in viewport (client) coordinates, or null. */
  clientBadge(id) {
    const node = this.layout?.nodes.get(id);
    if (!node) return null;
    const rect = this.nodesCanvas.getBoundingClientRect();
    const { x, y } = badgeCentre(node);
    return { x: rect.left + this.tx + x * this.scale, y: rect.top + this.ty + y * this.scale };
  }

  viewChanged() {
    this.edgesDirty = true;
    this.nodesDirty = true;
    this.schedule();
  }

  schedule(force = false) {
    if (force) this.nodesDirty = true;
    this.frames.request();
  }

  resize() {
    const rect = this.host.getBoundingClientRect();
    this.width = Math.max(1, Math.floor(rect.width));
    this.height = Math.max(1, Math.floor(rect.height));
    this.dpr = window.devicePixelRatio || 1;
    for (const canvas of [this.edgesCanvas, this.nodesCanvas]) {
      canvas.width = Math.round(this.width * this.dpr);
      canvas.height = Math.round(this.height * this.dpr);
      canvas.style.width = `${this.width}px`;
      canvas.style.height = `${this.height}px`;
    }
    if (!this.fitted || this.autoFit) this.fit();
    this.viewChanged();
  }

  draw() {
    if (this.edgesDirty) this.drawEdges();
    if (this.nodesDirty) this.drawNodes();
    this.edgesDirty = false;
    this.nodesDirty = false;
  }

  /** The world rectangle on screen, with a margin. */
  visibleWorld() {
    const pad = 8 / this.scale;
    return {
      x0: -this.tx / this.scale - pad,
      y0: -this.ty / this.scale - pad,
      x1: (this.width - this.tx) / this.scale + pad,
      y1: (this.height - this.ty) / this.scale + pad,
    };
  }

  worldTransform(ctx) {
    ctx.setTransform(this.dpr * this.scale, 0, 0, this.dpr * this.scale, this.dpr * this.tx, this.dpr * this.ty);
  }

  drawEdges() {
    const ctx = this.edgesCanvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.edgesCanvas.width, this.edgesCanvas.height);
    if (!this.layout) return;
    const { nodes, bands, edges, height } = this.layout;
    this.worldTransform(ctx);
    bands.forEach((band, i) => {
      ctx.fillStyle = BAND_FILLS[i % 2];
      ctx.fillRect(band.x0, 0, band.x1 - band.x0, height);
    });
    const view = this.visibleWorld();
    ctx.beginPath();
    for (const [from, to] of edges) {
      const a = nodes.get(from);
      const b = nodes.get(to);
      const x0 = a.x + NODE_W;
      const x1 = b.x;
      if (Math.max(x0, x1) < view.x0 || Math.min(x0, x1) > view.x1) continue;
      const y0 = a.y + NODE_H / 2;
      const y1 = b.y + NODE_H / 2;
      if (Math.max(y0, y1) < view.y0 || Math.min(y0, y1) > view.y1) continue;
      curve(ctx, x0, y0, x1, y1);
    }
    ctx.strokeStyle = EDGE;
    ctx.lineWidth = Math.max(1, 1.2 / this.scale) * (this.scale < 0.3 ? 0.6 : 1);
    ctx.stroke();
  }

  drawNodes() {
    const ctx = this.nodesCanvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.nodesCanvas.width, this.nodesCanvas.height);
    if (!this.layout) return;
    const visible = this.visibleNodes();
    const screenH = NODE_H * this.scale;
    this.worldTransform(ctx);
    this.drawHighlightedEdges(ctx);
    const byStatus = new Map();
    for (const node of visible) {
      const status = this.statusOf(node.id) ?? "none";
      let list = byStatus.get(status);
      if (!list) byStatus.set(status, (list = []));
      list.push(node);
    }
    const tiny = screenH < 7;
    const rounded = !tiny && visible.length < 800;
    const radius = 5;
    for (const [status, list] of byStatus) {
      const colour = COLOURS[status] ?? COLOURS.none;
      ctx.beginPath();
      for (const n of list) {
        if (rounded) ctx.roundRect(n.x, n.y, NODE_W, NODE_H, radius);
        else ctx.rect(n.x, n.y, NODE_W, NODE_H);
      }
      ctx.fillStyle = tiny ? colour.edge : colour.fill;
      ctx.fill();
      if (!tiny) {
        ctx.strokeStyle = colour.edge;
        ctx.lineWidth = 1 / this.scale;
        ctx.stroke();
        ctx.beginPath();
        for (const n of list) ctx.rect(n.x, n.y + 1, 4, NODE_H - 2);
        ctx.fillStyle = colour.edge;
        ctx.fill();
      }
    }
    this.drawMarks(ctx, screenH);
    if (screenH >= 15) this.drawLabels(ctx, visible);
    this.drawCheckBadges(ctx, visible, screenH);
    this.drawStageHeaders(ctx);
  }

  visibleNodes() {
    const view = this.visibleWorld();
    const out = [];
    for (const column of this.layout.columns) {
      if (column.x + NODE_W < view.x0 || column.x > view.x1) continue;
      const pitch = this.layout.rowPitch;
      const first = Math.max(0, Math.floor((view.y0 - column.y0 - NODE_H) / pitch));
      const last = Math.min(column.ids.length - 1, Math.ceil((view.y1 - column.y0) / pitch));
      for (let row = first; row <= last; row++) out.push(this.layout.nodes.get(column.ids[row]));
    }
    return out;
  }

  /** The selected (or hovered) node's edges, dark, under the nodes. */
  drawHighlightedEdges(ctx) {
    const id = this.selected ?? this.hovered;
    const node = id === null ? undefined : this.layout.nodes.get(id);
    if (!node) return;
    const { nodes } = this.layout;
    ctx.beginPath();
    for (const p of node.parents) {
      const a = nodes.get(p);
      curve(ctx, a.x + NODE_W, a.y + NODE_H / 2, node.x, node.y + NODE_H / 2);
    }
    for (const c of node.children) {
      const b = nodes.get(c);
      curve(ctx, node.x + NODE_W, node.y + NODE_H / 2, b.x, b.y + NODE_H / 2);
    }
    ctx.strokeStyle = EDGE_HIGHLIGHT;
    ctx.lineWidth = Math.max(1.5, 1.5 / this.scale);
    ctx.stroke();
  }

  /** A round badge on the top-right corner of each node whose checks failed (red) or warned (amber), with a "!"
   * when it is big enough to read. */
  drawCheckBadges(ctx, visible, screenH) {
    const byState = new Map();
    for (const node of visible) {
      const state = this.checkOf(node.id);
      if (!(state in CHECK_BADGES)) continue;
      let list = byState.get(state);
      if (!list) byState.set(state, (list = []));
      list.push(node);
    }
    if (!byState.size) return;
    const r = Math.max(BADGE_R, BADGE_MIN_PX / this.scale);
    for (const [state, list] of byState) {
      ctx.beginPath();
      for (const n of list) {
        const { x, y } = badgeCentre(n);
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
      ctx.fillStyle = CHECK_BADGES[state];
      ctx.fill();
    }
    if (screenH < 15) return;
    ctx.fillStyle = "#ffffff";
    ctx.font = `700 10px ${FONT}`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const list of byState.values()) for (const n of list) ctx.fillText("!", badgeCentre(n).x, badgeCentre(n).y + 0.5);
    ctx.textAlign = "start";
  }

  /** Rings around the selected and hovered nodes. */
  drawMarks(ctx, screenH) {
    const ring = (id, colour, width) => {
      const node = id === null ? undefined : this.layout.nodes.get(id);
      if (!node) return;
      const pad = Math.max(2, 3 / this.scale);
      ctx.beginPath();
      ctx.roundRect(node.x - pad, node.y - pad, NODE_W + 2 * pad, NODE_H + 2 * pad, 7);
      ctx.strokeStyle = colour;
      ctx.lineWidth = width / this.scale;
      ctx.stroke();
    };
    if (screenH > 0) {
      ring(this.hovered, "#475569", 1.5);
      ring(this.selected, "#0f172a", 2.5);
    }
  }

  drawLabels(ctx, visible) {
    ctx.textBaseline = "middle";
    const idFont = `600 12px ${FONT}`;
    const nameFont = `12px ${FONT}`;
    for (const n of visible) {
      const y = n.y + NODE_H / 2 + 0.5;
      const id = String(n.id);
      ctx.font = idFont;
      ctx.fillStyle = TEXT;
      ctx.fillText(id, n.x + 11, y);
      const idWidth = ctx.measureText(id).width;
      ctx.font = nameFont;
      ctx.fillStyle = this.statusOf(n.id) === null ? MUTED : "#334155";
      ctx.fillText(fit(ctx, n.name, NODE_W - idWidth - 26), n.x + 17 + idWidth, y);
    }
  }

  /** Stage names pinned to the top of the view, centred on their band. */
  drawStageHeaders(ctx) {
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.font = `600 11px ${FONT}`;
    ctx.textBaseline = "middle";
    ctx.textAlign = "center";
    for (const band of this.layout.bands) {
      const x0 = this.tx + band.x0 * this.scale;
      const x1 = this.tx + band.x1 * this.scale;
      if (x1 < 0 || x0 > this.width) continue;
      const cx = clamp((x0 + x1) / 2, Math.max(x0, 0) + 60, Math.min(x1, this.width) - 60);
      const label = `${band.name.toUpperCase()} · ${band.count}`;
      const y = Math.max(14, this.ty + HEADER_H * this.scale - 18);
      const w = ctx.measureText(label).width + 20;
      ctx.fillStyle = "rgba(255, 255, 255, 0.92)";
      ctx.beginPath();
      ctx.roundRect(cx - w / 2, y - 10, w, 20, 10);
      ctx.fill();
      ctx.fillStyle = MUTED;
      ctx.fillText(label, cx, y + 0.5);
    }
    ctx.textAlign = "start";
  }

  listen() {
    const canvas = this.nodesCanvas;
    let drag = null;
    canvas.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const rect = canvas.getBoundingClientRect();
        this.zoomBy(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), e.clientX - rect.left, e.clientY - rect.top);
      },
      { passive: false },
    );
    canvas.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, tx: this.tx, ty: this.ty, moved: false };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", (e) => {
      if (drag) {
        const dx = e.clientX - drag.x;
        const dy = e.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > CLICK_SLOP_PX) drag.moved = true;
        if (drag.moved) {
          this.autoFit = false;
          this.tx = drag.tx + dx;
          this.ty = drag.ty + dy;
          canvas.classList.add("panning");
          this.viewChanged();
        }
        return;
      }
      this.hover(e);
    });
    canvas.addEventListener("pointerup", (e) => {
      const wasClick = drag && !drag.moved;
      drag = null;
      canvas.classList.remove("panning");
      if (wasClick) {
        const id = this.idAt(e);
        if (id !== null) this.onSelect(id);
      }
    });
    canvas.addEventListener("pointerleave", () => this.setHovered(null, null));
    canvas.addEventListener("keydown", (e) => {
      const keys = { "+": () => this.zoomBy(1.25), "=": () => this.zoomBy(1.25), "-": () => this.zoomBy(0.8), 0: () => this.fit() };
      const pan = { ArrowLeft: [60, 0], ArrowRight: [-60, 0], ArrowUp: [0, 60], ArrowDown: [0, -60] }[e.key];
      if (keys[e.key]) keys[e.key]();
      else if (pan) {
        this.tx += pan[0];
        this.ty += pan[1];
        this.viewChanged();
      } else return;
      e.preventDefault();
    });
  }

  idAt(e) {
    if (!this.layout) return null;
    const rect = this.nodesCanvas.getBoundingClientRect();
    const wx = (e.clientX - rect.left - this.tx) / this.scale;
    const wy = (e.clientY - rect.top - this.ty) / this.scale;
    return nodeAt(this.layout, wx, wy);
  }

  hover(e) {
    this.setHovered(this.idAt(e), e);
  }

  setHovered(id, e) {
    this.nodesCanvas.style.cursor = id === null ? "" : "pointer";
    if (id === null) this.tooltip.hidden = true;
    else if (e) {
      const rect = this.host.getBoundingClientRect();
      this.tooltip.textContent = this.describe(id);
      this.tooltip.hidden = false;
      const x = Math.min(e.clientX - rect.left + 14, this.width - this.tooltip.offsetWidth - 8);
      this.tooltip.style.transform = `translate(${Math.max(8, x)}px, ${e.clientY - rect.top + 16}px)`;
    }
    if (id !== this.hovered) {
      this.hovered = id;
      this.invalidate();
    }
  }
}

function makeCanvas(host, className) {
  const canvas = document.createElement("canvas");
  canvas.className = className;
  host.append(canvas);
  return canvas;
}

function curve(ctx, x0, y0, x1, y1) {
  const dx = Math.max(24, (x1 - x0) / 2);
  ctx.moveTo(x0, y0);
  ctx.bezierCurveTo(x0 + dx, y0, x1 - dx, y1, x1, y1);
}

function clamp(value, lo, hi) {
  return Math.min(hi, Math.max(lo, value));
}

/** `text` cut with an ellipsis to fit `width` pixels in the context's font. */
function fit(ctx, text, width) {
  if (width <= 0) return "";
  if (ctx.measureText(text).width <= width) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ctx.measureText(`${text.slice(0, mid)}…`).width <= width) lo = mid;
    else hi = mid - 1;
  }
  return lo === 0 ? "" : `${text.slice(0, lo)}…`;
}

/** Where a node's check badge sits: astride its top-right corner, clear of its label. */
function badgeCentre(node) {
  return { x: node.x + NODE_W - 2, y: node.y + 2 };
}
