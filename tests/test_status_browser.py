"""The status page in a real browser: headless Debian chromium driven by Selenium loads /status
from the exporter running against the simulator with failing services, checks the rows and both
filters, that a `<script>`-named service is only text, and saves a screenshot.

Set STATUS_PAGE_SCREENSHOT=docs/status-page.png to refresh the README's screenshot by hand."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from exporter.simulator import Simulation, serve
from tests.harness import running_exporter, sim_config, wait_until

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (make tools)",
)

PROD = "0123456789abcdef0123456789abcd01"
STAGING = "0123456789abcdef0123456789abcd02"
EVIL = '<script>window.__pwned = 1; alert("x")</script><img src=x onerror="window.__pwned = 2">'


@contextmanager
def chromium() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1500,1000",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    # The system chromedriver: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Row:
    def __init__(
        self, *, failing: bool, project: str, generation: str, name: str, cells: dict[str, str]
    ) -> None:
        self.failing = failing
        self.project = project
        self.generation = generation
        self.name = name
        self.cells = cells


def rows(driver: WebDriver) -> dict[str, Row]:
    out = {}
    for tr in driver.find_elements(By.CSS_SELECTOR, "#services tbody tr[data-service-id]"):
        cells = {
            td.get_attribute("data-endpoint"): td.text
            for td in tr.find_elements(By.CSS_SELECTOR, "td[data-endpoint]")
        }
        tds = tr.find_elements(By.TAG_NAME, "td")
        out[str(tr.get_attribute("data-service-id"))] = Row(
            failing="failing" in (tr.get_attribute("class") or ""),
            project=tds[0].text,
            generation=tds[1].text,
            name=tds[2].text.split("\n")[0],
            cells=cells,
        )
    return out


def click(driver: WebDriver, by: str, what: str) -> None:
    """Click something that loads a new page, and wait until it has."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, what).click()
    WebDriverWait(driver, 15).until(staleness_of(old))


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return True
    return False


def drive(url: str, broken: dict[str, tuple[str, str]], every: set[str], shot: Path) -> None:
    """The browser part (blocking: runs in a thread while the exporter serves)."""
    with chromium() as driver:
        driver.get(url + "/status")
        assert no_alert(driver), "a script ran"
        assert driver.find_elements(By.TAG_NAME, "script") == []
        assert driver.find_elements(By.CSS_SELECTOR, "#services img") == []
        assert driver.execute_script("return window.__pwned === undefined") is True
        seen = rows(driver)
        assert set(seen) == every
        order = [r.failing for r in seen.values()]
        assert order == sorted(order, reverse=True), "failing rows first"
        assert {sid for sid, r in seen.items() if r.failing} == set(broken)
        for sid, (endpoint, reason) in broken.items():
            cells = seen[sid].cells
            assert "failing" in cells[endpoint] and reason in cells[endpoint], (sid, cells)
            assert [ep for ep, t in cells.items() if "failing" in t] == [endpoint], cells
        evil = [r for r in seen.values() if r.name == EVIL]
        assert len(evil) == 1, [r.name for r in seen.values()]  # the markup shown as text
        assert {r.generation for r in seen.values()} == {"v1", "v2"}
        driver.save_screenshot(str(shot))

        # Filter "failing only": a plain link.
        click(driver, By.LINK_TEXT, "failing only")
        assert "failing=1" in driver.current_url
        assert set(rows(driver)) == set(broken)
        assert "5 services match" in driver.find_element(By.ID, "summary").text

        # Filter by project through the form (the failing box stays ticked).
        Select(driver.find_element(By.NAME, "project")).select_by_value(STAGING)
        click(driver, By.CSS_SELECTOR, "form button[type=submit]")
        staged = rows(driver)
        assert staged and set(staged) < set(broken)
        assert {r.project for r in staged.values()} == {STAGING}
        assert driver.find_element(By.NAME, "failing").is_selected()
        driver.find_element(By.NAME, "failing").click()  # untick: the whole project
        click(driver, By.CSS_SELECTOR, "form button[type=submit]")
        whole = rows(driver)
        assert set(staged) < set(whole) and {r.project for r in whole.values()} == {STAGING}
        assert "failing=" not in driver.current_url and STAGING in driver.current_url

        # The landing page's summary links to the page.
        driver.get(url + "/")
        table = driver.find_element(By.ID, "projects").text
        assert PROD in table and STAGING in table
        click(driver, By.LINK_TEXT, PROD)
        assert {r.project for r in rows(driver).values()} == {PROD}
        assert no_alert(driver)


async def test_status_page_in_chromium(tmp_path: Path) -> None:
    sim = Simulation(seed=7, services=8, v2_services=4, project_ids=(PROD, STAGING), dynamic=False)
    sim.faults.slow_seconds = 1.5
    evil = sim.add_service(name=EVIL, project_id=STAGING)
    v1 = sorted(s for s, svc in sim.services.items() if svc.generation == "v1" and s != evil)
    v2 = sorted(s for s, svc in sim.services.items() if svc.generation == "v2")
    faults = {
        (v1[0], "details"): ("error", "details", "HTTP 500 ModelArts.3505"),
        (v1[1], "events"): ("throttle", "events", "throttled (HTTP 429 ModelArts.2799)"),
        (v1[2], "monitor"): ("slow", "monitor", "timed out after 0.5 s"),
        (v2[0], "v2_events"): ("malformed", "events", "malformed response"),
        (v2[1], "v2_details"): ("error", "details", "HTTP 500 ModelArts.3505"),
    }
    broken = {}
    for (sid, route), (fault, endpoint, reason) in faults.items():
        if route == "monitor":
            sim.set_status(sid, "running")
        sim.service_faults[(sid, route)] = fault
        broken[sid] = (endpoint, reason)
    async with serve(sim) as api_url:
        config = sim_config(
            api_url, project_ids=(PROD, STAGING), timeout=0.5, retries=0, logs_interval=0.0001
        )
        async with running_exporter(config) as (url, exporter):
            await wait_until(exporter.ready, what="first cycle")

            def all_failed() -> bool:
                snap = exporter.status.page({"failing": "1", "per_page": "1000"})
                return {s.service_id for s in snap.services} == set(broken)

            await wait_until(all_failed, timeout=20, what="the broken services to fail")
            shot = tmp_path / "status-page.png"
            await asyncio.to_thread(drive, url, broken, set(sim.services), shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    target = os.environ.get("STATUS_PAGE_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
