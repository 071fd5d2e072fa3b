// The Backfills panel (GET /backfills, polled every 5 s): per backfill, its status, range, how many dates
// succeeded, and one cell per logical date coloured by its status (hover: the date, its status and run).
// Hidden while the project has none.

import { el } from "./format.js";
import { PolledPanel } from "./polled_panel.js";

export const BACKFILLS_POLL_MS = 5000;

/** "3/31 succeeded · 1 failed · 2 running". */
export function countsText(counts, total) {
  const parts = [`${counts.succeeded || 0}/${total} succeeded`];
  for (const status of ["failed", "running"]) if (counts[status]) parts.push(`${counts[status]} ${status}`);
  return parts.join(" · ");
}

export class BackfillsPanel extends PolledPanel {
  /** @param {HTMLElement} section the panel (hidden while empty) @param {HTMLElement} body where backfills go */
  constructor(section, body, onShown) {
    super(section, body, onShown, "/backfills", BACKFILLS_POLL_MS, "backfills");
  }

  /** @param {object[]} backfills entries of GET /backfills */
  render(backfills) {
    const items = backfills.map((backfill) =>
      el(
        "article",
        { class: "sync backfill", "data-testid": "backfill", "data-backfill": backfill.backfill_id },
        el(
          "h3",
          { class: "sync-name" },
          el("span", { text: `${backfill.spec.from} → ${backfill.spec.to}` }),
          el("span", { class: "sync-direction", text: backfill.spec.schedule || "days" }),
          el("span", { class: "badge", "data-state": backfill.status, "data-testid": "backfill-state", text: backfill.status }),
        ),
        el("p", { class: "backfill-meta", text: `${backfill.backfill_id} · ${countsText(backfill.counts, backfill.dates.length)}` }),
        el(
          "div",
          { class: "backfill-dates" },
          ...backfill.dates.map((date) =>
            el("span", {
              class: "backfill-date",
              "data-testid": "backfill-date",
              "data-status": date.status,
              title: [date.logical_date, date.status, date.run_id, date.error].filter(Boolean).join(" · "),
            }),
          ),
        ),
      ),
    );
    this.body.replaceChildren(...items);
  }
}
