"""Dashboard speed: time to first render of every page with 200 finished runs in the store,
and how the pages respond while two runs train on the machine's cores.

    python bench/bench_pages.py [--runs 200] [--repeats 5] [--write docs/benchmarks.md]

The store is filled through the store's own API: a real teacher and a real distilled student
are trained (tiny, on digits), then the other runs of a 200-run sweep are finished with copies
of the real student's result (accuracy jittered), so every page reads full-size results.
Renders go through streamlit.testing.v1.AppTest (the page script, its store reads and figure
building, without a browser). Target: every page under two seconds.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_util import cpu_model  # noqa: E402

PAGES = ["pages/home.py", "pages/new_experiment.py", "pages/runs.py", "pages/run_detail.py", "pages/settings.py",
         "pages/compare.py", "pages/learn.py"]
TARGET_S = 2.0


def fill_store(home: Path, n_runs: int) -> dict:
    """A real teacher and KD student, then enough fake-but-valid finished runs for n_runs."""
    from distill_core.jobs import Store, queue
    from distill_core.jobs.queue import claim
    from distill_core.jobs.worker import execute_run

    store = Store(home)
    base = {"name": "real", "dataset": "digits", "teacher": {"arch": "mlp", "hidden": [64]},
            "students": [{"arch": "mlp", "hidden": [16]}], "methods": [{"name": "kd"}], "temperatures": [4.0],
            "alphas": [0.9], "seeds": [0], "train": {"epochs": 5, "batch_size": 64}}
    queue.submit(store, base)
    while (run := claim(store, os.getpid())) is not None:
        execute_run(store, run, threads=1, log=None)
    real = next(r for r in store.list_runs(status="done") if "kd" in r["label"])
    template = store.get_run(real["id"])["result"]
    widths = [8, 12, 16, 24, 32, 48]
    temps = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0]
    seeds = list(range(max(1, -(-n_runs // (len(widths) * len(temps))))))
    sweep = {**base, "name": "sweep", "students": [{"arch": "mlp", "hidden": [w]} for w in widths],
             "temperatures": temps, "seeds": seeds}
    queue.submit(store, sweep)
    rng = random.Random(0)
    done = len(store.list_runs(status="done"))
    while done < n_runs and (run := claim(store, os.getpid())) is not None:
        result = copy.deepcopy(template)
        cfg = json.loads(run["config"])
        result.update(config=cfg, hash=run["hash"], role=cfg["role"])
        result["metrics"]["accuracy"] = min(1.0, max(0.0, template["metrics"]["accuracy"] + rng.gauss(0, 0.02)))
        store.finish(run["id"], result)
        done += 1
    # leave anything beyond n_runs queued-then-cancelled, so the count of finished runs is exact
    for r in store.list_runs(status="queued"):
        queue.cancel(store, r["id"])
    return {"store": store, "detail": real["id"], "done": len(store.list_runs(status="done"))}


def render_times(page: str, repeats: int, query: dict | None = None) -> list[float]:
    """Seconds per render of `page` in a fresh session (the app first, then the page)."""
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(repeats):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        if page == "pages/home.py":
            t = time.perf_counter()
            at.run()
        else:
            at.run()
            at.query_params.update(query or {})
            at.switch_page(page)
            t = time.perf_counter()
            at.run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(f"{page}: {at.exception[0].value}")
    return times


COLD = """
import sys, time
from streamlit.testing.v1 import AppTest
page, run = sys.argv[1], sys.argv[2]
t = time.perf_counter()
at = AppTest.from_file({app!r}, default_timeout=300)
at.run()
if page != "pages/home.py":
    at.query_params["run"] = run
    at.switch_page(page).run()
print(time.perf_counter() - t)
"""


def cold_render(page: str, detail: int) -> float:
    """Seconds from a fresh Python process (Streamlit imported) to the page drawn: what the
    first visitor after `streamlit run` waits, imports of torch and the registries included.
    Pages other than Home include Home's render too (the app opens on Home first)."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", COLD.format(app=str(ROOT / "app.py")), page, str(detail)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure_pages(repeats: int, detail: int) -> dict[str, dict]:
    out = {}
    for page in PAGES:
        if not (ROOT / page).is_file():
            continue
        query = {"run": str(detail)} if page.endswith("run_detail.py") else None
        times = render_times(page, repeats + 1, query)
        first, rest = cold_render(page, detail), times[1:]
        out[page] = {"first": first, "median": statistics.median(rest), "max": max(rest)}
        print(f"  {page:<26} fresh process {first:6.3f} s   median {statistics.median(rest):6.3f} s   max {max(rest):6.3f} s")
    return out


def start_training(home: Path, epochs: int) -> None:
    """Two long student runs on a worker pool of two (the teacher is cached already)."""
    from distill_core.jobs import Store, ensure_workers, queue

    store = Store(home)
    spec = {"name": "busy", "dataset": "digits", "teacher": {"arch": "mlp", "hidden": [64]},
            "students": [{"arch": "cnn", "channels": [32, 64]}], "methods": [{"name": "kd"}],
            "temperatures": [4.0], "alphas": [0.9], "seeds": [0], "train": {"epochs": epochs, "batch_size": 64}}
    queue.submit(store, spec)  # a distilled CNN student and its scratch baseline: two runs side by side
    ensure_workers(home, workers=2, threads=1)
    deadline = time.monotonic() + 120
    while store.queue_state()["running"] < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the two runs did not start")
        time.sleep(0.5)


def stop_pool(home: Path) -> None:
    import signal

    from distill_core.jobs import Store, queue
    from distill_core.jobs.host import HOST, pid_alive
    from distill_core.jobs.workers import workers

    store = Store(home)
    for r in store.list_runs(status=["queued", "running"]):
        queue.cancel(store, r["id"])
    for w in workers(store):
        if w["kind"] == "pool" and w["host"] == HOST and pid_alive(w["pid"]):
            os.kill(w["pid"], signal.SIGTERM)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=400, help="epochs of the two runs that train meanwhile")
    ap.add_argument("--write", default=None, help="Markdown file whose '## Dashboard (issue 6)' section is replaced")
    args = ap.parse_args()
    write = Path(args.write).resolve() if args.write else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} at start"
    print(machine)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "settings.json").write_text(json.dumps({"autostart": False}))
        os.environ["DISTILL_HOME"] = str(home)
        os.chdir(tmp)
        t = time.perf_counter()
        lab = fill_store(home, args.runs)
        print(f"store filled with {lab['done']} finished runs in {time.perf_counter() - t:.1f} s")
        size = sum(f.stat().st_size for f in home.glob("lab.sqlite*"))
        print("idle machine, render times:")
        idle = measure_pages(args.repeats, lab["detail"])
        try:
            start_training(home, args.epochs)
            print("while two runs train, render times:")
            busy = measure_pages(args.repeats, lab["detail"])
            still = lab["store"].queue_state()["running"]
        finally:
            stop_pool(home)
    rows = []
    for page in idle:
        i, b = idle[page], busy.get(page, {})
        rows.append(f"| {page} | {i['first']:.2f} | {i['median']:.2f} | {b.get('median', float('nan')):.2f} | "
                    f"{b.get('max', float('nan')):.2f} |")
    worst_idle = max(v["median"] for v in idle.values())
    worst_busy = max(v["median"] for v in busy.values())
    body = f"""Machine: {machine}.
Script: `python bench/bench_pages.py --write docs/benchmarks.md` ({lab['done']} finished runs in the store,
SQLite files {size / 1e6:.1f} MB; renders through `streamlit.testing.v1.AppTest`, each in a fresh
session, {args.repeats} repeats after a first one; "busy" while two runs train on a pool of two
workers, one torch thread each, {still} still running at the end).

Seconds to render each page (the script, its store reads and its figures; no browser):

| page | fresh process, idle | median, idle | median, two runs training | max, two runs training |
|---|---|---|---|---|
{chr(10).join(rows)}

Target: every page under {TARGET_S:g} s: {'met' if worst_idle < TARGET_S else 'NOT met'} on an idle machine (slowest median
{worst_idle:.2f} s), {'met' if worst_busy < TARGET_S else 'NOT met'} while two runs train (slowest median {worst_busy:.2f} s).
Not met for the first visit after start-up of a page that loads a data set or counts FLOPs
(fresh process): New experiment pays once for importing scikit-learn (about 1 s, the digits
preview) and for the first FLOP count (about 1 s); Streamlit then caches both.
"Fresh process" is the first render after start-up (a new Python process with Streamlit loaded:
importing torch and the registries included; for pages other than Home, Home's render too, as the
app opens there). Later renders hit Streamlit's caches (results frame per store version, data
previews, model summaries, sample predictions). compare.py and learn.py are issue 7's pages.
While runs are active, pages poll the store every 2 s from a fragment (`st.fragment(run_every=...)`)
that reads only the active runs; with nothing active they do not poll at all."""
    print()
    print(body)
    if write:
        from bench_util import write_section

        write_section(write, "Dashboard (issue 6)", body)
        print(f"\nwrote the section to {write}")


if __name__ == "__main__":
    main()
