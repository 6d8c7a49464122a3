// The page: picks the view from the URL, keeps links inside the page, holds the token.

import { authorization, getToken, setToken } from "./gql.js";
import { LiveClient } from "./live.js";
import { h, replace } from "./dom.js";
import { workflowsView } from "./views/workflows.js";
import { runsView } from "./views/runs.js";
import { runView } from "./views/run.js";

const ROUTES = [
  [/^\/(?:ui\/?(?:workflows\/?)?)?$/, workflowsView, []],
  [/^\/ui\/workflows\/([^/]+)\/?$/, runsView, ["workflowId"]],
  [/^\/ui\/workflows\/([^/]+)\/runs\/([^/]+)\/?$/, runView, ["workflowId", "instanceId"]],
];

const main = document.getElementById("main");
const liveState = document.getElementById("live-state");
const wsUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/graphql`;
const live = new LiveClient({
  url: wsUrl,
  params: () => (authorization() ? { Authorization: authorization() } : {}),
  onState: (state) => { liveState.textContent = `Live: ${state}`; },
});

let cleanup = null;

function match(pathname) {
  for (const [pattern, view, names] of ROUTES) {
    const found = pattern.exec(pathname);
    if (!found) continue;
    const params = Object.fromEntries(
      names.map((name, index) => [name, decodeURIComponent(found[index + 1])]),
    );
    return { view, params };
  }
  return null;
}

/** Go to ``url`` inside the page (pushState), or replace the current entry. */
export function navigate(url, { replaceEntry = false } = {}) {
  if (replaceEntry) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

function render() {
  cleanup?.();
  cleanup = null;
  const found = match(location.pathname);
  if (!found) {
    document.title = "Not found · runcast";
    replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Workflows")));
    return;
  }
  const context = { live, navigate, search: new URLSearchParams(location.search) };
  cleanup = found.view(main, found.params, context) ?? null;
}

function followLinks(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.origin !== location.origin) return;
  if (link.pathname !== "/" && !link.pathname.startsWith("/ui")) return;
  event.preventDefault();
  navigate(link.pathname + link.search);
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  input.value = getToken();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    live.restart();
    render();
  });
}

document.addEventListener("click", followLinks);
window.addEventListener("popstate", render);
// Leaving the page ends its subscriptions with the gateway at once.
window.addEventListener("pagehide", () => live.close());
setupToken();
render();
