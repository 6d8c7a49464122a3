// A run's steps as a timeline: a bar per step from its start to its end, details on hover/focus.

import { h, uid } from "../dom.js";
import { duration, statusLabel } from "../format.js";

function instant(iso) {
  return iso ? Date.parse(iso) : null;
}

/** The time span the bars are drawn in: [start, end] in ms. */
function spanOf(run, steps, now) {
  const starts = steps.map((s) => instant(s.startedAt)).filter((t) => t !== null);
  const ends = steps.map((s) => instant(s.endedAt) ?? (s.startedAt ? now : null)).filter((t) => t !== null);
  const start = Math.min(instant(run.startedAt) ?? Infinity, ...starts);
  const end = instant(run.endedAt) ?? Math.max(now, ...ends);
  return [start, Math.max(end, start + 1)];
}

function details(step, start, end) {
  const parts = [`${step.type} ${step.name}: ${step.status}`,
    `${step.attempts} attempt${step.attempts === 1 ? "" : "s"}`];
  if (start !== null) parts.push(end === null ? `running for ${duration(Date.now() - start)}` : `took ${duration(end - start)}`);
  if (step.error) parts.push(`error: ${step.error}`);
  return parts.join(" · ");
}

function stepItem(step, [from, to], now) {
  const start = instant(step.startedAt);
  const end = instant(step.endedAt);
  const tipId = uid("step-tip");
  const track = h("span", { class: "track" });
  if (start !== null) {
    const bar = h("span", { class: "bar", tabindex: "0", "aria-describedby": tipId, "data-step": step.name });
    const width = Math.max(0.8, (((end ?? now) - start) / (to - from)) * 100);
    bar.style.left = `${Math.min(100 - width, ((start - from) / (to - from)) * 100)}%`;
    bar.style.width = `${width}%`;
    track.append(bar);
  } else {
    track.append(h("span", { class: "muted small" }, "not started"));
  }
  return h("li", { class: `step step-${String(step.status).toLowerCase()}` },
    h("span", { class: "step-name" }, step.name, " ", h("span", { class: "muted small" }, step.type)),
    h("span", { class: "step-status" }, step.status, step.attempts > 1 ? ` (${step.attempts} attempts)` : ""),
    track,
    h("span", { class: "tip", id: tipId, role: "tooltip" }, details(step, start, end)));
}

/** The timeline of ``run`` (null steps: the upstream does not expose them). */
export function timeline(run) {
  if (run.steps === null || run.steps === undefined) {
    return h("p", { class: "muted" }, "This upstream does not report steps.");
  }
  if (run.steps.length === 0) return h("p", { class: "muted" }, `No step has run yet (${statusLabel(run.status)}).`);
  const now = Date.now();
  const span = spanOf(run, run.steps, now);
  return h("ol", { class: "timeline", "aria-label": "Steps, in order" },
    run.steps.map((step) => stepItem(step, span, now)));
}
