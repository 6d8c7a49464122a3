// The trigger form: JSON input (checked as JSON before sending) and an optional instance id.

import { h, showOutcome, uid } from "../dom.js";
import { mutate, RUN_ROW_FIELDS } from "../gql.js";
import { parseJSONInput, prettyJSON } from "../format.js";
import { runPath } from "./common.js";

const TRIGGER = `mutation DashboardTrigger($w: ID!, $input: JSON, $i: ID) {
  triggerRun(workflowId: $w, input: $input, instanceId: $i) { ${RUN_ROW_FIELDS} }
}`;

/** The form; ``onRun(run)`` is called with each run it starts. */
export function triggerForm(workflowId, onRun, { inputSchema = null } = {}) {
  const inputId = uid("trigger-input");
  const instanceId = uid("trigger-instance");
  const helpId = uid("trigger-help");
  const input = h("textarea", {
    id: inputId, name: "input", rows: "4", spellcheck: "false",
    placeholder: '{"orderId": 42}', "aria-describedby": helpId,
  });
  const instance = h("input", { id: instanceId, name: "instanceId", autocomplete: "off", placeholder: "chosen by the upstream" });
  const outcome = h("p", { class: "message", role: "status", "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "primary" }, "Trigger run");

  async function submit(event) {
    event.preventDefault();
    const parsed = parseJSONInput(input.value);
    input.setAttribute("aria-invalid", String(!parsed.ok));
    if (!parsed.ok) {
      showOutcome(outcome, { error: { code: "INVALID_JSON", message: parsed.message } });
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const variables = { w: workflowId, input: parsed.value, i: instance.value.trim() || null };
      const run = (await mutate(TRIGGER, variables)).triggerRun;
      showOutcome(outcome, { text: ["Started run ", h("a", { href: runPath(workflowId, run.instanceId) }, run.instanceId), "."] });
      instance.value = "";
      onRun(run);
    } catch (error) {
      showOutcome(outcome, { error });
    } finally {
      button.disabled = false;
    }
  }

  return h("form", { class: "card trigger", onsubmit: submit, "aria-label": "Trigger a run" },
    h("h2", {}, "Trigger a run"),
    h("div", { class: "field" }, h("label", { for: inputId }, "Input (JSON)"), input,
      h("span", { id: helpId, class: "muted small" }, "Empty means no input (null).")),
    inputSchema
      ? h("details", { class: "schema" }, h("summary", {}, "Input schema (JSON Schema; the gateway checks it)"),
        h("pre", { class: "json" }, prettyJSON(inputSchema)))
      : null,
    h("div", { class: "field" }, h("label", { for: instanceId }, "Instance id (optional)"), instance),
    h("div", { class: "actions" }, button),
    outcome);
}
