// The Sluice server API (docs/api.md): JSON requests and the live event stream.

export const EVENT_TYPES = ["RunStarted", "RunFinished", "ObjectReady", "ObjectStarted", "ObjectLoaded", "ObjectFailed", "ObjectSkipped", "CheckFinished"];
const RECONNECT_MS = 1000;

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function getJSON(path) {
  return request("GET", path);
}

/** GET ``path`` now and every ``everyMs`` after, handing each answer to ``onData``; a failed request is retried at
 * the next turn (the connection badge tells the user). Returns the function that stops it. */
export function pollJSON(path, everyMs, onData) {
  let timer = 0;
  const poll = async () => {
    try {
      onData(await getJSON(path));
    } catch {
      // the server is away: the next poll retries
    }
    timer = setTimeout(poll, everyMs);
  };
  poll();
  return () => clearTimeout(timer);
}

const TOKEN_KEY = "sluice.controlToken";

/** POST ``body`` to ``path``. The server may require its control token (SLUICE_CONTROL_TOKEN, docs/api.md): the
 * token kept for this tab is sent; on a 401 the user is asked for it once and the request is sent again. */
export async function postJSON(path, body) {
  try {
    return await request("POST", path, body, sessionStorage.getItem(TOKEN_KEY));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    const token = window.prompt("This server requires its control token (SLUICE_CONTROL_TOKEN) to start or cancel runs:");
    if (!token) throw error;
    sessionStorage.setItem(TOKEN_KEY, token);
    return request("POST", path, body, token);
  }
}

async function request(method, path, body, token = null) {
  let response;
  const headers = body === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `Cannot reach the Sluice server (${method} ${path}): is \`sluice serve\` still running?`, null);
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const message = payload?.error ?? `${method} ${path} answered ${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, payload);
  }
  return payload;
}

/**
 * GET /events/stream as Server-Sent Events. Reconnects by itself from the last id it saw, so no event
 * is lost or repeated across a dropped connection. `onEvent(event, id)` gets each event's JSON;
 * `onState("live" | "reconnecting")` the connection's state.
 */
export class EventStream {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = null;
    this.source = null;
    this.retry = 0;
  }

  /** Start after event `lastId` (null: with the events published from now on). */
  start(lastId) {
    this.lastId = lastId;
    this.connect();
  }

  connect() {
    const url = this.lastId === null ? "/events/stream" : `/events/stream?last_event_id=${encodeURIComponent(this.lastId)}`;
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => this.onState("live");
    source.onerror = () => {
      // Reopen ourselves from the last id seen, rather than rely on the browser's Last-Event-ID retry.
      source.close();
      if (this.source !== source) return;
      this.onState("reconnecting");
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.connect(), RECONNECT_MS);
    };
    const handle = (message) => {
      if (this.source !== source) return;
      if (message.lastEventId !== "") this.lastId = message.lastEventId;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not an event: ignore, as the stream's consumers must ignore what they do not know
      }
      this.onEvent(event, message.lastEventId);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
    source.onmessage = handle;
  }

  stop() {
    clearTimeout(this.retry);
    this.source?.close();
    this.source = null;
  }
}
