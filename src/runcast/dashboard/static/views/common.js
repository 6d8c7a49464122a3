// Pieces every view uses: URLs of views, breadcrumbs, the page heading, error boxes.

import { h, replace } from "../dom.js";

/** The URL of a workflow's runs. */
export function workflowPath(workflowId) {
  return `/ui/workflows/${encodeURIComponent(workflowId)}`;
}

/** The URL of one run. */
export function runPath(workflowId, instanceId) {
  return `${workflowPath(workflowId)}/runs/${encodeURIComponent(instanceId)}`;
}

/** Start a view: title, breadcrumbs and a focusable h1; returns the view's section. */
export function startView(main, { title, crumbs = [], heading = title }) {
  document.title = `${title} · runcast`;
  const trail = crumbs.length
    ? h("nav", { "aria-label": "Breadcrumb", class: "crumbs" },
      h("ol", {}, crumbs.map(([text, href]) => h("li", {}, href ? h("a", { href }, text) : text))))
    : null;
  const title1 = h("h1", { tabindex: "-1" }, heading);
  const section = h("div", { class: "view" });
  replace(main, trail, title1, section);
  if (document.activeElement && document.activeElement !== document.body) title1.focus();
  return section;
}

/** An error box with the GraphQL code and message. */
export function errorBox(error) {
  return h("p", { class: "message error", role: "alert" },
    h("strong", { class: "code" }, error.code ?? "ERROR"), " ", error.message);
}
