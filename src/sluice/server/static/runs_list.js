// The run list (GET /runs): most recent first; a click shows that run.

import { duration, el, number, shortRunId, when } from "./format.js";

export class RunsList {
  /** @param {HTMLOListElement} list */
  constructor(list, onPick) {
    this.list = list;
    this.onPick = onPick; // run id -> void
    this.runs = [];
    this.shown = null;
  }

  /** @param {object[]} runs RunSummary list from GET /runs */
  set(runs) {
    this.runs = runs;
    this.render();
  }

  /** Update one run in place (e.g. from its RunFinished event) until the next GET /runs. */
  update(runId, fields) {
    const index = this.runs.findIndex((run) => run.run_id === runId);
    if (index < 0) return;
    this.runs[index] = { ...this.runs[index], ...fields };
    this.list.children[index]?.replaceWith(this.item(this.runs[index]));
  }

  show(runId) {
    this.shown = runId;
    for (const button of this.list.querySelectorAll("button[data-run-id]")) {
      button.setAttribute("aria-current", button.dataset.runId === runId ? "true" : "false");
    }
  }

  render() {
    if (this.runs.length === 0) {
      this.list.replaceChildren(el("li", { class: "empty", text: "No runs yet: start one." }));
      return;
    }
    this.list.replaceChildren(...this.runs.map((run) => this.item(run)));
  }

  item(run) {
    const counts = run.counts ?? {};
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const parts = [];
    if (counts.loaded) parts.push(el("span", { class: "c-loaded", text: `${number(counts.loaded)} loaded` }));
    if (counts.failed) parts.push(el("span", { class: "c-failed", text: `${number(counts.failed)} failed` }));
    if (counts.skipped) parts.push(el("span", { class: "c-skipped", text: `${number(counts.skipped)} skipped` }));
    if (parts.length === 0) parts.push(el("span", { text: `${number(total)} planned` }));
    // An interrupted run's coordinator died: its time is when a later run marked it, not how long it ran
    const took =
      run.status === "running" ? "running…" : run.status === "interrupted" ? "interrupted" : duration(run.duration_s);
    return el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: "run",
          "data-run-id": run.run_id,
          "data-status": run.status,
          "aria-current": run.run_id === this.shown ? "true" : "false",
          onclick: () => this.onPick(run.run_id),
        },
        el("span", { class: `dot status-${run.status}`, title: run.coordinator_gone ? `${run.status} (coordinator gone)` : run.status }),
        el("span", { class: "run-id", text: shortRunId(run.run_id) }),
        el("span", { class: "run-when", text: `${when(run.started_at * 1000)} · ${took}` }),
        el("span", { class: "run-counts" }, ...parts),
      ),
    );
  }
}
