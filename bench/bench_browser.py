"""What a visitor waits for in a real browser on a server just started: the first page, the next
page, and the quick demo from its click to its result.

    python bench/bench_browser.py [--repeats 3] [--write docs/benchmarks.md]

Each repeat starts `streamlit run app.py` (headless, a fresh home folder, the default settings:
one worker per core, one torch thread each) and, once its health check answers, drives Debian's
Chromium through Playwright:

1. the first page after server start: from `goto` of the lab's address to Home's title drawn and
   its script finished (Streamlit's frontend loading included: what the visitor sees);
2. New experiment opened from the sidebar a few seconds later (what the background warm-up of
   ui/warmup.py is for);
3. the quick demo: from the click on "Run the quick demo" to "7/7 runs done" and the summary
   with its mean and spread over three seeds (workers started, teacher trained once, six
   students trained and measured);
4. on a second fresh server, New experiment as the very first page (a deep link).

Targets: the first page under 2 s; the demo within 30 s of the click on two cores.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_util import cpu_model  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SETTLED = "[data-testid='stApp'][data-test-script-state='notRunning']"


def load() -> float:
    return os.getloadavg()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` on a free port with a fresh home; stops it and its worker pool."""

    def __init__(self, tmp: Path):
        self.home = tmp / "home"
        self.home.mkdir()
        self.port = free_port()
        env = {**os.environ, "DISTILL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        env.pop("DISTILL_MEASURE", None)
        self.log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port",
                                      str(self.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://localhost:{self.port}"
        started = time.perf_counter()
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the app did not start: " + (tmp / "server.log").read_text()[-2000:])
            time.sleep(0.1)
        self.start_seconds = time.perf_counter() - started  # process start to the health check's "ok"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        from distill_core.jobs.executor import stop_pools

        stop_pools(self.home)


def timed_page(page, url: str | None, heading: str, click=None) -> float:
    """Seconds from `goto(url)` (or `click()`) to `heading` drawn and the script finished."""
    from playwright.sync_api import expect

    t = time.perf_counter()
    if url is not None:
        page.goto(url)
    else:
        click()
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=120_000)
    page.wait_for_selector(SETTLED, timeout=120_000)
    return time.perf_counter() - t


def one_repeat(exe: str) -> dict:
    from playwright.sync_api import expect, sync_playwright

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        tmp = Path(tmp)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        server = Server(tmp / "a")
        try:
            out["load_start"], out["server_start"] = load(), server.start_seconds
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            out["first_page"] = timed_page(page, server.url, "Distillation Lab")
            time.sleep(3)  # the visitor reads the first page
            nav = page.get_by_test_id("stSidebarNav")
            out["next_page"] = timed_page(page, None, "New experiment", lambda: nav.get_by_role("link", name="New experiment").click())
            timed_page(page, None, "Distillation Lab", lambda: nav.get_by_role("link", name="Home").click())
            t = time.perf_counter()
            page.get_by_role("button", name="Run the quick demo").click()
            expect(page.get_by_text("7/7 runs done")).to_be_visible(timeout=300_000)
            expect(page.get_by_text("over 3 seeds").first).to_be_visible(timeout=60_000)
            out["demo"] = time.perf_counter() - t
            out["load_end"] = load()
        finally:
            server.stop()
        server = Server(tmp / "b")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            out["deep_link"] = timed_page(page, f"{server.url}/new_experiment", "New experiment")
        finally:
            server.stop()
            browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", default=None, help="Markdown file whose '## Browser (issue 16)' section is replaced")
    args = ap.parse_args()
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    rows = []
    for i in range(args.repeats):
        r = one_repeat(exe)
        rows.append(r)
        print(f"repeat {i + 1}: server start {r['server_start']:.1f} s, first page {r['first_page']:.2f} s, New experiment next {r['next_page']:.2f} s, "
              f"demo {r['demo']:.1f} s, New experiment as first page {r['deep_link']:.2f} s "
              f"(load {r['load_start']:.1f} -> {r['load_end']:.1f})", flush=True)
    best = {k: min(r[k] for r in rows) for k in ("server_start", "first_page", "next_page", "demo", "deep_link")}
    table = "\n".join(f"| {i + 1} | {r['load_start']:.1f} / {r['load_end']:.1f} | {r['server_start']:.1f} | {r['first_page']:.2f} | "
                      f"{r['next_page']:.2f} | {r['deep_link']:.2f} | {r['demo']:.1f} |" for i, r in enumerate(rows))
    verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    body = f"""`python bench/bench_browser.py --repeats {args.repeats}`, {time.strftime('%Y-%m-%d')}. Machine: {machine};
Chromium (Debian) through Playwright, a fresh `streamlit run app.py` and home folder per repeat, the default
settings (one worker per core, one torch thread each). Seconds, from `goto` or the click to the heading drawn and
the page's script finished (the frontend's loading included); the demo from its click to "7/7 runs done" and its
summary over three seeds. "Server start" is from launching `streamlit run` to its health check answering:
it includes the pages' imports, which the server does before it takes a visitor (ui/warmup.py).

| repeat | load average at start / end | server start | first page (Home) | New experiment, opened next | New experiment as the first page | quick demo, click to result |
|---|---|---|---|---|---|---|
{table}

Best of {args.repeats}: first page {best['first_page']:.2f} s (target < 2 s: {verdict(best['first_page'] < 2)}),
New experiment opened next {best['next_page']:.2f} s, as the very first page {best['deep_link']:.2f} s; the
three-seed quick demo {best['demo']:.1f} s from the click (target <= 30 s: {verdict(best['demo'] <= 30)})."""
    print()
    print(body)
    if args.write:
        from bench_util import write_section

        write_section(args.write, "Browser (issue 16)", body)


if __name__ == "__main__":
    main()
