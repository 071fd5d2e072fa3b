// Sluice's web UI: wires the API, the live event stream, the DAG view and the panels.
//
// On load: GET /runs and GET /events/last (where the stream starts), the stream from there, GET /objects
// (the graph) and the latest run's snapshot GET /runs/{id}; then live events. Events and snapshots merge
// monotonically (run_state.js), so their order does not matter.
//
// `index.html?offline` skips the server entirely: the page waits for window.sluiceUI (the test and
// benchmark hook below) to feed it a graph and events.

import { ApiError, EventStream, getJSON, postJSON } from "./api.js";
import { DagView } from "./dag_view.js";
import { EventFeed } from "./event_feed.js";
import { duration, number, when } from "./format.js";
import { FrameLoop } from "./frames.js";
import { layoutGraph } from "./layout.js";
import { ObjectPanel } from "./object_panel.js";
import { RunView, STATUSES } from "./run_state.js";
import { RunsList } from "./runs_list.js";
import { SchedulesPanel } from "./schedules_panel.js";
import { StreamsPanel } from "./streams_panel.js";
import { BackfillsPanel } from "./backfills_panel.js";
import { SyncsPanel } from "./syncs_panel.js";

const RUNS_LIMIT = 50;
const FEED_REPLAY = 200; // events shown in the feed when a page loads
const PANEL_GAP_PX = 24; // the object panel's margin from the view's right edge, and some air
const REFRESH_DEBOUNCE_MS = 250;
const RETRY_RESOLVE_MS = 600;
const INFO_MESSAGE_MS = 6000;

const $ = (id) => document.getElementById(id);

class App {
  constructor({ offline }) {
    this.offline = offline;
    this.layout = null;
    this.run = null; // RunView of the run shown
    this.follow = true; // show each new run as it starts
    this.early = []; // events received before the graph was loaded
    this.loading = null; // the initial load in progress
    this.uiFrames = new FrameLoop(() => this.renderRun());
    this.timers = {};
    this.messageTimer = 0;

    this.dag = new DagView($("graph"));
    this.dag.statusOf = (id) => {
      const state = this.run?.objects.get(id);
      if (!state) return null;
      return state.status === "skipped" && state.fresh ? "fresh" : state.status; // drawn apart from skips after a failure
    };
    this.dag.checkOf = (id) => this.run?.checkState(id) ?? null;
    this.dag.describe = (id) => this.describe(id);
    this.dag.onSelect = (id) => this.select(id);
    this.feed = new EventFeed($("event-feed"), $("feed-count"), (id) => this.layout?.nodes.get(id)?.name ?? "");
    this.syncs = new SyncsPanel($("syncs"), $("sync-list"), (shown) => $("sidebar").classList.toggle("with-syncs", shown));
    this.streams = new StreamsPanel($("streams"), $("stream-list"), (shown) =>
      $("sidebar").classList.toggle("with-streams", shown),
    );
    this.schedules = new SchedulesPanel($("schedules"), $("schedule-list"), (shown) =>
      $("sidebar").classList.toggle("with-schedules", shown),
    );
    this.backfills = new BackfillsPanel($("backfills"), $("backfill-list"), () => this.sidebarRows());
    this.runsList = new RunsList($("run-list"), (runId) => this.pickRun(runId));
    this.panel = new ObjectPanel($("object-panel"), $("object-title"), $("object-body"), $("object-close"), {
      stateOf: (id) => {
        const state = this.run?.objects.get(id);
        return state ? { run: this.run, state } : null;
      },
      checksOf: (id) => this.run?.checksOf(id) ?? [],
      nodeOf: (id) => this.layout?.nodes.get(id),
      onPick: (id) => this.select(id, { focus: true }),
      onClose: () => this.select(null),
      online: !offline,
    });
    this.stream = new EventStream(
      (event) => this.onEvent(event),
      (state) => this.onConnection(state),
    );
    this.bindControls();
    setInterval(() => {
      if (this.run?.status === "running") this.scheduleUi();
    }, 1000);
  }

  /** One auto-sized row per panel shown above the runs (syncs, streams, schedules, backfills), then runs and feed. */
  sidebarRows() {
    const shown = ["syncs", "streams", "schedules", "backfills"].filter((id) => !$(id).hidden).length;
    $("sidebar").style.gridTemplateRows = $("backfills").hidden
      ? ""
      : `${"minmax(0, auto) ".repeat(shown)}minmax(120px, 30%) minmax(0, 1fr)`;
  }

  bindControls() {
    $("start-run").addEventListener("click", () => this.startRun());
    $("cancel-run").addEventListener("click", () => this.cancelRun());
    $("zoom-in").addEventListener("click", () => this.dag.zoomBy(1.25));
    $("zoom-out").addEventListener("click", () => this.dag.zoomBy(0.8));
    $("zoom-fit").addEventListener("click", () => this.dag.fit());
    $("find-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.find($("find-object").value);
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("object-panel").hidden) this.select(null);
    });
    $("message").addEventListener("click", () => this.setMessage(""));
  }

  // ---- loading -------------------------------------------------------------------------------

  async boot() {
    if (this.offline) {
      this.onConnection("offline");
      return;
    }
    this.syncs.start();
    this.streams.start();
    this.schedules.start();
    this.backfills.start();
    try {
      this.stream.start(await this.streamStart());
    } catch (error) {
      // The stream retries until the server answers; then the page loads (onConnection).
      this.setMessage(`${error.message} The page retries when the server is back.`, "error");
      this.stream.start(null);
      return;
    }
    await this.loadOnce();
  }

  /** The initial load, unless it is done or under way. */
  loadOnce() {
    if (this.layout) return Promise.resolve();
    this.loading ??= this.loadInitial().finally(() => (this.loading = null));
    return this.loading;
  }

  /** Where the stream starts: right after the latest event, so nothing published while loading is missed. */
  async streamStart() {
    const runs = await getJSON(`/runs?limit=${RUNS_LIMIT}`);
    this.runsList.set(runs.runs);
    if (runs.runs.length === 0) return "-1"; // nothing ran yet: every event from the first one
    try {
      const last = (await getJSON("/events/last")).id;
      this.feedFrom = last + 1; // the feed shows the events before the stream's first one (see loadInitial)
      return String(last);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return "-1"; // the bus dropped old events
      throw error;
    }
  }

  /** The feed after a (re)load: the events published just before the stream started, oldest at the bottom. */
  async fillFeed() {
    if (this.feedFrom === undefined) return;
    try {
      const recent = await getJSON(`/events/recent?before=${this.feedFrom}&limit=${FEED_REPLAY}`);
      this.feed.seed(recent.events.map((item) => item.event));
    } catch {
      // the feed starts empty; live events still arrive
    }
  }

  async loadInitial() {
    try {
      const [objects, runs] = await Promise.all([getJSON("/objects"), getJSON(`/runs?limit=${RUNS_LIMIT}`)]);
      this.loadGraph(objects.objects, objects.stages, objects.project);
      this.runsList.set(runs.runs);
      // ?run=<id> (the link of an alert, docs/alerts.md) opens that run and stops following new ones
      const linked = new URLSearchParams(location.search).get("run");
      if (linked) this.follow = false;
      const first = linked ?? runs.runs[0]?.run_id;
      const snapshot = !this.run && first ? this.showRun(first) : null;
      const early = this.early;
      this.early = [];
      for (const event of early) this.apply(event);
      if ($("message").dataset.kind === "error") this.setMessage("");
      await Promise.all([snapshot, this.fillFeed()]);
    } catch (error) {
      this.setMessage(`${error.message} The page retries when the server is back.`, "error");
    }
  }

  loadGraph(objects, stages, project = "") {
    this.layout = layoutGraph(objects, stages, this.dag.aspect());
    $("project-name").textContent = project;
    document.title = project ? `${project} · Sluice` : "Sluice";
    this.select(null);
    this.dag.setLayout(this.layout);
    this.scheduleUi();
  }

  async refreshRuns() {
    if (this.offline) return;
    try {
      const runs = await getJSON(`/runs?limit=${RUNS_LIMIT}`);
      this.runsList.set(runs.runs);
    } catch (error) {
      this.setMessage(error.message, "error");
    }
  }

  async loadSnapshot(runId) {
    if (this.offline) return;
    try {
      const detail = await getJSON(`/runs/${encodeURIComponent(runId)}`);
      if (this.run?.runId === runId) this.applySnapshot(detail);
    } catch (error) {
      this.setMessage(error.message, "error");
    }
  }

  /** Merge a run's snapshot (GET /runs/{id}) into the run shown. */
  applySnapshot(detail) {
    if (this.run?.runId !== detail.run_id) return;
    this.run.applySnapshot(detail);
    this.runsList.update(detail.run_id, { status: detail.status, duration_s: detail.duration_s, counts: detail.counts });
    this.changed();
  }

  /** Run `task` once, `ms` after the last of several calls with the same name. */
  debounce(name, ms, task) {
    clearTimeout(this.timers[name]);
    this.timers[name] = setTimeout(task, ms);
  }

  // ---- events --------------------------------------------------------------------------------

  onEvent(event) {
    this.feed.push(event);
    if (!this.layout) {
      this.early.push(event);
      return;
    }
    this.apply(event);
  }

  apply(event) {
    if (event.type === "RunStarted") {
      if (this.follow || !this.run) this.showRun(event.run_id, event);
      this.debounce("runs", REFRESH_DEBOUNCE_MS, () => this.refreshRuns());
    }
    if (event.type === "RunFinished") {
      const { status, duration_s, counts } = event;
      this.runsList.update(event.run_id, { status, duration_s, ...(counts ? { counts } : {}) });
      this.debounce("runs", REFRESH_DEBOUNCE_MS, () => this.refreshRuns());
    }
    const run = this.run;
    if (!run || event.run_id !== run.runId) return;
    if (run.applyEvent(event)) this.changed();
    if (event.type === "ObjectFailed" && run.objects.get(event.object_id)?.status === "retrying") {
      // Whether a retry follows is the coordinator's call: its state store says so.
      this.debounce("snapshot", RETRY_RESOLVE_MS, () => this.loadSnapshot(run.runId));
    }
    if (event.type === "RunFinished") this.loadSnapshot(run.runId);
  }

  onConnection(state) {
    const label = { live: "live", reconnecting: "reconnecting…", offline: "offline" }[state] ?? state;
    const node = $("connection");
    node.textContent = label;
    node.dataset.state = state;
    if (state === "live" && !this.layout && !this.offline) this.loadOnce();
    else if (state === "live" && this.wasDisconnected) {
      // Back after a drop (maybe a server restart): catch up on what the stream cannot replay.
      this.setMessage("");
      this.refreshRuns();
      if (this.run) this.loadSnapshot(this.run.runId);
    }
    this.wasDisconnected = state === "reconnecting";
  }

  /** Show a run: `started` is its RunStarted event when known. Resolved once its snapshot is merged. */
  showRun(runId, started = null) {
    let snapshot = Promise.resolve();
    if (this.run?.runId !== runId) {
      this.run = new RunView(runId);
      if (started) this.run.applyEvent(started);
      this.runsList.show(runId);
      snapshot = this.loadSnapshot(runId);
    }
    this.changed();
    return snapshot;
  }

  pickRun(runId) {
    this.follow = this.runsList.runs[0]?.run_id === runId;
    this.showRun(runId);
  }

  changed() {
    this.dag.invalidate();
    this.scheduleUi();
  }

  // ---- actions -------------------------------------------------------------------------------

  async startRun() {
    const button = $("start-run");
    button.disabled = true;
    try {
      const answer = await postJSON("/orchestrate", { targets: null, force: $("force").checked });
      this.follow = true;
      this.showRun(answer.run_id);
      this.setMessage("");
    } catch (error) {
      this.setMessage(error.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  async cancelRun() {
    const run = this.run;
    if (!run) return;
    $("cancel-run").disabled = true;
    try {
      await postJSON(`/runs/${encodeURIComponent(run.runId)}/cancel`, {});
      this.setMessage(`Cancelling run ${run.runId}…`, "info");
    } catch (error) {
      this.setMessage(error.message, "error");
      this.scheduleUi();
    }
  }

  select(id, { focus = false } = {}) {
    this.dag.select(id);
    if (id === null) {
      this.panel.close();
      this.dag.setInsetRight(0);
    } else {
      this.panel.open(id);
      this.dag.setInsetRight(PANEL_GAP_PX + $("object-panel").offsetWidth); // keep every stage in view beside the panel
      if (focus) this.dag.focus(id);
    }
  }

  find(text) {
    const query = text.trim().toLowerCase();
    if (!query || !this.layout) return;
    const byId = this.layout.nodes.get(Number(query));
    const node = byId ?? [...this.layout.nodes.values()].find((n) => n.name.toLowerCase().includes(query));
    if (node) this.select(node.id, { focus: true });
    else this.setMessage(`No object matches “${text}”: type an id (e.g. 2005) or part of a name.`, "error");
  }

  setMessage(text, kind = "info") {
    const node = $("message");
    clearTimeout(this.messageTimer);
    node.textContent = text;
    node.dataset.kind = kind;
    node.hidden = !text;
    if (text && kind === "info") this.messageTimer = setTimeout(() => (node.hidden = true), INFO_MESSAGE_MS);
  }

  describe(id) {
    const node = this.layout.nodes.get(id);
    const state = this.run?.objects.get(id);
    if (!state) return `${id} ${node.name} · not in this run`;
    const attempt = state.attempt > 1 ? ` · attempt ${state.attempt}` : "";
    const checks = this.run.checkState(id);
    return `${id} ${node.name} · ${state.status}${attempt}${checks ? ` · checks ${checks}` : ""}`;
  }

  // ---- per-frame rendering of the run header, counts and panel ----------------------------------

  scheduleUi() {
    this.uiFrames.request();
  }

  /** A promise resolved when the DAG and the panels have drawn the next frame. */
  nextFrame() {
    return Promise.all([this.uiFrames.nextFrame(), this.dag.nextFrame()]);
  }

  renderRun() {
    const run = this.run;
    const counts = run ? run.counts : Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const status of STATUSES) {
      setText($(`count-${status}`), number(counts[status]));
      $(`count-${status}`).parentElement.classList.toggle("zero", counts[status] === 0);
    }
    setText($("count-planned"), number(run ? run.planned : 0));
    let fresh = 0;
    if (run && run.counts.skipped > 0) for (const state of run.objects.values()) if (state.status === "skipped" && state.fresh) fresh++;
    setText($("count-fresh"), number(fresh));
    $("count-fresh").parentElement.classList.toggle("zero", fresh === 0);
    const status = $("run-status");
    if (!run) {
      setText($("run-label"), "No run yet");
      status.hidden = true;
      setText($("run-meta"), this.layout ? `${number(this.layout.nodes.size)} objects. Start a run to see it here, live.` : "Loading…");
      $("progress-bar").style.width = "0";
      $("cancel-run").disabled = true;
      return;
    }
    setText($("run-label"), `Run ${run.runId}`);
    status.hidden = false;
    setText(status, run.status);
    status.className = `badge status-${run.status}`;
    const elapsed = run.status === "running" ? (run.startedAt ? (Date.now() - run.startedAt) / 1000 : null) : run.durationS;
    const meta = [`started ${when(run.startedAt)}`, run.status === "running" ? `${duration(elapsed)} so far` : `took ${duration(elapsed)}`];
    meta.push(`${number(run.finalCount)} of ${number(run.planned)} done`);
    if (!this.follow) meta.push("not following new runs");
    setText($("run-meta"), meta.join(" · "));
    $("progress-bar").style.width = `${run.planned ? (100 * run.finalCount) / run.planned : 0}%`;
    $("cancel-run").disabled = run.status !== "running" || this.offline;
    const changed = run.takeChanged();
    if (changed.size > 0 && run.status === "running") this.runsList.update(run.runId, { counts: { ...run.counts } });
    const selected = this.panel.id;
    if (selected !== null) {
      const node = this.layout?.nodes.get(selected);
      const touched = changed.has(selected) || node?.parents.some((p) => changed.has(p)) || node?.children.some((c) => changed.has(c));
      if (touched || run.objects.get(selected)?.status === "running") this.panel.refresh();
    }
  }
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// ---- start, and the test / benchmark hook ------------------------------------------------------

const app = new App({ offline: new URLSearchParams(location.search).has("offline") });
const ready = app.boot();

window.sluiceUI = {
  /** Resolved once the page has loaded the graph, the runs and the latest run (or at once when offline). */
  ready,
  /** Replace the graph (ObjectBrief list and stages, as GET /objects gives them); resolved once drawn. */
  loadGraph(objects, stages, project = "") {
    app.loadGraph(objects, stages, project);
    return app.nextFrame();
  },
  /** Apply events (docs/events.md) as if they came from the stream; resolved once drawn. */
  applyEvents(events) {
    for (const event of events) app.onEvent(event);
    return app.nextFrame();
  },
  /** Merge a snapshot (GET /runs/{id}'s body) of the run shown; resolved once drawn. */
  applySnapshot(detail) {
    app.applySnapshot(detail);
    return app.nextFrame();
  },
  nextFrame: () => app.nextFrame(),
  /** The counts shown for the run on screen, plus `planned` and its `run_id`. */
  counts: () => (app.run ? { run_id: app.run.runId, status: app.run.status, planned: app.run.planned, ...app.run.counts } : null),
  statusOf: (id) => app.run?.objects.get(id)?.status ?? null,
  /** "failed", "warned", "passed" or null: what an object's data-quality checks say in the run shown. */
  checkStateOf: (id) => app.run?.checkState(id) ?? null,
  /** The viewport point at the centre of an object's check badge (drawn when its checks failed or warned). */
  badgePoint: (id) => app.dag.clientBadge(id),
  /** The viewport point at the centre of an object's node (for clicking it). */
  nodePoint: (id) => app.dag.clientPoint(id),
  /** An object's node in viewport coordinates: {left, top, width, height}, or null. */
  nodeBox: (id) => app.dag.clientBox(id),
  select: (id) => app.select(id, { focus: true }),
};
