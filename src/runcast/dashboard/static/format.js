// How values are shown: statuses as text (colour is only a hint), times, JSON.

export const STATUSES = [
  "QUEUED", "RUNNING", "PAUSED", "WAITING", "WAITING_FOR_PAUSE",
  "ERRORED", "TERMINATED", "COMPLETE", "UNKNOWN",
];

export const TERMINAL = new Set(["ERRORED", "TERMINATED", "COMPLETE"]);

const LABELS = {
  QUEUED: "queued", RUNNING: "running", PAUSED: "paused", WAITING: "waiting to retry",
  WAITING_FOR_PAUSE: "pausing", ERRORED: "errored", TERMINATED: "terminated",
  COMPLETE: "complete", UNKNOWN: "unknown",
};

/** The words for a status. */
export function statusLabel(status) {
  return LABELS[status] ?? String(status).toLowerCase();
}

/** A status badge: its text says the status; the class only colours it. */
export function statusBadge(status, rawStatus) {
  const badge = document.createElement("span");
  badge.className = `status status-${String(status).toLowerCase()}`;
  badge.textContent = statusLabel(status);
  if (rawStatus && status === "UNKNOWN") badge.title = `upstream said: ${rawStatus}`;
  return badge;
}

const FULL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** A <time> element for an ISO timestamp (the clock only when it is today), or an em dash. */
export function timeElement(iso) {
  if (!iso) {
    const none = document.createElement("span");
    none.className = "muted";
    none.textContent = "—";
    return none;
  }
  const when = new Date(iso);
  const element = document.createElement("time");
  element.dateTime = iso;
  element.title = FULL.format(when);
  const today = when.toDateString() === new Date().toDateString();
  element.textContent = (today ? CLOCK : DAY).format(when);
  return element;
}

/** A duration in ms as "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min". */
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** JSON as indented text (undefined and null show as "null"). */
export function prettyJSON(value) {
  return JSON.stringify(value ?? null, null, 2);
}

/** Parse the JSON a person typed: {ok: true, value} or {ok: false, message}. Empty is null. */
export function parseJSONInput(text) {
  if (text.trim() === "") return { ok: true, value: null };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, message: `Not valid JSON: ${error.message}` };
  }
}

/** What a suspended run waits for, in words, and the time it resumes by itself (or null). */
export function waitText(wait) {
  if (!wait) return null;
  switch (wait.reason) {
    case "EVENT": return `the event ${wait.eventType ?? "(any type)"}`;
    case "SLEEP": return "the end of a sleep";
    case "RETRY": return "its next retry";
    case "REQUESTED_PAUSE": return "a resume (paused by request)";
    default: return String(wait.reason).toLowerCase();
  }
}
