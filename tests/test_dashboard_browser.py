"""The dashboard in a real Chromium against a real gateway on the embedded engine.

One gateway and one browser serve the whole module (starting Chromium costs about a
second). Every name outside 127.0.0.1 resolves to nothing in this browser, so these
tests also show that the page needs no internet.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from browser_support import CHROMEDRIVER, CHROMIUM, GatewayThread, chromium
from runcast.settings import Settings

WORKFLOWS = {
    "approval.yaml": """
id: approval
name: Approval
nodes:
  - step: prepare
    action: {return: {orderId: input.orderId}}
  - wait_for_event: approval
    event_type: approve
  - step: finish
    action: {return: {orderId: prepare.orderId, by: approval.payload.by}}
""",
    "sleepy.yaml": """
id: sleepy
name: Sleepy
nodes:
  - step: start
    action: {return: input}
  - sleep: nap
    duration: 1h
""",
    "bulk.yaml": """
id: bulk
name: Bulk
nodes:
  - wait_for_event: go
    event_type: go
""",
    "script.yaml": """
id: worker
name: Worker
kind: script
url: https://worker.example.workers.dev/
""",
}

TRIGGER = """mutation($w: ID!, $i: ID, $input: JSON) {
  triggerRun(workflowId: $w, instanceId: $i, input: $input) { instanceId status }
}"""
SEND = """mutation($w: ID!, $i: ID!, $t: String!, $p: JSON) {
  sendEvent(workflowId: $w, instanceId: $i, eventType: $t, payload: $p) { status }
}"""

WAIT = 10.0
"""The longest any step of these tests waits for the page (a deadline, not a measurement)."""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    """A gateway on the embedded engine over this module's workflows."""
    folder = tmp_path_factory.mktemp("dashboard")
    workflows = folder / "workflows"
    workflows.mkdir()
    for name, text in WORKFLOWS.items():
        (workflows / name).write_text(text)
    settings = Settings(workflows_dir=workflows, db_path=folder / "runs.db")
    with GatewayThread(settings) as started:
        yield started


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module, with a fresh profile."""
    assert CHROMIUM.exists(), "install Debian's chromium"
    assert CHROMEDRIVER.exists(), "install Debian's chromium-driver"
    with chromium(tmp_path_factory.mktemp("profile")) as driver:
        yield driver


@pytest.fixture
def page(browser: WebDriver, gateway: GatewayThread) -> Iterator[WebDriver]:
    """The browser, whose console must stay free of errors during the test."""
    browser.get_log("browser")  # drop what earlier tests left
    yield browser
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def trigger(gateway: GatewayThread, workflow: str, instance: str, data: Any = None) -> None:
    """Start a run through the public API, as another client would."""
    answer = gateway.graphql(TRIGGER, {"w": workflow, "i": instance, "input": data})
    assert "errors" not in answer, answer


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Poll ``condition`` until it is truthy; fail after WAIT seconds saying ``what``."""
    return WebDriverWait(driver, WAIT, poll_frequency=0.02).until(condition, what)


def text_of(driver: WebDriver, selector: str) -> str | None:
    """The text of the first element matching ``selector`` (None if none), read atomically."""
    text: str | None = driver.execute_script(
        "return document.querySelector(arguments[0])?.innerText ?? null", selector
    )
    return text


def row_status(driver: WebDriver, instance: str) -> str | None:
    """The status text of a run's row in the runs table, or None while it is not shown."""
    return text_of(driver, f'tr[data-instance="{instance}"] .status')


def fact(driver: WebDriver, name: str) -> str:
    """The text of one entry of the run view's facts ("Status", "Ended", ...)."""
    return text_of(driver, f'dd[data-fact="{name}"]') or ""


def subscribers(gateway: GatewayThread) -> float:
    """The gateway's count of subscriptions it feeds (its /metrics gauge)."""
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith("runcast_live_subscribers "):
            return float(line.split()[-1])
    raise AssertionError("no runcast_live_subscribers in /metrics")


def open_view(driver: WebDriver, gateway: GatewayThread, path: str, ready: str) -> None:
    """Load ``path`` and wait until an element matching the CSS selector ``ready`` shows."""
    driver.get(gateway.url + path)
    wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ready), f"{path}: {ready}")


def fill(element: WebElement, text: str) -> None:
    """Replace the text of an input or textarea."""
    element.clear()
    element.send_keys(text)


def test_workflows_view_lists_kinds_and_counts(page: WebDriver, gateway: GatewayThread) -> None:
    """`/` lists every workflow with its kind, counts of runs by status, and scripts' URLs."""
    trigger(gateway, "sleepy", "count-1")
    trigger(gateway, "sleepy", "count-2")
    open_view(page, gateway, "/", 'tr[data-workflow="sleepy"]')
    row = page.find_element(By.CSS_SELECTOR, 'tr[data-workflow="sleepy"]')
    wait_until(page, lambda d: "paused 2" in row.text, "two paused sleepy runs counted")
    script = page.find_element(By.CSS_SELECTOR, 'tr[data-workflow="worker"]').text
    assert "script" in script
    assert "https://worker.example.workers.dev/" in script
    assert page.title == "Workflows · runcast"


def test_runs_table_lists_runs_and_changes_status_without_reload(
    page: WebDriver, gateway: GatewayThread
) -> None:
    """Triggered runs are listed; a new run and a status change appear live, without reload."""
    trigger(gateway, "approval", "live-1", {"orderId": 1})
    open_view(page, gateway, "/ui/workflows/approval", 'tr[data-instance="live-1"]')
    wait_until(page, lambda d: row_status(d, "live-1") == "paused", "live-1 paused")
    page.execute_script("window.notReloaded = true")
    trigger(gateway, "approval", "live-2", {"orderId": 2})
    wait_until(page, lambda d: row_status(d, "live-2") == "paused", "live-2 appears, paused")
    first = page.find_element(By.CSS_SELECTOR, "table.runs tbody tr").get_attribute("data-instance")
    assert first == "live-2", "a new run appears at the top"
    sent = time.monotonic()
    assert "errors" not in gateway.graphql(
        SEND, {"w": "approval", "i": "live-1", "t": "approve", "p": {"by": "ada"}}
    )
    wait_until(page, lambda d: row_status(d, "live-1") == "complete", "live-1 complete")
    latency = time.monotonic() - sent
    assert page.execute_script("return window.notReloaded") is True
    print(f"\nstatus change shown {latency * 1000:.0f} ms after the event was sent")


def test_trigger_validates_json_and_starts_a_run(page: WebDriver, gateway: GatewayThread) -> None:
    """Bad JSON is refused before sending; good input starts a run that shows in the table."""
    open_view(page, gateway, "/ui/workflows/approval", "form.trigger")
    form = page.find_element(By.CSS_SELECTOR, "form.trigger")
    textarea = form.find_element(By.CSS_SELECTOR, "textarea")
    fill(textarea, "{orderId: 7")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    message = form.find_element(By.CSS_SELECTOR, ".message")
    wait_until(page, lambda d: "INVALID_JSON" in message.text, "the JSON error")
    assert textarea.get_attribute("aria-invalid") == "true"
    fill(textarea, '{"orderId": 7}')
    instance = form.find_element(By.CSS_SELECTOR, "input[name=instanceId]")
    fill(instance, "from-page")
    instance.send_keys(Keys.ENTER)
    wait_until(page, lambda d: "Started run from-page" in message.text, "the started message")
    wait_until(page, lambda d: row_status(d, "from-page") == "paused", "the new row, paused")
    run = gateway.graphql('{ run(workflowId: "approval", instanceId: "from-page") { input } }')
    assert run["data"]["run"]["input"] == {"orderId": 7}
    fill(instance, "from-page")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(page, lambda d: "ALREADY_EXISTS" in message.text, "the refusal's code")


def test_run_view_sends_an_event_and_shows_the_output_live(
    page: WebDriver, gateway: GatewayThread
) -> None:
    """On a run's page, Send event completes the run; status, output and steps update live."""
    trigger(gateway, "approval", "event-1", {"orderId": 5})
    open_view(page, gateway, "/ui/workflows/approval/runs/event-1", "form.event")
    wait_until(page, lambda d: fact(d, "Status").startswith("paused"), "paused")
    assert fact(page, "Waiting for") == "the event approve"
    form = page.find_element(By.CSS_SELECTOR, "form.event")
    event_type = form.find_element(By.CSS_SELECTOR, "input[name=eventType]")
    assert event_type.get_attribute("value") == "approve", "prefilled from Run.wait"
    fill(form.find_element(By.CSS_SELECTOR, "textarea"), '{"by": "grace"}')
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(page, lambda d: fact(d, "Status").startswith("complete"), "complete")
    output = page.find_elements(By.CSS_SELECTOR, "pre.json")[1].text
    assert json.loads(output) == {"orderId": 5, "by": "grace"}
    bars = page.find_elements(By.CSS_SELECTOR, ".timeline .bar")
    assert [bar.get_attribute("data-step") for bar in bars] == ["prepare", "approval", "finish"]
    bars[0].send_keys("")  # focus shows the step's details
    tip = page.find_element(By.CSS_SELECTOR, ".timeline .step .tip")
    assert "1 attempt" in tip.text


def test_terminate_then_a_refused_action_shows_its_code(
    page: WebDriver, gateway: GatewayThread
) -> None:
    """Terminate works from the page; an event to the finished run shows RUN_FINISHED."""
    trigger(gateway, "sleepy", "stop-me")
    open_view(page, gateway, "/ui/workflows/sleepy/runs/stop-me", "button[data-action]")
    wait_until(page, lambda d: fact(d, "Status").startswith("paused"), "sleeping")
    page.find_element(By.CSS_SELECTOR, 'button[data-action="terminateRun"]').click()
    wait_until(page, lambda d: fact(d, "Status").startswith("terminated"), "terminated")
    form = page.find_element(By.CSS_SELECTOR, "form.event")
    fill(form.find_element(By.CSS_SELECTOR, "input[name=eventType]"), "poke")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    alert = page.find_element(By.CSS_SELECTOR, "aside .message")
    wait_until(page, lambda d: "RUN_FINISHED" in alert.text, "the refusal")
    assert alert.get_attribute("role") == "alert"
    assert "finished" in alert.text.lower()


def test_restart_from_a_step_then_delete(page: WebDriver, gateway: GatewayThread) -> None:
    """Restart from a chosen step waits for the event again; delete is refused until finished."""
    trigger(gateway, "approval", "again", {"orderId": 9})
    gateway.graphql(SEND, {"w": "approval", "i": "again", "t": "approve", "p": {"by": "ada"}})
    open_view(page, gateway, "/ui/workflows/approval/runs/again", "form.restart")
    wait_until(page, lambda d: fact(d, "Status").startswith("complete"), "complete")
    select = Select(page.find_element(By.CSS_SELECTOR, "select[name=fromStep]"))
    assert [o.get_attribute("value") for o in select.options] == [
        "",
        "prepare",
        "approval",
        "finish",
    ]
    select.select_by_value("approval")
    page.find_element(By.CSS_SELECTOR, 'form.restart button[type="submit"]').click()
    wait_until(page, lambda d: fact(d, "Waiting for") == "the event approve", "waiting again")
    steps = gateway.graphql(
        '{ run(workflowId: "approval", instanceId: "again") { steps { name status } } }'
    )["data"]["run"]["steps"]
    assert steps[0] == {"name": "prepare", "status": "complete"}, "kept, not run again"
    page.find_element(By.CSS_SELECTOR, 'button[data-action="deleteRun"]').click()
    alert = page.find_element(By.CSS_SELECTOR, "aside .message")
    wait_until(page, lambda d: "BAD_USER_INPUT" in alert.text, "delete refused while waiting")
    page.find_element(By.CSS_SELECTOR, 'button[data-action="terminateRun"]').click()
    wait_until(page, lambda d: fact(d, "Status").startswith("terminated"), "terminated")
    page.find_element(By.CSS_SELECTOR, 'button[data-action="deleteRun"]').click()
    wait_until(page, lambda d: d.current_url.endswith("/ui/workflows/approval"), "back to runs")
    wait_until(page, lambda d: d.find_elements(By.CSS_SELECTOR, "table.runs"), "the table")
    assert row_status(page, "again") is None


def test_bulk_terminate_and_restart_selected_runs(page: WebDriver, gateway: GatewayThread) -> None:
    """Selected rows are terminated together, then restarted together."""
    for name in ("bulk-a", "bulk-b", "bulk-c"):
        trigger(gateway, "sleepy", name)
    open_view(page, gateway, "/ui/workflows/sleepy?status=PAUSED", 'tr[data-instance="bulk-c"]')
    for name in ("bulk-a", "bulk-b"):
        page.find_element(By.CSS_SELECTOR, f'tr[data-instance="{name}"] input').click()
    page.find_element(By.XPATH, "//button[starts-with(., 'Terminate selected (2)')]").click()
    for name in ("bulk-a", "bulk-b"):
        wait_until(page, lambda d, n=name: row_status(d, n) == "terminated", f"{name} ended")
    assert row_status(page, "bulk-c") == "paused"
    page.find_element(By.XPATH, "//button[starts-with(., 'Restart selected (2)')]").click()
    for name in ("bulk-a", "bulk-b"):
        wait_until(page, lambda d, n=name: row_status(d, n) == "paused", f"{name} restarted")


def test_every_control_has_a_label_and_keyboard_reaches_it(
    page: WebDriver, gateway: GatewayThread
) -> None:
    """Each input, textarea and button on every view is labelled; Tab starts at the skip link."""
    trigger(gateway, "sleepy", "labels")
    unlabelled = """return [...document.querySelectorAll('input, textarea, select, button')]
      .filter((e) => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
      .map((e) => e.outerHTML);"""
    for path, ready in (
        ("/", "table.workflows"),
        ("/ui/workflows/sleepy", "table.runs tbody tr"),
        ("/ui/workflows/sleepy/runs/labels", "form.event"),
    ):
        open_view(page, gateway, path, ready)
        assert page.execute_script(unlabelled) == [], path
    page.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert page.switch_to.active_element.text == "Skip to content"


AXE = Path(__file__).parent.parent / ".ci" / "node" / "node_modules" / "axe-core" / "axe.min.js"
"""axe-core, the accessibility checker (`npm ci --prefix .ci/node` installs it)."""

AXE_RUN = """const done = arguments[arguments.length - 1];
axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "best-practice"] })
  .then((r) => done(r.violations.map((v) => [v.id, v.nodes.map((n) => n.target.join(" "))])))
  .catch((e) => done([["axe failed", [String(e)]]]));"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_view_is_axe_clean(page: WebDriver, gateway: GatewayThread, scheme: str) -> None:
    """axe-core finds no WCAG A/AA or best-practice violation on any view, light or dark."""
    assert AXE.exists(), "run `npm ci --prefix .ci/node` (installs axe-core)"
    trigger(gateway, "approval", f"axe-{scheme}", {"orderId": 3})
    page.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    try:
        for path, ready in (
            ("/", "table.workflows"),
            ("/ui/workflows/approval", "table.runs tbody tr"),
            (f"/ui/workflows/approval/runs/axe-{scheme}", ".timeline"),
        ):
            open_view(page, gateway, path, ready)
            page.execute_script(AXE.read_text())
            assert page.execute_async_script(AXE_RUN) == [], path
    finally:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_narrow_screens_and_dark_mode(page: WebDriver, gateway: GatewayThread) -> None:
    """At phone width nothing overflows the page; dark mode follows prefers-color-scheme."""
    page.set_window_size(390, 844)
    try:
        open_view(page, gateway, "/ui/workflows/sleepy", "table.runs tbody tr")
        overflow = "return document.documentElement.scrollWidth - window.innerWidth"
        assert page.execute_script(overflow) <= 0
        background = "return getComputedStyle(document.body).backgroundColor"
        light = page.execute_script(background)
        page.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        assert page.execute_script(background) != light
    finally:
        page.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        page.set_window_size(1280, 900)


def test_a_thousand_runs_render_quickly_with_one_subscription(
    page: WebDriver, gateway: GatewayThread
) -> None:
    """1,000 runs load page by page into one table (render time reported); one subscription."""
    mutations = " ".join(f'r{i}: triggerRun(workflowId: "bulk") {{ status }}' for i in range(25))
    for _ in range(40):
        assert "errors" not in gateway.graphql(f"mutation {{ {mutations} }}")
    open_view(page, gateway, "/ui/workflows/bulk", "table.runs tbody tr")
    rows = "return document.querySelectorAll('table.runs tbody tr').length"
    while page.execute_script(rows) < 1000:
        shown = page.execute_script(rows)
        page.find_element(By.XPATH, "//button[.='Load older runs']").click()
        wait_until(page, lambda d, n=shown: d.execute_script(rows) > n, "the next page")
    assert page.execute_script(rows) == 1000
    renders = page.execute_script(
        "return performance.getEntriesByName('runcast:render-runs')"
        ".map((m) => [m.detail.rows, m.duration])"
    )
    assert renders[-1][0] == 1000
    wait_until(page, lambda d: subscribers(gateway) == 1.0, "one subscription for the table")
    answer = gateway.graphql(
        '{ workflow(id: "bulk") { runs(first: 1) { edges { node { instanceId } } } } }'
    )
    newest = answer["data"]["workflow"]["runs"]["edges"][0]["node"]["instanceId"]
    started = time.monotonic()
    page_started = page.execute_script("return performance.now()")
    assert "errors" not in gateway.graphql(SEND, {"w": "bulk", "i": newest, "t": "go"})
    answered = time.monotonic() - started
    wait_until(page, lambda d: row_status(d, newest) == "complete", "a live change in 1,000 rows")
    live = time.monotonic() - started
    arrived, applied = page.execute_script(
        "const m = performance.getEntriesByName('runcast:live-update').at(-1);"
        "return [m.startTime, m.duration];"
    )
    worst = max(duration for _, duration in renders)
    total = sum(duration for _, duration in renders)
    print(
        f"\n1,000-run table: {len(renders)} renders of 100 rows, total {total:.1f} ms, "
        f"slowest {worst:.1f} ms; after sending the event: mutation answered in "
        f"{answered * 1000:.0f} ms, change reached the page at {arrived - page_started:.0f} ms, "
        f"seen by the test at {live * 1000:.0f} ms; applied to the table in {applied:.1f} ms"
    )


def test_token_is_sent_over_http_and_websocket(browser: WebDriver, tmp_path: Path) -> None:
    """With API keys, the page is refused until a token is given; then HTTP and live both work."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "sleepy.yaml").write_text(WORKFLOWS["sleepy.yaml"])
    settings = Settings(
        workflows_dir=folder, db_path=tmp_path / "runs.db", engine_api_keys=("s3cret",)
    )
    with GatewayThread(settings) as secured:
        browser.get(secured.url + "/ui/workflows/sleepy")
        wait_until(
            browser, lambda d: "UNAUTHENTICATED" in d.find_element(By.ID, "main").text, "refused"
        )
        fill(browser.find_element(By.ID, "token"), "s3cret")
        browser.find_element(By.ID, "token").send_keys(Keys.ENTER)
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.runs"), "the table")
        answer = httpx.post(
            f"{secured.url}/graphql",
            json={
                "query": 'mutation { triggerRun(workflowId: "sleepy", instanceId: "t1") { status }}'
            },
            headers={"authorization": "Bearer s3cret"},
        )
        assert "errors" not in answer.json()
        wait_until(browser, lambda d: row_status(d, "t1") == "paused", "a live row with the token")
        stored = browser.execute_script("return sessionStorage.getItem('runcast.token')")
        assert stored == "s3cret"
        browser.execute_script("sessionStorage.clear()")
    browser.get_log("browser")  # the refused requests were logged on purpose


def test_graphiql_says_when_its_assets_cannot_load(
    browser: WebDriver, gateway: GatewayThread
) -> None:
    """Offline, GraphiQL at /graphql says so plainly and links to the dashboard."""
    browser.get(gateway.url + "/graphql")
    alert = wait_until(
        browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"), "the notice"
    )[0]
    assert "GraphiQL could not load" in alert.text
    link = alert.find_element(By.TAG_NAME, "a")
    assert link.get_attribute("href") == gateway.url + "/"
    browser.get_log("browser")  # the CDN failures are the point of this test


def test_screenshot_script_writes_the_readme_pictures(tmp_path: Path) -> None:
    """scripts/screenshots.py (the README's pictures) photographs the three views."""
    path = Path(__file__).parent.parent / "scripts" / "screenshots.py"
    spec = importlib.util.spec_from_file_location("screenshots", path)
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path)]) == 0
    for name in ("workflows.png", "runs.png", "run.png"):
        picture = (tmp_path / name).read_bytes()
        assert picture.startswith(b"\x89PNG"), name
        assert len(picture) > 10_000, name
