// The live event feed: the latest events first, at most MAX_ITEMS in the DOM. Events are queued as
// they arrive and rendered once per frame, so a burst of thousands costs one small DOM update.

import { clock, duration, el, number } from "./format.js";

const MAX_ITEMS = 200;

export class EventFeed {
  /** @param {HTMLOListElement} list @param {HTMLElement} counter */
  constructor(list, counter, nameOf) {
    this.list = list;
    this.counter = counter;
    this.nameOf = nameOf; // id -> object name
    this.queue = [];
    this.total = 0;
    this.frame = 0;
  }

  push(event) {
    this.queue.push(event);
    this.total++;
    if (this.queue.length > MAX_ITEMS) this.queue.splice(0, this.queue.length - MAX_ITEMS);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Show `events` (oldest first) below what the feed holds: what happened before the page loaded. */
  seed(events) {
    const room = MAX_ITEMS - this.list.childElementCount - this.queue.length;
    if (room <= 0 || events.length === 0) return;
    const fragment = document.createDocumentFragment();
    const shown = events.slice(-room);
    for (let i = shown.length - 1; i >= 0; i--) fragment.append(this.item(shown[i]));
    this.list.append(fragment);
    this.total += shown.length;
    this.counter.textContent = `${number(this.total)}`;
  }

  flush() {
    this.frame = 0;
    const fragment = document.createDocumentFragment();
    for (let i = this.queue.length - 1; i >= 0; i--) fragment.append(this.item(this.queue[i]));
    this.queue = [];
    this.list.prepend(fragment);
    while (this.list.childElementCount > MAX_ITEMS) this.list.lastElementChild.remove();
    this.counter.textContent = this.total > 0 ? `${number(this.total)}` : "";
  }

  item(event) {
    const ts = event.ts ? Date.parse(event.ts) : null;
    const subject =
      event.object_id === undefined
        ? el("span", { class: "subject", text: `run ${event.run_id}` })
        : el("span", { class: "subject" }, el("b", { text: String(event.object_id) }), ` ${this.nameOf(event.object_id)}`);
    return el(
      "li",
      { class: `event type-${event.type}`, "data-type": event.type },
      el("time", { text: clock(ts) }),
      el("span", { class: "event-type", text: label(event) }),
      subject,
      el("span", { class: "detail", text: detail(event), title: event.error ?? event.reason ?? null }),
    );
  }
}

function label(event) {
  if (event.type === "CheckFinished") return "check";
  return event.type.replace(/^Object|^Run/, (prefix) => (prefix === "Run" ? "Run " : "")).toLowerCase();
}

function detail(event) {
  switch (event.type) {
    case "RunStarted":
      return `${number(event.planned?.length ?? 0)} planned${event.fresh?.length ? `, ${number(event.fresh.length)} fresh` : ""}${event.force ? ", forced" : ""}`;
    case "RunFinished":
      return `${event.status} in ${duration(event.duration_s)}`;
    case "ObjectReady":
      return event.attempt > 1 ? `attempt ${event.attempt}` : "";
    case "ObjectStarted":
      return event.attempt > 1 ? `attempt ${event.attempt}` : (event.worker ?? "");
    case "ObjectLoaded":
      return `${number(event.rows)} rows · ${duration(event.duration_s)}`;
    case "ObjectFailed":
      return `attempt ${event.attempt}: ${event.error}`;
    case "ObjectSkipped":
      return event.reason ?? "";
    case "CheckFinished":
      return `${event.check}: ${event.status}${event.failing_rows ? ` · ${number(event.failing_rows)} failing rows` : ""}${event.severity === "warn" ? " (warn)" : ""}`;
    default:
      return "";
  }
}
