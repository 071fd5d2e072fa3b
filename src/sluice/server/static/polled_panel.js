// A sidebar panel filled from a JSON endpoint polled at an interval (the Syncs, Streams, Schedules and Backfills
// panels), hidden while the answer lists nothing. Subclasses give `render(items)`.

import { pollJSON } from "./api.js";

export class PolledPanel {
  /**
   * @param {HTMLElement} section the panel (hidden while empty) @param {HTMLElement} body where the items go
   * @param {(shown: boolean) => void} onShown @param {string} path e.g. "/streams" @param {number} intervalMs
   * @param {string} key the list in the answer, e.g. "streams"
   */
  constructor(section, body, onShown, path, intervalMs, key) {
    this.section = section;
    this.body = body;
    this.onShown = onShown;
    this.path = path;
    this.intervalMs = intervalMs;
    this.key = key;
    this.stopPolling = null;
  }

  start() {
    this.stopPolling = pollJSON(this.path, this.intervalMs, (answer) => this.set(answer[this.key]));
  }

  stop() {
    this.stopPolling?.();
  }

  /** @param {object[]} items the answer's list */
  set(items) {
    const shown = items.length > 0;
    this.section.hidden = !shown;
    this.onShown?.(shown);
    this.render(items);
  }

  /** @param {object[]} items */
  render(items) {
    throw new Error(`${this.constructor.name} must render ${items.length} items`);
  }
}
