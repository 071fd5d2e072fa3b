// The object panel: one object's state in the run shown (live), its data-quality checks' results, its
// definition and a sample of its last output (GET /objects/{id}).

import { getJSON } from "./api.js";
import { clock, duration, el, number } from "./format.js";
import { FINAL, LABELS, checkState } from "./run_state.js";

export class ObjectPanel {
  constructor(panel, title, body, closeButton, { stateOf, checksOf, nodeOf, onPick, onClose, online }) {
    this.panel = panel;
    this.title = title;
    this.body = body;
    this.stateOf = stateOf; // id -> {run, state} for the run shown, or null
    this.checksOf = checksOf; // id -> its check results in the run shown ([] without any)
    this.nodeOf = nodeOf; // id -> layout node
    this.onPick = onPick; // open another object
    this.online = online; // false: no server to ask (the offline harness)
    this.id = null;
    this.detail = null;
    this.detailError = null;
    this.fetchedFinal = false;
    this.request = 0;
    closeButton.addEventListener("click", () => onClose());
  }

  open(id) {
    this.id = id;
    this.detail = null;
    this.detailError = null;
    this.panel.hidden = false;
    this.fetchedFinal = FINAL.has(this.stateOf(id)?.state.status);
    this.load();
    this.render();
  }

  close() {
    this.id = null;
    this.panel.hidden = true;
  }

  /** The object's state changed in the run shown: re-render, and re-read its output once it is final. */
  refresh() {
    if (this.id === null) return;
    const final = FINAL.has(this.stateOf(this.id)?.state.status);
    if (final && !this.fetchedFinal) {
      this.fetchedFinal = true;
      this.load();
    }
    this.render();
  }

  async load() {
    if (!this.online) return;
    const id = this.id;
    const request = ++this.request;
    try {
      const detail = await getJSON(`/objects/${id}`);
      if (request !== this.request) return;
      this.detail = detail;
      this.detailError = null;
    } catch (error) {
      if (request !== this.request) return;
      this.detailError = error.message;
    }
    this.render();
  }

  render() {
    const id = this.id;
    const node = this.nodeOf(id);
    if (!node) return;
    this.title.replaceChildren(el("span", { class: "object-id", text: String(id) }), ` ${node.name}`);
    const shown = this.stateOf(id);
    const last = this.detail?.last_state ?? null;
    const sections = [];
    sections.push(this.stateSection(node, shown, last));
    sections.push(this.checksSection(shown ? this.checksOf(id) : (last?.checks ?? [])));
    sections.push(this.linksSection("Parents", node.parents));
    sections.push(this.linksSection("Children", node.children));
    sections.push(this.metadataSection());
    sections.push(this.sampleSection());
    if (this.detail?.definition) {
      sections.push(
        el("details", { class: "definition" }, el("summary", { text: "Definition" }), el("pre", { text: JSON.stringify(this.detail.definition, null, 2) })),
      );
    }
    if (this.detailError) sections.push(el("p", { class: "panel-error", text: this.detailError }));
    this.body.replaceChildren(...sections.filter((section) => section)); // an empty section is null, not the text "null"
  }

  stateSection(node, shown, last) {
    let s;
    let caption;
    if (shown) {
      s = shown.state;
      caption = `in run ${shown.run.runId}`;
    } else if (last) {
      s = {
        status: last.status,
        attempt: last.attempt,
        rows: last.rows,
        duration_s: last.duration_s,
        error: last.error,
        reason: last.reason,
        startedAt: last.started_at ? last.started_at * 1000 : null,
        finishedAt: last.finished_at ? last.finished_at * 1000 : null,
      };
      caption = `last run ${last.run_id ?? ""}: not planned in the run shown`;
    } else {
      s = null;
      caption = shown === null && this.detail ? "never run" : "";
    }
    const status = s?.status ?? null;
    let took = s?.duration_s ?? null;
    if (status === "running" && s.startedAt) took = (Date.now() - s.startedAt) / 1000;
    const rows = [
      ["Status", el("span", { class: `badge status-${status ?? "none"}`, "data-testid": "object-status", text: status ? LABELS[status] : "not planned" })],
      ["Stage", node.stage],
      ["Kind", this.detail?.kind ?? node.kind ?? "—"],
      ["Attempts", el("span", { "data-testid": "object-attempts", text: String(s?.attempt ?? 0) })],
      ["Duration", el("span", { "data-testid": "object-duration", text: status === "running" ? `${duration(took)} so far` : duration(took) })],
      ["Rows", el("span", { "data-testid": "object-rows", text: number(s?.rows ?? null) })],
      ["Started", clock(s?.startedAt ?? null)],
      ["Finished", clock(s?.finishedAt ?? null)],
    ];
    if (s?.worker) rows.push(["Worker", s.worker]);
    if (s?.reason) rows.push(["Reason", el("span", { "data-testid": "object-reason", text: s.reason })]);
    return el(
      "section",
      { class: "object-state" },
      el("p", { class: "caption", text: caption }),
      el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
      s?.error ? el("div", { class: "error-box" }, el("h3", { text: "Error" }), el("pre", { "data-testid": "object-error", text: s.error })) : null,
    );
  }

  /** The object's data-quality checks (CheckFinished events, or the JSON's `checks`): status, failing rows, sample. */
  checksSection(results) {
    if (!results.length) return null;
    const state = checkState(results);
    const rows = results.map((r) => {
      const shown = r.status === "failed" && r.severity === "warn" ? "warned" : r.status;
      return el(
        "tr",
        { "data-check": r.check, "data-status": shown },
        el("td", {}, el("span", { class: "check-name", text: r.check }), el("small", { text: `${r.kind}${r.severity === "warn" ? " · warn" : ""}` })),
        el("td", {}, el("span", { class: `badge check-${shown}`, text: shown })),
        el("td", { class: "num", "data-field": "failing_rows", text: number(r.failing_rows) }),
        el("td", { class: "check-sample", "data-field": "sample", title: r.message || null, text: sampleText(r) }),
      );
    });
    return el(
      "section",
      { class: "checks", "data-testid": "object-checks", "data-state": state },
      el("h3", { text: `Checks (${results.length})` }),
      el(
        "div",
        { class: "table-wrap" },
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, ...["Check", "Status", "Failing rows", "Sample"].map((c) => el("th", { text: c })))),
          el("tbody", {}, ...rows),
        ),
      ),
    );
  }

  linksSection(title, ids) {
    if (!ids.length) return null;
    return el(
      "section",
      { class: "links" },
      el("h3", { text: `${title} (${ids.length})` }),
      el(
        "div",
        { class: "chips" },
        ...ids.slice(0, 60).map((id) => {
          const status = this.stateOf(id)?.state.status ?? "none";
          return el("button", { type: "button", class: `chip status-${status}`, title: this.nodeOf(id)?.name, onclick: () => this.onPick(id), text: String(id) });
        }),
        ids.length > 60 ? el("span", { class: "more", text: `+${ids.length - 60} more` }) : null,
      ),
    );
  }

  /** The definition's other fields (Objets.json: URL, Format, Zone...), as they are written. */
  metadataSection() {
    const entries = Object.entries(this.detail?.metadata ?? {});
    if (!entries.length) return null;
    return el(
      "section",
      { class: "metadata" },
      el("h3", { text: "Metadata" }),
      el(
        "dl",
        { "data-testid": "object-metadata" },
        ...entries.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { "data-key": k, text: cell(v) })]),
      ),
    );
  }

  sampleSection() {
    const output = this.detail?.last_output;
    if (!this.detail) return el("p", { class: "caption", text: this.detailError || !this.online ? "" : "Loading…" });
    if (!output) return el("section", { class: "sample" }, el("h3", { text: "Sample rows" }), el("p", { class: "caption", text: "No output yet." }));
    const sample = output.sample ?? { columns: [], rows: [] };
    const dated = output.logical_date ? ` of logical date ${output.logical_date}; last loaded` : "";  // the plain output of a {{ ds }} object
    const caption = `${number(output.rows)} rows${dated} in run ${output.run_id ?? "—"}${output.location ? ` · ${output.location}` : ""}`;
    if (output.sample_error) {  // the output could not be read (a missing or damaged file, the lake away): say why
      return el(
        "section",
        { class: "sample" },
        el("h3", { text: "Sample rows" }),
        el("p", { class: "caption", text: caption }),
        el("div", { class: "error-box" }, el("h3", { text: "Cannot read the output" }), el("pre", { "data-testid": "object-sample-error", text: output.sample_error })),
      );
    }
    if (!sample.columns?.length) {
      return el("section", { class: "sample" }, el("h3", { text: "Sample rows" }), el("p", { class: "caption", text: `${caption}; no columns (no data).` }));
    }
    const table = el(
      "table",
      { "data-testid": "object-sample" },
      el("thead", {}, el("tr", {}, ...sample.columns.map((c) => el("th", { text: c })))),
      el("tbody", {}, ...sample.rows.map((row) => el("tr", {}, ...row.map((v) => el("td", { text: cell(v) }))))),
    );
    return el("section", { class: "sample" }, el("h3", { text: "Sample rows" }), el("p", { class: "caption", text: caption }), el("div", { class: "table-wrap" }, table));
  }
}

/** A check's sample keys, or why it has none (a check that could not run says why; a passed one has nothing). */
function sampleText(result) {
  if (result.sample.length) return result.sample.join(", ");
  return result.status === "passed" ? "—" : result.message || "—";
}

function cell(value) {
  if (value === null || value === undefined) return "∅";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
