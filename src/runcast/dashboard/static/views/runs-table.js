// The runs table: rows keyed by instance id, updated in place, newest first.

import { h } from "../dom.js";
import { statusBadge, timeElement } from "../format.js";
import { runPath } from "./common.js";

const COLUMNS = ["Run", "Status", "Created", "Started", "Ended"];

function instant(iso) {
  return iso ? Date.parse(iso) : 0;
}

export class RunsTable {
  /** ``onSelect()`` is called when the selection changes. */
  constructor(workflowId, { onSelect }) {
    this.workflowId = workflowId;
    this.onSelect = onSelect;
    this.rows = new Map();
    this.body = h("tbody", { onchange: (event) => this.checked(event) });
    this.all = h("input", { type: "checkbox", "aria-label": "Select all runs shown", onchange: () => this.selectAll() });
    this.element = h("table", { class: "runs" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "select" }, this.all),
        COLUMNS.map((name) => h("th", { scope: "col", class: `col-${name.toLowerCase()}` }, name)))),
      this.body);
  }

  get size() {
    return this.rows.size;
  }

  /** Show ``runs`` instead of what is shown. */
  replaceRuns(runs) {
    this.rows.clear();
    this.body.replaceChildren();
    this.appendRuns(runs);
  }

  /** Add older ``runs`` at the end. */
  appendRuns(runs) {
    const fragment = document.createDocumentFragment();
    for (const run of runs) {
      if (this.rows.has(run.instanceId)) continue;
      fragment.append(this.newRow(run));
    }
    this.body.append(fragment);
    this.selectionChanged();
  }

  /** Update the row of ``run`` in place; insert it by creation time when ``insert`` allows. */
  apply(run, { insert }) {
    const existing = this.rows.get(run.instanceId);
    if (existing) {
      const changed = existing.run.status !== run.status;
      this.fill(existing, run);
      if (!changed) return;
      // Restart the highlight in the next frame: no forced layout of a long table.
      existing.tr.classList.remove("changed");
      requestAnimationFrame(() => existing.tr.classList.add("changed"));
      return;
    }
    if (!insert(run)) return;
    const created = instant(run.createdAt);
    const row = this.newRow(run);
    const before = [...this.body.children].find((tr) => instant(this.rows.get(tr.dataset.instance).run.createdAt) < created);
    this.body.insertBefore(row, before ?? null);
    row.classList.add("changed");
  }

  /** Whether a run created at ``createdAt`` is older than every row shown. */
  olderThanShown(createdAt) {
    const last = this.body.lastElementChild;
    if (!last || !createdAt) return false;
    return instant(createdAt) < instant(this.rows.get(last.dataset.instance).run.createdAt);
  }

  /** The instance ids of the selected rows. */
  selected() {
    return [...this.rows.values()].filter((r) => r.box.checked).map((r) => r.run.instanceId);
  }

  newRow(run) {
    const box = h("input", { type: "checkbox", "aria-label": `Select run ${run.instanceId}`, value: run.instanceId });
    const cells = {
      status: h("td", { class: "col-status" }),
      created: h("td", { class: "col-created" }),
      started: h("td", { class: "col-started" }),
      ended: h("td", { class: "col-ended" }),
    };
    const tr = h("tr", { "data-instance": run.instanceId },
      h("td", { class: "select" }, box),
      h("th", { scope: "row", class: "col-run" }, h("a", { href: runPath(this.workflowId, run.instanceId) }, run.instanceId)),
      cells.status, cells.created, cells.started, cells.ended);
    const row = { run, tr, box, cells };
    this.rows.set(run.instanceId, row);
    this.fill(row, run);
    return tr;
  }

  fill(row, run) {
    const merged = { ...row.run, ...run };
    row.run = merged;
    row.tr.dataset.status = merged.status;
    row.cells.status.replaceChildren(statusBadge(merged.status, merged.rawStatus));
    row.cells.created.replaceChildren(timeElement(merged.createdAt));
    row.cells.started.replaceChildren(timeElement(merged.startedAt));
    row.cells.ended.replaceChildren(timeElement(merged.endedAt));
  }

  checked(event) {
    if (event.target.type === "checkbox") this.selectionChanged();
  }

  selectAll() {
    for (const row of this.rows.values()) row.box.checked = this.all.checked;
    this.selectionChanged();
  }

  selectionChanged() {
    const count = this.selected().length;
    this.all.checked = count > 0 && count === this.rows.size;
    this.all.indeterminate = count > 0 && count < this.rows.size;
    this.onSelect();
  }
}
