"""The newcomer's path in a real browser: start the app, run the quick demo, watch it finish,
open the distilled student, check its figures, download its ONNX file, upload it back as an ONNX
teacher, save screenshots; and run a small search from the Search page and see its front.

Headless Chromium from Debian (`apt-get install chromium`) driven by Playwright through
`executable_path` (never `playwright install`). In CI (CI=true) a missing browser fails the
test; elsewhere it is skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from distill_core.jobs.executor import stop_pools

ROOT = Path(__file__).resolve().parents[1]
# Screenshots go to the test's temporary folder; DISTILL_SCREENSHOTS=1 refreshes the README's.
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEMO_TIMEOUT_S = 300  # the digits-quick preset: a CNN teacher, then an MLP student twice on three seeds

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def need_browser():
    """The chromium executable and Playwright, or skip (fail in CI) saying what is missing."""
    missing = []
    exe = chromium_path()
    if exe is None:
        missing.append("Debian's chromium (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -r requirements-dev.txt)")
    if missing:
        why = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why + " (mandatory in CI)")
        pytest.skip(why)
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(tmp_path):
    """`streamlit run app.py` on a free port with an empty DISTILL_HOME; stops the server and
    the worker pool the app started when the test ends."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {**os.environ, "DISTILL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("DISTILL_MEASURE", None)  # measure as a newcomer's runs are measured (energy included)
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.3)
        yield {"url": url, "home": home, "tmp": tmp_path}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        stop_searches(home)
        stop_pools(home)  # the worker pool the app started


def stop_searches(home: Path) -> None:
    """Stop the search drivers the app started for this home (their pids are in its studies)."""
    from distill_core.jobs.host import pid_alive
    from distill_core.search import study as studies

    try:
        drivers = [studies.load(home, n).user_attrs.get("driver") or {} for n in studies.names(home)]
        for n in studies.names(home):
            studies.request_stop(home, n)
    except Exception:
        return
    pids = [int(d["pid"]) for d in drivers if d.get("pid")]
    deadline = time.monotonic() + 20
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in pids:
        if pid_alive(p):
            os.kill(p, signal.SIGKILL)


def settle(page, timeout: float = 60_000) -> None:
    """Wait until the page's script run has finished (widgets are inert while it runs)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)


def visible_plots(page) -> int:
    return page.locator(".js-plotly-plot").evaluate_all(
        "els => els.filter(e => e.offsetParent !== null && e.getBoundingClientRect().height > 50).length")


def runs_page_while_training(browser, url: str) -> bool:
    """In a second tab, the Runs page with its live curves while the demo trains; saves the
    screenshot and returns True, or False when training ended before the curves showed (a
    fast machine). The live section itself is checked by the page tests."""
    from playwright.sync_api import Error, expect

    tab = browser.new_page(viewport={"width": 1400, "height": 1300})
    try:
        tab.goto(f"{url}/runs")
        expect(tab.get_by_text("Training now")).to_be_visible(timeout=60_000)
        tab.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(e => e.offsetParent !== null)",
                              timeout=30_000)
        expect(tab.get_by_text("Experiment", exact=True)).to_be_visible(timeout=30_000)
        time.sleep(1.5)  # let the curves draw
        tab.screenshot(path=str(SHOTS / "runs.png"))
        return True
    except (AssertionError, Error):
        return False
    finally:
        tab.close()


def use_screenshot_folder(tmp_path: Path) -> None:
    """Screenshots go to the test's folder, or to the README's with DISTILL_SCREENSHOTS=1."""
    global SHOTS
    if os.environ.get("DISTILL_SCREENSHOTS") != "1":
        SHOTS = tmp_path / "screenshots"
    SHOTS.mkdir(parents=True, exist_ok=True)


def test_quick_demo_to_onnx_download(app_server, tmp_path):
    exe = need_browser()
    from playwright.sync_api import expect, sync_playwright

    use_screenshot_folder(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300}, accept_downloads=True)
            page.goto(app_server["url"])
            page.get_by_role("button", name="Run the quick demo").click()
            expect(page.get_by_text("Quick demo (experiment #1)")).to_be_visible(timeout=30_000)
            live_shot = runs_page_while_training(browser, app_server["url"])
            # progress reaches done: all seven runs (teacher, scratch and distilled student on three seeds)
            expect(page.get_by_text("7/7 runs done")).to_be_visible(timeout=DEMO_TIMEOUT_S * 1000)
            expect(page.get_by_text("over 3 seeds").first).to_be_visible(timeout=30_000)  # mean and spread
            link = page.get_by_role("link", name="Open the distilled student")
            expect(link).to_be_visible(timeout=30_000)
            expect(page.get_by_text("No finished runs yet")).to_have_count(0, timeout=30_000)  # redrawn once done
            page.screenshot(path=str(SHOTS / "home.png"))

            link.click()
            page.wait_for_url("**/run_detail?run=*", timeout=30_000)
            expect(page.get_by_role("heading", name="kd T=2")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("test accuracy", exact=True)).to_be_visible()
            settle(page)
            # every tab with figures shows them
            for tab in ("Training", "Errors", "Calibration", "Predictions"):
                page.get_by_role("tab", name=tab).click()
                settle(page)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.js-plotly-plot')]"
                    ".some(e => e.offsetParent !== null && e.getBoundingClientRect().height > 50)", timeout=30_000)
                assert visible_plots(page) >= 1, tab
                if tab == "Predictions":
                    assert visible_plots(page) >= 6  # one chart per sample
                    page.screenshot(path=str(SHOTS / "run_detail.png"))
            page.get_by_role("tab", name="Cost").click()
            settle(page)
            expect(page.get_by_text("Latency", exact=False).first).to_be_visible()
            energy_failed = page.get_by_text("Energy unavailable").count() > 0  # CodeCarbon could not measure here
            assert energy_failed or visible_plots(page) == 1  # the energy per phase chart
            assert "unavailable: 0" not in page.content()

            page.get_by_role("tab", name="Files").click()
            with page.expect_download(timeout=30_000) as got:
                page.get_by_role("button", name="Download ONNX model (fp32)").click()
            target = tmp_path / "student.onnx"
            got.value.save_as(target)
            assert got.value.suggested_filename.endswith("model.onnx")
            import onnx

            model = onnx.load(str(target))  # a real ONNX graph, not an error page
            assert model.graph.input[0].name == "input"

            # The downloaded model as a teacher given as an ONNX file: uploaded, checked against digits.
            page.get_by_role("link", name="New experiment", exact=True).click()
            expect(page.get_by_role("heading", name="New experiment")).to_be_visible(timeout=30_000)
            settle(page)
            page.get_by_test_id("stRadio").get_by_text("An ONNX model", exact=True).click()
            settle(page)
            uploader = page.get_by_test_id("stFileUploader").filter(has_text="Upload an ONNX model")
            uploader.locator("input[type=file]").set_input_files(str(target))
            expect(page.get_by_text("The file fits this data set: an ONNX model")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("This launches 3 runs")).to_be_visible(timeout=30_000)  # teacher, scratch, kd

            page.get_by_role("link", name="Runs", exact=True).click()
            expect(page.get_by_role("button", name="Delete")).to_be_visible(timeout=30_000)
            expect(page.get_by_text("Experiment", exact=True)).to_be_visible(timeout=30_000)
            settle(page)
            expect(page.get_by_text("✓ done: 7")).to_be_visible()  # the queue summary: seven runs done
            if not live_shot:
                page.screenshot(path=str(SHOTS / "runs.png"))

            # Compare: the three runs on the trade-off plots, with the frontier
            page.get_by_role("link", name="Compare", exact=True).click()
            expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=30_000)
            settle(page)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.js-plotly-plot')]"
                ".filter(e => e.offsetParent !== null && e.getBoundingClientRect().height > 50).length >= 4", timeout=30_000)
            expect(page.get_by_text("Pareto frontier").first).to_be_attached()
            expect(page.get_by_text("unavailable: 0")).to_have_count(0)
            page.screenshot(path=str(SHOTS / "compare.png"), full_page=False)

            # Learn: the temperature explorer on the demo's teacher
            page.get_by_role("link", name="Learn", exact=True).click()
            expect(page.get_by_role("heading", name="Learn")).to_be_visible(timeout=30_000)
            settle(page)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.js-plotly-plot')].some(e => e.offsetParent !== null)", timeout=30_000)
            page.screenshot(path=str(SHOTS / "learn.png"))
            assert not page.get_by_test_id("stException").count(), "a page raised"
        finally:
            browser.close()


def test_a_small_search_from_the_search_page_draws_its_front(app_server, tmp_path):
    """Its own test (and time limit): the demo's path above already fills most of its five minutes."""
    exe = need_browser()
    from playwright.sync_api import sync_playwright

    use_screenshot_folder(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(app_server["url"])
            settle(page)
            search_finds_a_front(page)
        finally:
            browser.close()


def search_finds_a_front(page) -> None:
    """A search on the moons toy set (3 trials of 3 epochs, the mcu budget, one confirmation seed)
    started from the Search page, which starts the workers, runs in the background and ends with
    its trials and front drawn and its answer written."""
    from playwright.sync_api import expect

    page.get_by_role("link", name="Search", exact=True).click()
    expect(page.get_by_role("heading", name="Search")).to_be_visible(timeout=30_000)
    settle(page)
    page.get_by_test_id("stSelectbox").filter(has_text="Data set").click()
    page.get_by_role("option", name="moons", exact=True).click()
    settle(page)
    for label, value in (("trials", "3"), ("confirm seeds", "1"), ("epochs", "3")):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        settle(page)
    page.get_by_role("button", name="Start the search").click()
    expect(page.get_by_text("started: its driver runs in the background")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Best student that fits mcu")).to_be_visible(timeout=120_000)
    settle(page)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".filter(e => e.offsetParent !== null && e.getBoundingClientRect().height > 50).length >= 2", timeout=30_000)
    expect(page.get_by_text("Pareto front (fits the budget)").first).to_be_attached()
    expect(page.get_by_role("heading", name="Front", exact=False)).to_be_visible()
    page.screenshot(path=str(SHOTS / "search.png"))
    assert not page.get_by_test_id("stException").count(), "the Search page raised"


def test_deep_link_on_a_fresh_server_goes_through_the_app_navigation(app_server):
    """The first visit after start-up is a link to a page: it gets the app's navigation and
    that page, not Streamlit's list of the files in pages/ nor a "page not found"."""
    exe = need_browser()
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{app_server['url']}/new_experiment")
            expect(page.get_by_role("heading", name="New experiment")).to_be_visible(timeout=30_000)
            nav = page.get_by_test_id("stSidebarNav")
            expect(nav.get_by_text("Compare")).to_be_visible(timeout=30_000)
            expect(nav.get_by_text("common")).to_have_count(0)
            settle(page)
            expect(page.get_by_text("Page not found")).to_have_count(0)
        finally:
            browser.close()
