"""GraphiQL's page, made to say plainly when its assets (all from a CDN) could not load.

Strawberry's GraphiQL page loads React and GraphiQL from unpkg.com; without
internet it would show "Loading..." forever. The script added here runs after
those (blocking) scripts have loaded or failed, and when GraphiQL is missing it
replaces that text with what happened and where to go instead.
"""

from __future__ import annotations

import json

_NOTICE_SCRIPT = """<script>
(function () {
  if (window.GraphiQL && window.React && window.ReactDOM) return;
  var root = document.getElementById("graphiql") || document.body;
  var box = document.createElement("div");
  box.setAttribute("role", "alert");
  box.style.cssText = "font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; padding: 2rem;";
  var title = document.createElement("h1");
  title.textContent = "GraphiQL could not load";
  var text = document.createElement("p");
  text.textContent = "Its scripts come from a CDN (unpkg.com) that this browser cannot "
    + "reach: it is offline, or the CDN is blocked. The gateway itself works: send "
    + "GraphQL requests to this URL with POST.";
  box.append(title, text);
  var dashboard = %(dashboard)s;
  if (dashboard) {
    var more = document.createElement("p");
    var link = document.createElement("a");
    link.href = dashboard;
    link.textContent = "Open the runcast dashboard";
    more.append(link, " (it needs no internet) to watch and steer runs.");
    box.append(more);
  }
  root.replaceChildren(box);
  document.body.style.overflow = "auto";
})();
</script>
"""


def with_offline_notice(page: str, *, dashboard_url: str | None) -> str:
    """``page`` (GraphiQL's HTML) with the notice shown when its assets did not load.

    Args:
        page: the GraphiQL HTML page.
        dashboard_url: where the notice links to; ``None`` when the dashboard is off.
    """
    script = _NOTICE_SCRIPT % {"dashboard": json.dumps(dashboard_url)}
    marker = page.rfind("</body>")
    if marker < 0:
        return page + script
    return page[:marker] + script + page[marker:]
