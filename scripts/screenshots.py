"""Regenerate the dashboard screenshots in docs/screenshots/ (shown in the README).

Starts a gateway on the embedded engine with the demo workflows (a fresh database in a
temporary folder), starts a few runs through the public GraphQL API, and photographs the
workflows page, a runs table and a run page in headless Chromium::

    python3 scripts/screenshots.py            # writes docs/screenshots/*.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import GatewayThread, chromium  # noqa: E402
from runcast.settings import Settings  # noqa: E402

TRIGGER = """mutation($w: ID!, $i: ID, $input: JSON) {
  triggerRun(workflowId: $w, instanceId: $i, input: $input) { instanceId }
}"""
APPROVE = """mutation($i: ID!) {
  sendEvent(workflowId: "order-approval", instanceId: $i, eventType: "user-approval",
            payload: {approved: true, approvedBy: "ada"}) { status }
}"""
TERMINATE = """mutation($i: ID!) {
  terminateRun(workflowId: "order-approval", instanceId: $i) { status }
}"""


def seed(gateway: GatewayThread) -> None:
    """Runs in several statuses: approved, waiting for approval, terminated, retrying."""
    for number in range(1001, 1008):
        gateway.graphql(
            TRIGGER, {"w": "order-approval", "i": f"order-{number}", "input": {"orderId": number}}
        )
    for number in (1001, 1002, 1003):
        gateway.graphql(APPROVE, {"i": f"order-{number}"})
    gateway.graphql(TERMINATE, {"i": "order-1004"})
    gateway.graphql(TRIGGER, {"w": "flaky-charge", "i": "charge-1", "input": {"orderId": 7}})
    gateway.graphql(TRIGGER, {"w": "always-fails", "i": "payment-1"})
    gateway.graphql(TRIGGER, {"w": "long-sleep", "i": "nap-1"})
    deadline = time.monotonic() + 30
    read = '{ run(workflowId: "order-approval", instanceId: "order-1001") { isTerminal } }'
    while not gateway.graphql(read)["data"]["run"]["isTerminal"]:  # past the 5 s cool-off
        if time.monotonic() > deadline:
            raise SystemExit("order-1001 did not finish")
        time.sleep(0.2)


def shoot(driver: WebDriver, url: str, ready: str, target: Path) -> None:
    """Open ``url``, wait for ``ready`` (a CSS selector), and save the viewport as ``target``."""
    driver.get(url)
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    time.sleep(0.5)  # let the first live messages land
    driver.save_screenshot(str(target))
    print(f"wrote {target}")


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(db_path=Path(folder) / "runs.db")
        with GatewayThread(settings) as gateway, chromium(Path(folder) / "profile") as driver:
            seed(gateway)
            driver.set_window_size(1280, 860)
            shoot(driver, gateway.url + "/", "table.workflows", args.out / "workflows.png")
            shoot(
                driver,
                gateway.url + "/ui/workflows/order-approval",
                'tr[data-instance="order-1001"]',
                args.out / "runs.png",
            )
            driver.set_window_size(1280, 1100)
            shoot(
                driver,
                gateway.url + "/ui/workflows/order-approval/runs/order-1001",
                ".timeline",
                args.out / "run.png",
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
