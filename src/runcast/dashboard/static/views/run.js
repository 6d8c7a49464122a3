// One run (/ui/workflows/{id}/runs/{instanceId}): live state, timeline and actions.

import { h, replace, showOutcome, uid } from "../dom.js";
import { GraphQLError, mutate, query, RUN_FIELDS } from "../gql.js";
import { parseJSONInput, prettyJSON, statusBadge, statusLabel, timeElement, waitText } from "../format.js";
import { errorBox, startView, workflowPath } from "./common.js";
import { timeline } from "./timeline.js";

const RUN = `query DashboardRun($w: ID!, $i: ID!) { run(workflowId: $w, instanceId: $i) { ${RUN_FIELDS} } }`;

const LIVE = `subscription DashboardRunStatus($w: ID!, $i: ID!) {
  runStatus(workflowId: $w, instanceId: $i) { status run { ${RUN_FIELDS} } }
}`;

const ACTIONS = [
  ["pauseRun", "Pause", "Paused"],
  ["resumeRun", "Resume", "Resumed"],
  ["terminateRun", "Terminate", "Terminated"],
];

function action(field) {
  return `mutation DashboardAction($w: ID!, $i: ID!) { ${field}(workflowId: $w, instanceId: $i) { ${RUN_FIELDS} } }`;
}

const RESTART = `mutation DashboardRestart($w: ID!, $i: ID!, $from: String) {
  restartRun(workflowId: $w, instanceId: $i, fromStep: $from) { ${RUN_FIELDS} }
}`;

const DELETE = "mutation DashboardDelete($w: ID!, $i: ID!) { deleteRun(workflowId: $w, instanceId: $i) }";

const SEND_EVENT = `mutation DashboardSendEvent($w: ID!, $i: ID!, $type: String!, $payload: JSON) {
  sendEvent(workflowId: $w, instanceId: $i, eventType: $type, payload: $payload) { ${RUN_FIELDS} }
}`;

function jsonBlock(title, value, { hidden }) {
  if (hidden) return null;
  return h("section", { class: "card" }, h("h2", {}, title), h("pre", { class: "json" }, prettyJSON(value)));
}

class RunView {
  constructor(section, workflowId, instanceId, context) {
    this.section = section;
    this.ids = { w: workflowId, i: instanceId };
    this.context = context;
    this.outcome = h("p", { class: "message", role: "status", "aria-live": "polite" });
    this.liveNote = h("span", { class: "muted" });
    this.state = h("div", { class: "run-state" });
    this.stop = null;
    this.closed = false;
    this.liveCount = 0;  // a mutation's answer must not undo a newer live state
  }

  async start() {
    replace(this.section, h("p", { class: "loading" }, "Loading run…"));
    let run;
    try {
      run = (await query(RUN, this.ids)).data?.run;
    } catch (error) {
      replace(this.section, errorBox(error));
      return;
    }
    if (this.closed) return;
    if (!run) {
      replace(this.section, errorBox({ code: "NOT_FOUND", message: `No run ${this.ids.i} of workflow ${this.ids.w}.` }));
      return;
    }
    replace(this.section, h("div", { class: "columns" }, this.state, h("aside", {}, this.actions())));
    this.render(run);
    this.watch();
  }

  close() {
    this.closed = true;
    this.stop?.();
  }

  watch() {
    this.stop?.();
    this.liveNote.textContent = "live";
    this.stop = this.context.live.subscribe(LIVE, this.ids, {
      next: (payload) => {
        const run = payload?.data?.runStatus?.run;
        if (run) {
          this.liveCount += 1;
          this.render(run);
        }
        if (payload?.errors?.length) showOutcome(this.outcome, { error: GraphQLError.from(payload.errors[0]) });
      },
      error: (errors) => showOutcome(this.outcome, { error: GraphQLError.from(errors?.[0]) }),
      complete: () => { this.stop = null; this.liveNote.textContent = "finished: no more updates"; },
    });
  }

  render(run) {
    this.run = run;
    this.updateSteps(run);
    if (this.eventType && !this.eventType.value && run.wait?.reason === "EVENT" && run.wait.eventType) {
      this.eventType.value = run.wait.eventType;
    }
    const rows = [
      ["Status", [statusBadge(run.status, run.rawStatus), run.rawStatus && run.status === "UNKNOWN" ? ` (${run.rawStatus})` : "", " ", this.liveNote]],
      ["Waiting for", run.wait ? [waitText(run.wait), run.wait.until ? [" (until ", timeElement(run.wait.until), ")"] : ""] : h("span", { class: "muted" }, "—")],
      ["Workflow", [h("a", { href: workflowPath(run.workflowId) }, run.workflowId),
        run.workflowVersion ? h("span", { class: "muted" }, ` version ${run.workflowVersion}`) : ""]],
      ["Instance id", h("code", {}, run.instanceId)],
      ["Created", timeElement(run.createdAt)],
      ["Started", timeElement(run.startedAt)],
      ["Ended", timeElement(run.endedAt)],
    ];
    // Keep a focused step bar focused across live re-renders (its details stay shown).
    const focusedStep = this.state.contains(document.activeElement) ? document.activeElement.dataset.step : null;
    replace(this.state,
      h("section", { class: "card" }, h("h2", {}, "Run"),
        h("dl", { class: "facts" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", { "data-fact": term }, value)]))),
      run.error ? h("section", { class: "card" }, h("h2", {}, "Error"), h("pre", { class: "error-text" }, run.error)) : null,
      h("div", { class: "pair" },
        jsonBlock("Input", run.input, { hidden: false }),
        jsonBlock("Output", run.output, { hidden: false })),
      h("section", { class: "card" }, h("h2", {}, "Steps"), timeline(run)));
    if (focusedStep) this.state.querySelector(`.bar[data-step="${CSS.escape(focusedStep)}"]`)?.focus();
  }

  actions() {
    const buttons = ACTIONS.map(([field, label, done]) => h("button", {
      type: "button", class: field === "terminateRun" ? "danger" : "", "data-action": field,
      onclick: () => this.act(() => mutate(action(field), this.ids).then((d) => d[field]), done),
    }, label));
    return h("section", { class: "card", "aria-label": "Actions" },
      h("h2", {}, "Actions"),
      h("div", { class: "actions" }, buttons),
      this.restartForm(),
      this.outcome,
      this.eventForm(),
      h("div", { class: "actions" }, h("button", {
        type: "button", class: "danger", "data-action": "deleteRun", onclick: () => this.remove(),
      }, "Delete run")));
  }

  restartForm() {
    const fromId = uid("restart-from");
    this.fromStep = h("select", { id: fromId, name: "fromStep" }, h("option", { value: "" }, "the beginning"));
    const submit = (event) => {
      event.preventDefault();
      const from = this.fromStep.value || null;
      const done = from ? `Restarted from ${from}` : "Restarted";
      this.act(() => mutate(RESTART, { ...this.ids, from }).then((d) => d.restartRun), done);
    };
    return h("form", { class: "restart", onsubmit: submit, "aria-label": "Restart the run" },
      h("label", { for: fromId }, "Restart from"), this.fromStep,
      h("button", { type: "submit", "data-action": "restartRun" }, "Restart"));
  }

  /** Offer the run's steps to restart from, keeping the current choice. */
  updateSteps(run) {
    if (!this.fromStep) return;
    const chosen = this.fromStep.value;
    const steps = run.steps ?? [];
    const names = steps.map((step) => step.name);
    replace(this.fromStep, h("option", { value: "" }, "the beginning"),
      steps.map((step) => h("option", { value: step.name }, `${step.name} (${step.type})`)));
    this.fromStep.value = names.includes(chosen) ? chosen : "";
  }

  async remove() {
    try {
      await mutate(DELETE, this.ids);
      this.context.navigate(workflowPath(this.ids.w));
    } catch (error) {
      showOutcome(this.outcome, { error });
    }
  }

  eventForm() {
    const typeId = uid("event-type");
    const payloadId = uid("event-payload");
    const type = h("input", { id: typeId, name: "eventType", required: true, autocomplete: "off", placeholder: "user-approval" });
    this.eventType = type;
    const payload = h("textarea", { id: payloadId, name: "payload", rows: "3", spellcheck: "false", placeholder: '{"approved": true}' });
    const submit = (event) => {
      event.preventDefault();
      const parsed = parseJSONInput(payload.value);
      payload.setAttribute("aria-invalid", String(!parsed.ok));
      if (!parsed.ok) {
        showOutcome(this.outcome, { error: { code: "INVALID_JSON", message: parsed.message } });
        payload.focus();
        return;
      }
      const variables = { ...this.ids, type: type.value, payload: parsed.value };
      this.act(() => mutate(SEND_EVENT, variables).then((d) => d.sendEvent), `Sent event ${type.value}`);
    };
    return h("form", { class: "event", onsubmit: submit, "aria-label": "Send an event" },
      h("h3", {}, "Send an event"),
      h("div", { class: "field" }, h("label", { for: typeId }, "Event type"), type),
      h("div", { class: "field" }, h("label", { for: payloadId }, "Payload (JSON)"), payload),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Send event")));
  }

  async act(call, done) {
    const buttons = this.section.querySelectorAll("button");
    for (const button of buttons) button.disabled = true;
    const before = this.liveCount;
    try {
      const run = await call();
      if (this.liveCount === before) this.render(run);
      showOutcome(this.outcome, { text: `${done}: now ${statusLabel(run.status)}.` });
      if (!this.stop && !run.isTerminal) this.watch();
    } catch (error) {
      showOutcome(this.outcome, { error });
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  }
}

/** Mount the view of one run; returns its cleanup. */
export function runView(main, { workflowId, instanceId }, context) {
  const section = startView(main, {
    title: `Run ${instanceId}`,
    crumbs: [["Workflows", "/"], [workflowId, workflowPath(workflowId)], [instanceId, null]],
  });
  const view = new RunView(section, workflowId, instanceId, context);
  view.start();
  return () => view.close();
}
