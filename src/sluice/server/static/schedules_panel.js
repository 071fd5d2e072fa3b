// The Schedules panel (GET /schedules, polled every 5 s): per schedule, its cron and time zone, next fire time,
// and last run (logical date, status) or last missed tick. Hidden while the project has no schedules.

import { el } from "./format.js";
import { PolledPanel } from "./polled_panel.js";

export const SCHEDULES_POLL_MS = 5000;

/** "2026-01-02 02:00 UTC" from ISO text; "—" when absent. */
export function when(iso) {
  if (!iso) return "—";
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** The last tick as text: "2026-01-02 02:00 UTC succeeded", "… missed: reason", "never fired". */
export function lastText(schedule) {
  const tick = schedule.last_tick;
  if (tick && tick.status === "missed") return `${when(tick.logical_date)} missed`;
  const run = schedule.last_run;
  if (!run) return "never fired";
  return `${when(run.logical_date)} ${run.status ?? "starting"}`;
}

export class SchedulesPanel extends PolledPanel {
  /** @param {HTMLElement} section the panel (hidden while empty) @param {HTMLElement} body where schedules go */
  constructor(section, body, onShown) {
    super(section, body, onShown, "/schedules", SCHEDULES_POLL_MS, "schedules");
  }

  /** @param {object[]} schedules entries of GET /schedules */
  render(schedules) {
    const head = el("tr", {}, ...["schedule", "cron", "next", "last"].map((name) => el("th", { text: name })));
    const rows = schedules.map((schedule) => {
      const state = !schedule.enabled
        ? "disabled"
        : schedule.last_tick?.status === "missed"
          ? "missed"
          : (schedule.last_run?.status ?? "none");
      return el(
        "tr",
        { "data-testid": "schedule", "data-schedule": schedule.name, title: schedule.last_tick?.reason || "" },
        el("td", { text: schedule.name }),
        el("td", { text: `${schedule.cron} ${schedule.timezone}` }),
        el("td", { class: "num", text: schedule.enabled ? when(schedule.next[0]) : "disabled" }),
        el("td", {}, el("span", { class: "badge", "data-state": state, text: lastText(schedule) })),
      );
    });
    this.body.replaceChildren(el("table", { class: "sync-tables" }, el("thead", {}, head), el("tbody", {}, ...rows)));
  }
}
