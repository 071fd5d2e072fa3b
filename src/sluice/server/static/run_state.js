// The state of every object in the run on screen, fed by live events and by snapshots (GET /runs/{id}).
// Merging is idempotent and monotonic per object: a state replaces another only when it is newer by
// (attempt, status rank), so a snapshot older than a buffered event never moves an object back; a retry
// (a new ObjectReady with a higher attempt) legitimately moves a retrying object back to ready.
// Final statuses (loaded, failed, skipped) never change within a run.

export const STATUSES = ["pending", "ready", "running", "retrying", "loaded", "failed", "skipped"];
export const FINAL = new Set(["loaded", "failed", "skipped"]);
/** Run statuses a RunFinished sets: the run does not change any more. */
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
export const LABELS = {
  pending: "waiting",
  ready: "ready",
  running: "running",
  retrying: "retrying",
  loaded: "loaded",
  failed: "failed",
  skipped: "skipped",
};
const RANK = { pending: 0, ready: 1, running: 2, retrying: 3, loaded: 4, failed: 4, skipped: 4 };
const DETAIL_FIELDS = ["rows", "duration_s", "error", "reason", "location", "worker", "readyAt", "startedAt", "finishedAt", "fresh"];
const FAILED_ANCESTOR = /^(?:parent|ancestor) (\d+) failed/;

/**
 * @typedef {{check: string, kind: string, severity: string, status: string, failing_rows: number, sample: string[],
 *   message: string, duration_s: number, attempt: number}} CheckResult
 */

/**
 * @typedef {{status: string, attempt: number, rows?: number|null, duration_s?: number|null, error?: string|null,
 *   reason?: string|null, location?: string|null, worker?: string, readyAt?: number|null, startedAt?: number|null,
 *   finishedAt?: number|null, fresh?: boolean}} ObjectRunState
 */

export class RunView {
  constructor(runId) {
    this.runId = runId;
    this.status = "running";
    this.startedAt = null; // ms since the epoch
    this.finishedAt = null;
    this.durationS = null;
    this.targets = [];
    /** @type {Map<number, ObjectRunState>} */
    this.objects = new Map();
    this.counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    this.changed = new Set(); // ids changed since the last takeChanged()
    /** @type {Map<number, Map<string, CheckResult>>} each object's data-quality check results, latest attempt only */
    this.checks = new Map();
  }

  get planned() {
    return this.objects.size;
  }

  get finalCount() {
    return this.counts.loaded + this.counts.failed + this.counts.skipped;
  }

  /** The objects the run planned: those not known yet start as pending, attempt 0. */
  plan(ids) {
    for (const id of ids) {
      if (!this.objects.has(id)) {
        this.objects.set(id, { status: "pending", attempt: 0 });
        this.counts.pending++;
        this.changed.add(id);
      }
    }
  }

  /** Merge one object's state; true when something changed. */
  merge(id, incoming) {
    let current = this.objects.get(id);
    if (current === undefined) {
      this.plan([id]);
      current = this.objects.get(id);
    }
    if (isNewer(current, incoming)) {
      this.counts[current.status]--;
      this.counts[incoming.status]++;
      const next = { status: incoming.status, attempt: incoming.attempt };
      // A new attempt starts clean; the same attempt keeps what earlier events said (e.g. startedAt).
      const keep = incoming.attempt === current.attempt || FINAL.has(incoming.status) ? current : {};
      for (const field of DETAIL_FIELDS) next[field] = incoming[field] ?? keep[field] ?? null;
      this.objects.set(id, next);
      this.changed.add(id);
      return true;
    }
    if (incoming.status === current.status && incoming.attempt === current.attempt) {
      let filled = false;
      for (const field of DETAIL_FIELDS) {
        if ((current[field] === undefined || current[field] === null) && incoming[field] !== undefined && incoming[field] !== null) {
          current[field] = incoming[field];
          filled = true;
        }
      }
      if (filled) this.changed.add(id);
      return filled;
    }
    return false;
  }

  /** Apply one bus event (docs/events.md) of this run; true when an object or the run changed. */
  applyEvent(event) {
    const ts = event.ts ? Date.parse(event.ts) : null;
    switch (event.type) {
      case "RunStarted":
        this.startedAt ??= ts;
        this.targets = event.targets ?? this.targets;
        this.plan(event.planned ?? []);
        return true;
      case "RunFinished":
        this.status = event.status;
        this.finishedAt = ts;
        this.durationS = event.duration_s ?? null;
        return true;
      case "ObjectReady":
        return this.merge(event.object_id, { status: "ready", attempt: event.attempt, readyAt: ts });
      case "ObjectStarted":
        return this.merge(event.object_id, { status: "running", attempt: event.attempt, startedAt: ts, worker: event.worker });
      case "ObjectLoaded":
        return this.merge(event.object_id, {
          status: "loaded",
          attempt: event.attempt,
          rows: event.rows,
          duration_s: event.duration_s,
          location: event.location,
          worker: event.worker,
          finishedAt: ts,
          error: null,
        });
      case "ObjectFailed":
        return this.merge(event.object_id, {
          status: failedStatus(event),
          attempt: event.attempt,
          error: event.error,
          duration_s: event.duration_s,
          worker: event.worker,
          finishedAt: ts,
        });
      case "ObjectSkipped":
        return this.applySkip(event, ts);
      case "CheckFinished":
        return this.addCheck(event.object_id, event);
      default:
        return false; // consumers ignore what they do not know
    }
  }

  applySkip(event, ts) {
    let changed = this.merge(event.object_id, {
      status: "skipped",
      attempt: event.attempt ?? 0,
      reason: event.reason,
      fresh: event.fresh ?? false,
      finishedAt: ts,
    });
    // A descendant skipped because of a failure means that failure was final.
    const match = FAILED_ANCESTOR.exec(event.reason ?? "");
    const failed = match ? this.objects.get(Number(match[1])) : undefined;
    if (failed !== undefined && failed.status === "retrying") {
      changed = this.merge(Number(match[1]), { status: "failed", attempt: failed.attempt }) || changed;
    }
    return changed;
  }

  /** Record one check's result (a CheckFinished event or an entry of a snapshot's `checks`); true when it is new. */
  addCheck(id, result) {
    let checks = this.checks.get(id);
    if (checks === undefined) this.checks.set(id, (checks = new Map()));
    const attempt = result.attempt ?? 0;
    let latest = 0;
    for (const r of checks.values()) latest = Math.max(latest, r.attempt);
    if (attempt < latest) return false; // a late result of an attempt already retried
    if (attempt > latest) checks.clear();
    const old = checks.get(result.check);
    if (old && old.status === result.status && old.failing_rows === result.failing_rows && old.attempt === attempt) return false;
    checks.set(result.check, {
      check: result.check,
      kind: result.kind ?? "",
      severity: result.severity ?? "error",
      status: result.status,
      failing_rows: result.failing_rows ?? 0,
      sample: result.sample ?? [],
      message: result.message ?? "",
      duration_s: result.duration_s ?? null,
      attempt,
    });
    this.changed.add(id);
    return true;
  }

  /** An object's check results in this run, in the order they came; [] without any. */
  checksOf(id) {
    const checks = this.checks.get(id);
    return checks ? [...checks.values()] : [];
  }

  /** What an object's badge says: "failed", "warned", "passed", or null when no check ran. */
  checkState(id) {
    return checkState(this.checksOf(id));
  }

  /** Merge a RunDetail (GET /runs/{id}); times there are Unix seconds. */
  applySnapshot(detail) {
    // A run that finished stays finished: RunFinished is published just before the state store records the end, so
    // a snapshot read in between still says "running". (An interrupted run may be resumed: running again.)
    const late = detail.status === "running" && ENDED.has(this.status);
    if (!late) this.status = detail.status ?? this.status;
    this.startedAt = seconds(detail.started_at) ?? this.startedAt;
    this.finishedAt = seconds(detail.finished_at) ?? this.finishedAt;
    this.durationS = detail.status === "running" ? this.durationS : (detail.duration_s ?? this.durationS);
    this.targets = detail.targets ?? this.targets;
    const objects = detail.objects ?? [];
    this.plan(objects.map((o) => o.object_id));
    for (const o of objects) {
      this.merge(o.object_id, {
        status: o.status,
        attempt: o.attempt ?? 0,
        rows: o.rows,
        duration_s: o.duration_s,
        error: o.error,
        reason: o.reason,
        fresh: o.fresh ?? false,
        location: o.location,
        readyAt: seconds(o.ready_at),
        startedAt: seconds(o.started_at),
        finishedAt: seconds(o.finished_at),
      });
      for (const result of o.checks ?? []) this.addCheck(o.object_id, result);
    }
  }

  /** The ids changed since the last call. */
  takeChanged() {
    const ids = this.changed;
    this.changed = new Set();
    return ids;
  }
}

/** "failed" when an error-severity check failed or could not run, "warned" when only warn ones did, "passed", or
 * null for no result (the same rule as the server's check_state). */
export function checkState(results) {
  if (!results.length) return null;
  const bad = results.filter((r) => r.status !== "passed");
  if (bad.some((r) => r.severity === "error")) return "failed";
  return bad.length ? "warned" : "passed";
}

/** Whether `incoming` supersedes `current` for one object of one run. */
export function isNewer(current, incoming) {
  if (FINAL.has(current.status)) return false;
  if (FINAL.has(incoming.status)) return true;
  if (incoming.attempt !== current.attempt) return incoming.attempt > current.attempt;
  return RANK[incoming.status] > RANK[current.status];
}

/** A failed attempt is followed by a retry when it is retryable, unless the event says it was the last. */
function failedStatus(event) {
  if (event.final === true || event.retryable === false) return "failed";
  return "retrying";
}

function seconds(value) {
  return typeof value === "number" ? value * 1000 : null;
}
