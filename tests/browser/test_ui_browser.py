"""The web page in a real browser (Debian's headless chromium driven by selenium),
against a real ``workflows CONFIG ui`` process and a real database holding runs of
the example DAGs.

Skipped, with the reason, when chromium, chromedriver or selenium is missing
(``apt-get install chromium chromium-driver``). With ``WORKFLOWS_UI_SCREENSHOTS``
set to a folder, the main pages are saved there as PNG (docs/ui.md uses them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest

from tests.conftest import _create_database, _drop_database, environment_for, libpq_url
from tests.support import start_ui, stop_ui, wait_for, workflows

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG = str(EXAMPLES / "config.py")

pytestmark = pytest.mark.slow

webdriver: Any
try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None


def _missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def env(
    pg_admin_url: str,
    _admin_connection: psycopg2.extensions.connection,
    template_database: str,
) -> Iterator[dict[str, str]]:
    """One database for the module, with a succeeded run of ``hello`` and a failed run
    of ``flaky_fails``, made by the real scheduler."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    name = _create_database(_admin_connection, "test_browser", template=template_database)
    try:
        environ = environment_for(libpq_url(pg_admin_url, name))
        for dag in ("hello", "flaky_fails"):
            assert workflows(CONFIG, "trigger", dag, env=environ).returncode == 0
        workflows(CONFIG, "schedule", "worker", "--until-idle", "--concurrency", "4", env=environ)
        yield environ
    finally:
        _drop_database(_admin_connection, name)


@pytest.fixture(scope="module")
def browser(env: dict[str, str]) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options
    )
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def read_only(env: dict[str, str]) -> Iterator[str]:
    proc, base = start_ui(CONFIG, env)
    try:
        yield base
    finally:
        stop_ui(proc)


@pytest.fixture(scope="module")
def with_actions(env: dict[str, str]) -> Iterator[str]:
    proc, base = start_ui(CONFIG, env, "--allow-actions")
    try:
        yield base
    finally:
        stop_ui(proc)


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("WORKFLOWS_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        metrics = {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            driver.save_screenshot(str(Path(folder) / f"{name}.png"))
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_dag_list_shows_the_example_dags(browser: Any, read_only: str) -> None:
    browser.get(read_only + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.dag")
    names = [row.get_attribute("data-dag") for row in rows]
    assert set(names) >= {"fan_out", "flaky_fails", "greeting", "hello", "warehouse"}
    assert names[0] == "flaky_fails"  # failing DAGs first
    assert rows[0].find_element(By.CSS_SELECTOR, ".badge").text == "failed"
    screenshot(browser, "dags")


def test_clicking_a_dag_shows_its_grid_and_graph(browser: Any, read_only: str) -> None:
    browser.get(read_only + "/")
    browser.find_element(By.LINK_TEXT, "hello").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "hello"
    tasks = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.grid th.task")]
    assert tasks == ["begin.yaml", "say_hello.sh", "count_words.py", "finish.yaml"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.grid a.cell.s-succeeded")) == 4
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.dag-graph g.node.s-succeeded")
    assert len(nodes) == 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.dag-graph path.edge")) == 3
    screenshot(browser, "dag")


def test_a_failed_tasks_log_opens_from_the_grid(browser: Any, read_only: str) -> None:
    browser.get(read_only + "/dags/flaky_fails")
    browser.find_element(By.CSS_SELECTOR, "table.grid a.cell.s-failed").click()
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("fails.sh")
    assert "about to fail" in browser.find_element(By.CSS_SELECTOR, "pre.log").text
    browser.find_element(By.PARTIAL_LINK_TEXT, "run ").click()
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Run ")
    screenshot(browser, "run")


def test_without_allow_actions_there_is_no_button(browser: Any, read_only: str) -> None:
    for path in ("/", "/dags/greeting"):
        browser.get(read_only + path)
        browser.implicitly_wait(0)
        try:
            assert browser.find_elements(By.CSS_SELECTOR, "form.action button") == []
        finally:
            browser.implicitly_wait(10)


def test_the_trigger_button_starts_a_run(browser: Any, with_actions: str) -> None:
    browser.get(with_actions + "/dags/greeting")
    browser.find_element(By.XPATH, "//button[text()='Trigger a run']").click()
    wait_for(lambda: "/runs/" in browser.current_url, timeout=30, what="the new run's page")
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading.startswith("Run ") and "of greeting" in heading
    assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "running"
    trigger = browser.find_element(By.XPATH, "//dt[text()='Trigger']/following-sibling::dd")
    assert trigger.text.startswith("manual by ui")


def test_a_running_runs_page_refreshes_itself_until_the_run_ends(
    browser: Any, read_only: str, env: dict[str, str]
) -> None:
    run_id = workflows(CONFIG, "trigger", "fan_out", env=env).stdout.strip()
    browser.get(f"{read_only}/runs/{run_id}")
    assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "running"
    assert browser.find_element(By.TAG_NAME, "main").get_attribute("data-live") == "1"
    marker = browser.execute_script("window.notReloaded = true; return window.notReloaded")
    workflows(CONFIG, "schedule", "worker", "--until-idle", "--concurrency", "4", env=env)

    def ended() -> bool:
        main = browser.find_element(By.TAG_NAME, "main")
        return main.get_attribute("data-live") == "0"

    wait_for(ended, timeout=60, what="the page to show the run ended", step=0.5)
    assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "succeeded"
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.task-runs tbody tr")) == 5
    # The content was swapped in place: the same document, not a reload.
    assert browser.execute_script("return window.notReloaded") is marker is True
