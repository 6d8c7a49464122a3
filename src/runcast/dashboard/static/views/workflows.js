// The workflows view (/): each workflow, its kind, and its recent runs counted by status.

import { h, replace } from "../dom.js";
import { query } from "../gql.js";
import { STATUSES, statusBadge, timeElement } from "../format.js";
import { errorBox, startView, workflowPath } from "./common.js";

const COUNTED = 100;

const WORKFLOWS = `query DashboardWorkflows {
  workflows {
    id name kind url version schedule nextScheduledAt
    runs(first: ${COUNTED}) { edges { node { status } } pageInfo { hasNextPage } }
  }
}`;

/** Counts of runs per status, in the order of STATUSES; null when the upstream could not say. */
function countsOf(workflow) {
  if (!workflow.runs) return null;
  const counts = new Map();
  for (const { node } of workflow.runs.edges) counts.set(node.status, (counts.get(node.status) ?? 0) + 1);
  return STATUSES.filter((s) => counts.has(s)).map((s) => [s, counts.get(s)]);
}

function countsCell(workflow) {
  if (workflow.kind === "SCRIPT") {
    return h("td", {}, h("span", { class: "muted" }, "no runs: call "), h("code", {}, workflow.url ?? "its URL"));
  }
  const counts = countsOf(workflow);
  if (counts === null) return h("td", { class: "muted" }, "not available from this upstream");
  if (counts.length === 0) return h("td", { class: "muted" }, "no runs yet");
  const more = workflow.runs.pageInfo.hasNextPage;
  return h("td", {},
    h("ul", { class: "counts" }, counts.map(([status, n]) => h("li", {}, statusBadge(status), " ", String(n)))),
    more ? h("span", { class: "muted small" }, `of the latest ${COUNTED} runs`) : null);
}

function row(workflow) {
  return h("tr", { "data-workflow": workflow.id },
    h("th", { scope: "row" },
      h("a", { href: workflowPath(workflow.id) }, workflow.name),
      h("div", { class: "muted small" }, workflow.id, workflow.version ? ` · version ${workflow.version}` : ""),
      workflow.schedule
        ? h("div", { class: "muted small" }, "schedule ", h("code", {}, workflow.schedule),
          workflow.nextScheduledAt ? [" · next ", timeElement(workflow.nextScheduledAt)] : "")
        : null),
    h("td", {}, workflow.kind === "SCRIPT" ? "script" : "workflow"),
    countsCell(workflow));
}

async function load(section) {
  replace(section, h("p", { class: "loading" }, "Loading workflows…"));
  let answer;
  try {
    answer = await query(WORKFLOWS);
  } catch (error) {
    replace(section, errorBox(error));
    return;
  }
  const workflows = answer.data.workflows ?? [];
  const refresh = h("button", { type: "button", onclick: () => load(section) }, "Refresh");
  const table = h("table", { class: "workflows" },
    h("caption", { class: "visually-hidden" }, "Workflows and their runs by status"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Workflow"), h("th", { scope: "col" }, "Kind"),
      h("th", { scope: "col" }, "Runs by status"))),
    h("tbody", {}, workflows.map(row)));
  replace(section,
    h("div", { class: "toolbar" }, refresh,
      h("span", { class: "muted" }, `${workflows.length} workflows`)),
    answer.errors?.length ? errorBox({ code: answer.errors[0].extensions?.code, message: answer.errors[0].message }) : null,
    h("div", { class: "table-wrap" }, table));
}

/** Mount the workflows view. */
export function workflowsView(main) {
  const section = startView(main, { title: "Workflows" });
  load(section);
  return null;
}
