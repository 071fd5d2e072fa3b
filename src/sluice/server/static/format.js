// Small formatting helpers shared by the panels.

/** "0.42 s", "12.3 s", "4 min 05 s", "1 h 02 min"; "—" when unknown. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** Local time of day, "14:03:27"; "—" when unknown. */
export function clock(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** "today 14:03", "3 Jan 14:03". */
export function when(ms) {
  if (ms === null || ms === undefined) return "—";
  const date = new Date(ms);
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return `today ${time}`;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

export function number(n) {
  return n === null || n === undefined ? "—" : n.toLocaleString("en-US");
}

/** A run id short enough for a list ("20250102-140327-a1b2c3d4" is kept whole). */
export function shortRunId(runId) {
  return runId.length > 24 ? `${runId.slice(0, 23)}…` : runId;
}

/** A DOM element with attributes (class, text, dataset via data-*) and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}
