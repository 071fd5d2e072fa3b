// The Syncs panel (GET /syncs, polled every 2 s): per sync and table, state, position, lag, rows applied by
// operation, conflicts, dead letters and snapshot progress. Hidden while the project has no sync status.

import { PolledPanel } from "./polled_panel.js";
import { el, number } from "./format.js";

export const SYNCS_POLL_MS = 2000;
const OPERATIONS = [
  ["snapshot", "snap"],
  ["insert", "ins"],
  ["update", "upd"],
  ["delete", "del"],
  ["truncate", "trunc"],
];

/** "0.25 s", "1.2 min"; "—" when unknown. */
export function lag(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(0)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

/** "snap 100 · ins 3"; "—" when nothing was applied. */
export function applied(counts) {
  const parts = OPERATIONS.filter(([op]) => counts?.[op]).map(([op, label]) => `${label} ${number(counts[op])}`);
  return parts.length ? parts.join(" · ") : "—";
}

/** "80 / 100 (80%)", "100 (done)" or "—". */
export function snapshotProgress(table) {
  const rows = table.snapshot_rows ?? 0;
  const total = table.snapshot_total;
  if (!rows && !total) return "—";
  if (!total) return number(rows);
  return `${number(rows)} / ${number(total)} (${Math.min(100, Math.round((100 * rows) / total))}%)`;
}

export class SyncsPanel extends PolledPanel {
  /** @param {HTMLElement} section the panel (hidden while empty) @param {HTMLElement} body where syncs go */
  constructor(section, body, onShown) {
    super(section, body, onShown, "/syncs", SYNCS_POLL_MS, "syncs"); // onShown: the sidebar makes room for the panel
  }

  /** @param {object[]} syncs SyncStatus list from GET /syncs */
  render(syncs) {
    this.body.replaceChildren(...syncs.map((sync) => this.sync(sync)));
  }

  sync(sync) {
    const state = sync.stale ? "stale" : sync.state;
    const title = el(
      "h3",
      { class: "sync-name" },
      el("span", { text: sync.name }),
      el("span", { class: "sync-direction", text: sync.direction }),
      el("span", { class: "badge", "data-state": state, "data-testid": "sync-state", text: state }),
    );
    const error = sync.error ? el("p", { class: "sync-error", text: sync.error }) : null;
    const head = el(
      "tr",
      {},
      ...["table", "state", "position", "lag", "applied", "conflicts", "dead letters", "snapshot"].map((name) => el("th", { text: name })),
    );
    const rows = sync.tables.map((table) =>
      el(
        "tr",
        { "data-testid": "sync-table", "data-table": table.source_table, title: table.error || table.note || `${table.direction}` },
        el("td", { text: `${table.source_table} → ${table.target_table}` }),
        el("td", {}, el("span", { class: "badge", "data-state": table.state, text: table.state })),
        el("td", { class: "mono", text: table.position || "—" }),
        el("td", { class: "num", text: lag(table.lag_s) }),
        el("td", { class: "num", text: applied(table.applied) }),
        el("td", { class: "num", text: number(table.conflicts ?? 0) }),
        el("td", { class: "num", text: number(table.dead_letters ?? 0) }),
        el("td", { class: "num", text: snapshotProgress(table) }),
      ),
    );
    const table = el("table", { class: "sync-tables" }, el("thead", {}, head), el("tbody", {}, ...rows));
    return el("article", { class: "sync", "data-testid": "sync", "data-sync": sync.name }, title, error, table);
  }
}
