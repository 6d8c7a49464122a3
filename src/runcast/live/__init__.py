"""The live layer: the shared, budgeted poller behind ``runStatus`` and ``workflowRuns``.

One :class:`LiveHub` per gateway wires these parts, each in its own module:

- the watch registry (``_registry.py``): one watch per (credentials, run) or
  (credentials, workflow), its subscribers, and the indexes over them; watches and
  subscribers enter and leave only through it;
- the watches (``_watch.py``): each kind owns its polling behaviour (``poll``) and what
  its failures and its removal mean; nothing switches on a watch's type;
- the poll scheduler (``_scheduler.py``): a heap of due times and the request budget,
  on an injected clock;
- the list poller (``_lister.py``): what one poll of a workflow's runs reads, as many
  newest-first pages as its watched runs span; the runs it carries get their changes
  (and new subscribers their first message) from its list items where those hold the
  subscriber's selection (``_selection.py``);
- the delivery side (``_delivery.py``): a bounded slot per subscription, and the
  upstream's pushes (the embedded engine) in place of polls;
- the change bus (``_bus.py``) between them: pollers and pushes write, subscribers read.

Seams for other implementations:

``ChangeBus`` (a :class:`typing.Protocol`): ``subscribe(topic, sink)``,
``unsubscribe(topic, sink)``, ``publish(topic, run, observed_at)``, ``end(topic,
error)``. A topic is a tuple of strings, ``("run", fingerprint, workflow, instance)`` or
``("workflow", fingerprint, workflow)``; a sink is a :class:`ChangeSink` (``offer(run,
observed_at)``, ``close(error)``), which never blocks. ``publish`` and ``end`` never
block; a reader gets a topic's states in publish order from when it subscribed.
:class:`LocalChangeBus` is the in-process one; ``LiveHub(..., bus=...)`` takes another
(Redis, for several replicas).

Requests: every poll takes its token, before it is sent, from the limiter of its
credential (``runcast.upstream.RequestLimiter``: a token bucket with the 429 hold inside,
``RequestBudget``), the same one the adapter asks for every other request; the hub hands
its ``RequestLimits`` to the adapter. Limiters take ``clock`` and ``sleep``, so tests run
them on a fake clock.
"""

from __future__ import annotations

from runcast.live._budget import DEFAULT_BUDGETS, budget_for
from runcast.live._bus import ChangeBus, ChangeSink, LocalChangeBus, Topic
from runcast.live._change import RunChange
from runcast.live._hub import LiveHub

__all__ = [
    "DEFAULT_BUDGETS",
    "ChangeBus",
    "ChangeSink",
    "LiveHub",
    "LocalChangeBus",
    "RunChange",
    "Topic",
    "budget_for",
]
