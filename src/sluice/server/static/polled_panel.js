// A sidebar panel filled from a polled GET route and hidden while the route lists nothing (Streams, Backfills).

import { pollJSON } from "./api.js";

export class PolledPanel {
  /**
   * @param {HTMLElement} section the panel (hidden while empty) @param {HTMLElement} body where entries go
   * @param {(shown: boolean) => void} onShown the sidebar makes room for the panel
   * @param {string} path the route @param {number} everyMs its poll period @param {string} field the list in its answer
   */
  constructor(section, body, onShown, path, everyMs, field) {
    this.section = section;
    this.body = body;
    this.onShown = onShown;
    this.route = { path, everyMs, field };
    this.stopPolling = null;
  }

  start() {
    const { path, everyMs, field } = this.route;
    this.stopPolling = pollJSON(path, everyMs, (answer) => this.set(answer[field]));
  }

  stop() {
    this.stopPolling?.();
  }

  /** Show the panel when ``entries`` is not empty; subclasses then draw them. */
  set(entries) {
    const shown = entries.length > 0;
    this.section.hidden = !shown;
    this.onShown?.(shown);
  }
}
