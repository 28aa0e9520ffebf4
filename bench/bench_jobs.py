"""Background jobs: what the store and the worker pool cost on top of the runs themselves.

1. A sweep of 20 small digits runs (one student, kd at ten temperatures x two seeds; the
   teacher already cached) on warm workers: wall time from submit to the last result against
   the sum of the runs' own times (seconds inside run_one, and seconds in the training loop).
   With W workers the ideal wall time is sum / W, so the figure is wall x W / sum
   (target: at most 1.2x). Run once with one worker (pure overhead) and once with the default
   pool (one worker per core).
2. Job-start latency on idle warm workers: from submit() returning to the worker's "start"
   event, and to the first progress event from the training loop.

Measurements (ONNX, latency, energy) are off by default so the figure is the jobs layer's
(`--measure default` keeps them). The machine is shared: the load average is printed too.
Usage: python bench/bench_jobs.py [--epochs 20] [--workers N] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import cpu_model, write_section  # noqa: E402

MEASURE_OFF = {k: False for k in ("energy", "pt2", "onnx", "int8", "latency", "card", "budgets")}


def spec(epochs: int, seeds: list[int], temperatures: list[float]) -> dict:
    return {"dataset": "digits", "teacher": "mlp-small", "students": ["hinton-tiny"], "methods": ["kd"],
            "temperatures": temperatures, "seeds": seeds, "baseline": False,
            "teacher_train": {"epochs": 5}, "train": {"epochs": epochs}}


def wait_done(store, ids, timeout=600.0, poll=0.02) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store.list_runs(status=["done", "failed", "cancelled", "interrupted"])
        ended = {r["id"]: r["status"] for r in runs}
        if all(i in ended for i in ids):
            bad = [i for i in ids if ended[i] != "done"]
            if bad:
                raise SystemExit(f"runs {bad} did not finish: {[store.get_run(i)['error'] for i in bad]}")
            return time.time()
        time.sleep(poll)
    raise SystemExit("timed out")


def sweep(home: Path, workers: int, epochs: int, seed_base: int) -> dict:
    from distill_core.jobs import LocalExecutor, queue

    pool = LocalExecutor(home, workers=workers, threads=1, quiet=True, log=None).start()
    try:
        store = pool.store
        # warm-up: the teacher is trained and cached, every worker loads torch and the data
        _, warm = queue.submit(store, spec(epochs, [seed_base + 1000 + i for i in range(2 * workers)], [4.0]))
        wait_done(store, warm)
        temps = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0]
        t0 = time.time()
        _, ids = queue.submit(store, spec(epochs, [seed_base, seed_base + 1], temps))
        ids = [i for i in ids if store.get_run(i)["role"] == "student"]
        assert len(ids) == 20, len(ids)
        t_end = wait_done(store, ids)
        frame = store.results_frame().set_index("run_id").loc[ids]
        wall = t_end - t0
        own = float(frame["run_seconds"].sum())
        train = float(frame["train_seconds"].sum())
        return {"workers": workers, "runs": len(ids), "wall_s": wall, "sum_run_s": own, "sum_train_s": train,
                "ratio_run": wall * workers / own, "ratio_train": wall * workers / train,
                "mean_run_s": own / len(ids)}
    finally:
        pool.shutdown()


def latency(home: Path, workers: int, epochs: int, repeats: int) -> dict:
    from distill_core.jobs import LocalExecutor, queue

    pool = LocalExecutor(home, workers=workers, threads=1, quiet=True, log=None).start()
    try:
        store = pool.store
        _, warm = queue.submit(store, spec(epochs, [5000 + i for i in range(2 * workers)], [4.0]))
        wait_done(store, warm)
        to_start, to_progress, submit_s = [], [], []
        for k in range(repeats):
            time.sleep(0.5)  # workers idle, polling
            s0 = time.time()
            _, ids = queue.submit(store, spec(epochs, [6000 + k], [4.0]))
            t0 = time.time()
            submit_s.append(t0 - s0)
            rid = ids[-1]
            deadline = time.monotonic() + 60
            first_start = first_train = None
            while time.monotonic() < deadline and first_train is None:
                for e in store.progress(rid):
                    if e.get("phase") == "start" and first_start is None:
                        first_start = e["t"]
                    elif e.get("phase") != "start" and first_train is None:
                        first_train = e["t"]
                time.sleep(0.005)
            to_start.append(first_start - t0)
            to_progress.append(first_train - t0)
            wait_done(store, ids)
        return {"repeats": repeats, "submit_s": statistics.median(submit_s),
                "to_start_s": statistics.median(to_start), "to_start_max_s": max(to_start),
                "to_progress_s": statistics.median(to_progress), "to_progress_max_s": max(to_progress)}
    finally:
        pool.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20, help="student epochs per run (20: about a second each)")
    ap.add_argument("--workers", type=int, default=0, help="pool size for the second sweep (0: one per core)")
    ap.add_argument("--repeats", type=int, default=5, help="latency repeats")
    ap.add_argument("--measure", choices=("off", "default"), default="off")
    ap.add_argument("--write", default=None, help="Markdown file whose '## Jobs (issue 5)' section is replaced")
    args = ap.parse_args()
    if args.measure == "off":
        os.environ["DISTILL_MEASURE"] = json.dumps(MEASURE_OFF)
    from distill_core.jobs import default_workers

    workers = args.workers or default_workers()
    cores = os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{cpu_model()}, {cores} cores, Python {platform.python_version()}, load average {load:.1f} at start"
    print(machine)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, w in enumerate(dict.fromkeys([1, workers])):
            r = sweep(Path(tmp) / f"sweep{w}", w, args.epochs, seed_base=100 * i)
            rows.append(r)
            print(f"sweep of {r['runs']} runs, {w} worker(s): wall {r['wall_s']:.2f} s; sum of run times "
                  f"{r['sum_run_s']:.2f} s (training loops {r['sum_train_s']:.2f} s); "
                  f"wall x workers / sum = {r['ratio_run']:.3f} (vs training loops {r['ratio_train']:.3f})")
        lat = latency(Path(tmp) / "latency", workers, args.epochs, args.repeats)
    print(f"job start on idle warm workers (median of {lat['repeats']}): submit() {lat['submit_s'] * 1000:.0f} ms; "
          f"then worker start event {lat['to_start_s'] * 1000:.0f} ms (max {lat['to_start_max_s'] * 1000:.0f}), "
          f"first training progress {lat['to_progress_s'] * 1000:.0f} ms (max {lat['to_progress_max_s'] * 1000:.0f})")
    if args.write:
        table = ["| workers | runs | wall (s) | sum of run times (s) | sum of training loops (s) | wall x workers / run sum | wall x workers / training sum |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            table.append(f"| {r['workers']} | {r['runs']} | {r['wall_s']:.2f} | {r['sum_run_s']:.2f} | {r['sum_train_s']:.2f} "
                         f"| {r['ratio_run']:.3f} | {r['ratio_train']:.3f} |")
        ok = all(r["ratio_run"] <= 1.2 for r in rows)
        body = f"""Machine: {machine}.
Script: `python bench/bench_jobs.py --write docs/benchmarks.md` (student epochs {args.epochs},
measurements {args.measure}; one torch thread per worker).

A sweep of 20 digits runs (hinton-tiny students, kd at ten temperatures x two seeds, teacher
already cached) on warm workers, from submit to the last result. "Run time" is the time a
run spends inside `run_one` (data, teacher from cache, training, evaluation, saving);
"training loop" is the loop alone. Ideal wall time is sum / workers.

{chr(10).join(table)}

Target wall x workers / sum of run times <= 1.2: {"met" if ok else "NOT met"}. The machine is
shared: other people's processes slow the runs themselves (hence different sums per row), and
each ratio compares a sweep with its own runs.

Job start on idle warm workers (median of {lat['repeats']}): `submit()` itself (validation and
expansion) took {lat['submit_s'] * 1000:.0f} ms; from its return to the worker's start event
{lat['to_start_s'] * 1000:.0f} ms (max {lat['to_start_max_s'] * 1000:.0f} ms); to the first progress event
of the training loop {lat['to_progress_s'] * 1000:.0f} ms (max {lat['to_progress_max_s'] * 1000:.0f} ms).
Idle workers poll the store every 0.1 s."""
        write_section(args.write, "Jobs (issue 5)", body)
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
