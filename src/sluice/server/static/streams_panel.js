// The Streams panel (GET /streams, polled every 2 s): per streaming object, its state, records/s, MB/s, lag per
// partition, last committed micro-batch, dead letters and late records. Hidden while the project has none.

import { el, number } from "./format.js";
import { PolledPanel } from "./polled_panel.js";

export const STREAMS_POLL_MS = 2000;

/** "12,345/s"; "—" when unknown (a streaming object run by another process). */
export function rate(value) {
  return value === null || value === undefined ? "—" : `${number(Math.round(value))}/s`;
}

/** "batch 17 · 250,000 rows · 12:00:01"; "—" before the first commit. */
export function lastBatch(batch) {
  if (!batch) return "—";
  const at = batch.at ? new Date(batch.at * 1000).toLocaleTimeString("en-GB", { hour12: false }) : "";
  return [`batch ${number(batch.batch)}`, `${number(batch.rows)} rows`, at].filter(Boolean).join(" · ");
}

/** "t/0 12 · t/1 0"; "—" when unknown. */
export function lagText(lag) {
  if (!lag || !lag.length) return "—";
  return lag.map((p) => `${p.topic}/${p.partition} ${number(p.records)}`).join(" · ");
}

export class StreamsPanel extends PolledPanel {
  /** @param {HTMLElement} section the panel (hidden while empty) @param {HTMLElement} body where streams go */
  constructor(section, body, onShown) {
    super(section, body, onShown, "/streams", STREAMS_POLL_MS, "streams");
  }

  /** @param {object[]} streams entries of GET /streams */
  render(streams) {
    const head = el(
      "tr",
      {},
      ...["object", "state", "records", "MB", "lag", "last batch", "dead letters", "late"].map((name) => el("th", { text: name })),
    );
    const rows = streams.map((stream) =>
      el(
        "tr",
        { "data-testid": "stream", "data-stream": stream.name, title: stream.error || "" },
        el("td", { text: `${stream.id} ${stream.name}` }),
        el("td", {}, el("span", { class: "badge", "data-state": stream.state, text: stream.state })),
        el("td", { class: "num", text: rate(stream.records_per_s) }),
        el("td", { class: "num", text: stream.bytes_per_s == null ? "—" : `${(stream.bytes_per_s / 1e6).toFixed(1)}/s` }),
        el("td", { class: "num", text: lagText(stream.lag) }),
        el("td", { class: "num", text: lastBatch(stream.last_batch) }),
        el("td", { class: "num", text: number(stream.dead_letters) }),
        el("td", { class: "num", text: number(stream.late_records) }),
      ),
    );
    this.body.replaceChildren(el("table", { class: "sync-tables" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }
}
