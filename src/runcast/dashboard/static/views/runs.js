// A workflow's runs (/ui/workflows/{id}): live table, status filter, cursor paging, bulk actions.

import { h, replace, showOutcome } from "../dom.js";
import { execute, GraphQLError, query, RUN_ROW_FIELDS } from "../gql.js";
import { STATUSES, statusLabel } from "../format.js";
import { errorBox, startView } from "./common.js";
import { RunsTable } from "./runs-table.js";
import { triggerForm } from "./trigger.js";

const PAGE = 100;
const BULK_CHUNK = 20;

const RUNS = `query DashboardRuns($id: ID!, $status: [RunStatus!], $first: Int, $after: String) {
  workflow(id: $id) {
    id name kind url version inputSchema
    runs(status: $status, first: $first, after: $after) {
      edges { node { ${RUN_ROW_FIELDS} } }
      pageInfo { hasNextPage endCursor }
    }
  }
}`;

// Unfiltered on purpose: a run that leaves the filter still changes in place.
const LIVE = `subscription DashboardWorkflowRuns($id: ID!) {
  workflowRuns(workflowId: $id) { status run { ${RUN_ROW_FIELDS} } }
}`;

/** The statuses of ``?status=A,B`` (empty: all). */
function filterOf(search) {
  const wanted = (search.get("status") ?? "").split(",").filter((s) => STATUSES.includes(s));
  return new Set(wanted);
}

function filterForm(filter, onChange) {
  const boxes = STATUSES.map((status) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "status", value: status, checked: filter.has(status) }),
    " ", statusLabel(status)));
  return h("fieldset", { class: "filter", onchange: (event) => {
    const chosen = boxes.map((label) => label.firstChild).filter((b) => b.checked).map((b) => b.value);
    onChange(new Set(chosen));
    event.stopPropagation();
  } }, h("legend", {}, "Show statuses (none checked: all)"), boxes);
}

/** Run ``field`` (terminateRun, restartRun) on each instance, in chunks of aliased mutations. */
async function bulk(field, workflowId, instances) {
  const refused = [];
  const done = [];
  for (let start = 0; start < instances.length; start += BULK_CHUNK) {
    const chunk = instances.slice(start, start + BULK_CHUNK);
    const args = chunk.map((_, i) => `$i${i}: ID!`).join(", ");
    const body = chunk.map((_, i) => `r${i}: ${field}(workflowId: $w, instanceId: $i${i}) { ${RUN_ROW_FIELDS} }`).join("\n");
    const variables = Object.fromEntries([["w", workflowId], ...chunk.map((id, i) => [`i${i}`, id])]);
    const answer = await execute(`mutation DashboardBulk($w: ID!, ${args}) { ${body} }`, variables);
    for (const [i, id] of chunk.entries()) {
      const run = answer.data?.[`r${i}`];
      if (run) done.push(run);
      else {
        const error = (answer.errors ?? []).find((e) => e.path?.[0] === `r${i}`) ?? answer.errors?.[0];
        refused.push([id, GraphQLError.from(error)]);
      }
    }
  }
  return { done, refused };
}

function bulkOutcome(verb, { done, refused }) {
  if (refused.length === 0) return { text: `${verb} ${done.length} runs.` };
  const [first, error] = refused[0];
  return { error: { code: error.code, message: `${refused.length} of ${done.length + refused.length} refused (first: run ${first}: ${error.message})` } };
}

class RunsView {
  constructor(section, workflowId, context) {
    this.section = section;
    this.workflowId = workflowId;
    this.context = context;
    this.filter = filterOf(context.search);
    this.endCursor = null;
    this.hasNextPage = false;
    this.table = new RunsTable(workflowId, { onSelect: () => this.selectionChanged() });
    this.outcome = h("p", { class: "message", role: "status", "aria-live": "polite" });
    this.count = h("span", { class: "muted", "aria-live": "polite" });
    this.more = h("button", { type: "button", onclick: () => this.loadPage() }, "Load older runs");
    this.terminate = h("button", { type: "button", class: "danger", onclick: () => this.runBulk("terminateRun", "Terminated") }, "Terminate selected");
    this.restart = h("button", { type: "button", onclick: () => this.runBulk("restartRun", "Restarted") }, "Restart selected");
    this.stop = null;
    // Live messages seen, by run: a mutation's answer must not undo a newer live state.
    this.liveCount = 0;
    this.liveSeen = new Map();
  }

  async start() {
    replace(this.section, h("p", { class: "loading" }, "Loading runs…"));
    const page = await this.fetchPage(null);
    if (!page || this.closed) return;
    const { workflow } = page;
    if (!workflow) {
      replace(this.section, errorBox({ code: "NOT_FOUND", message: `No workflow with id ${this.workflowId}.` }));
      return;
    }
    document.title = `${workflow.name} · runcast`;
    this.context.heading.textContent = `Runs of ${workflow.name}`;
    if (workflow.kind === "SCRIPT") {
      replace(this.section, h("p", { class: "message" }, "This is a script, a Worker called by its URL: it has no runs. Call ",
        h("code", {}, workflow.url ?? "its URL"), " instead."));
      return;
    }
    this.layout(workflow);
    this.show(workflow.runs, { append: false });
    this.stop = this.context.live.subscribe(LIVE, { id: this.workflowId }, {
      next: (payload) => this.live(payload),
      error: (errors) => showOutcome(this.outcome, { error: GraphQLError.from(errors?.[0]) }),
      reconnected: () => this.reload(),
    });
  }

  close() {
    this.closed = true;
    this.stop?.();
  }

  layout(workflow) {
    const filter = filterForm(this.filter, (chosen) => this.refilter(chosen));
    const runs = h("section", { class: "card", "aria-label": "Runs" },
      h("h2", {}, "Runs"),
      filter,
      h("div", { class: "toolbar" }, this.terminate, this.restart, this.count),
      this.outcome,
      h("div", { class: "table-wrap" }, this.table.element),
      h("div", { class: "toolbar" }, this.more));
    // A live message may have shown the new run already, in a newer state than this answer.
    const started = (run) => {
      if (!this.table.rows.has(run.instanceId)) this.table.apply(run, { insert: (r) => this.matches(r) });
    };
    const trigger = triggerForm(this.workflowId, started, { inputSchema: workflow.inputSchema });
    replace(this.section, h("div", { class: "columns" }, runs, h("aside", {}, trigger)));
    this.selectionChanged();
  }

  async fetchPage(after) {
    const status = this.filter.size ? [...this.filter] : null;
    try {
      const answer = await query(RUNS, { id: this.workflowId, status, first: PAGE, after });
      if (answer.errors?.length && !answer.data?.workflow?.runs) throw GraphQLError.from(answer.errors[0]);
      return answer.data;
    } catch (error) {
      if (this.table.size === 0) replace(this.section, errorBox(error));
      else showOutcome(this.outcome, { error });
      return null;
    }
  }

  show(connection, { append }) {
    const runs = connection.edges.map((edge) => edge.node);
    const started = performance.now();
    if (append) this.table.appendRuns(runs);
    else this.table.replaceRuns(runs);
    performance.measure("runcast:render-runs", { start: started, detail: { rows: this.table.size } });
    this.endCursor = connection.pageInfo.endCursor;
    this.hasNextPage = connection.pageInfo.hasNextPage;
    this.more.hidden = !this.hasNextPage;
    this.updateCount();
  }

  async loadPage() {
    this.more.disabled = true;
    const page = await this.fetchPage(this.endCursor);
    this.more.disabled = false;
    if (page?.workflow) this.show(page.workflow.runs, { append: true });
  }

  async reload() {
    const page = await this.fetchPage(null);
    if (page?.workflow) this.show(page.workflow.runs, { append: false });
  }

  refilter(chosen) {
    this.filter = chosen;
    const url = new URL(location.href);
    if (chosen.size) url.searchParams.set("status", [...chosen].join(","));
    else url.searchParams.delete("status");
    history.replaceState(null, "", url.pathname + url.search);
    this.reload();
  }

  matches(run) {
    return this.filter.size === 0 || this.filter.has(run.status);
  }

  live(payload) {
    const run = payload?.data?.workflowRuns?.run;
    if (!run) return;
    this.liveCount += 1;
    this.liveSeen.set(run.instanceId, this.liveCount);
    const insert = (r) => this.matches(r) && !(this.hasNextPage && this.table.olderThanShown(r.createdAt));
    const started = performance.now();
    this.table.apply(run, { insert });
    this.updateCount();
    performance.measure("runcast:live-update", { start: started, detail: { rows: this.table.size } });
  }

  updateCount() {
    this.count.textContent = `${this.table.size} runs shown${this.hasNextPage ? ", older ones not loaded" : ""}`;
  }

  selectionChanged() {
    const n = this.table.selected().length;
    this.terminate.disabled = this.restart.disabled = n === 0;
    this.terminate.textContent = `Terminate selected (${n})`;
    this.restart.textContent = `Restart selected (${n})`;
  }

  async runBulk(field, verb) {
    const instances = this.table.selected();
    const before = this.liveCount;
    this.terminate.disabled = this.restart.disabled = true;
    let result;
    try {
      result = await bulk(field, this.workflowId, instances);
    } catch (error) {
      showOutcome(this.outcome, { error });
      this.selectionChanged();
      return;
    }
    for (const run of result.done) {
      if ((this.liveSeen.get(run.instanceId) ?? 0) <= before) this.table.apply(run, { insert: () => false });
    }
    showOutcome(this.outcome, bulkOutcome(verb, result));
    this.selectionChanged();
  }
}

/** Mount the runs view of ``workflowId``; returns its cleanup. */
export function runsView(main, { workflowId }, context) {
  const section = startView(main, {
    title: workflowId,
    heading: `Runs of ${workflowId}`,
    crumbs: [["Workflows", "/"], [workflowId, null]],
  });
  const view = new RunsView(section, workflowId, { ...context, heading: main.querySelector("h1") });
  view.start();
  return () => view.close();
}
