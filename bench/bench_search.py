"""Search: does the budget-driven search find a better student than random search, and at what cost?

The setting is digits, the CNN teacher (cnn-large) and the mcu budget. The first search is the
30-trial search of assets/searches/digits-mcu.yaml (multi-objective TPE, pruning on). The second
is a 30-point random grid over the same space: Optuna's RandomSampler, with no pruning, so every
point trains to the end. Both run in the same home and learn from the same cached teacher,
trained first. For each: trials trained, pruned and rejected before training; wall time (the
scratch twins included); the best student that fits (validation and test accuracy, int8 size);
its scratch twin on 3 seeds ("distillation helped by X +- Y"); and the gap closed. Then the
verdict: does the search's best beat the random grid's best by test accuracy (the mean over 3
seeds) at equal or lower int8 size?

Usage: python bench/bench_search.py [--trials 30] [--epochs 20] [--workers N] [--home DIR] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_util import cpu_model, write_section  # noqa: E402

FILE = ROOT / "assets" / "searches" / "digits-mcu.yaml"


def pct(x) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f} %"


def mean_sd(values) -> str:
    v = list(values)
    if not v:
        return "-"
    sd = f" ± {100 * statistics.stdev(v):.1f}" if len(v) > 1 else ""
    return f"{100 * statistics.mean(v):.1f}{sd} % (n={len(v)})"


def train_teacher(home, plan) -> float:
    from distill_core.jobs import Store, queue

    store = Store(home)
    start = time.perf_counter()
    _, (tid,) = queue.submit(store, plan.experiment(plan.space.smallest()[0]), [plan.teacher])
    while store.run_status(tid)[0] not in ("done", "failed", "cancelled", "interrupted"):
        time.sleep(0.5)
    if store.run_status(tid)[0] != "done":
        raise SystemExit(f"the teacher did not train: {store.get_run(tid)['error']}")
    return time.perf_counter() - start


def one_search(home, spec, verbose: bool) -> dict:
    from distill_core.search import study as studies
    from distill_core.search.driver import Driver
    from distill_core.search.report import report

    name = studies.create(home, spec)
    start = time.perf_counter()
    state = Driver(home, name, log=print if verbose else (lambda line: None)).run()
    wall = time.perf_counter() - start
    r = report(home, name)
    c = r.counts
    pruned = r.trials[r.trials["outcome"] == "pruned"]
    epochs = int(spec.train.get("epochs", 30))
    return {"name": name, "state": state, "wall": wall, "report": r,
            "trained": sum(c.get(k, 0) for k in ("complete", "pruned", "failed")), "complete": c.get("complete", 0),
            "pruned": c.get("pruned", 0), "rejected": c.get("rejected", 0), "failed": c.get("failed", 0),
            "epochs_saved": int(sum(epochs - n for n in pruned["epochs"])), "epochs_asked": epochs}


def row(label: str, s: dict, key: str) -> str:
    from distill_core.search.report import fmt_cost, fmt_delta

    r = s["report"]
    b, t = r.best, r.twin
    if b is None:
        return f"| {label} | {s['trained']} | {s['pruned']} | {s['rejected']} | {s['wall'] / 60:.1f} | none fits | - | - | - | - | - | - |"
    gap = "-" if t is None or t.gap != t.gap else f"{t.gap:.2f}"
    return (f"| {label} | {s['trained']} | {s['pruned']} | {s['rejected']} | {s['wall'] / 60:.1f} | {b['label']} | "
            f"{pct(b['val_accuracy'])} | {mean_sd(t.distilled.values()) if t else pct(b['test_accuracy'])} | "
            f"{fmt_cost(key, b[key])} | {mean_sd(t.scratch.values()) if t else '-'} | {fmt_delta(t) if t else '-'} | {gap} |")


def verdict(search: dict, rand: dict, key: str) -> str:
    from distill_core.search.report import fmt_cost

    s, r = search["report"], rand["report"]
    if s.best is None:
        return "**Missed**: the search found no student that fits mcu."
    if r.best is None:
        return "**Met**: the random grid found no student that fits mcu; the search did."
    s_runs = list(s.twin.distilled.values()) if s.twin and s.twin.distilled else [s.best["test_accuracy"]]
    r_runs = list(r.twin.distilled.values()) if r.twin and r.twin.distilled else [r.best["test_accuracy"]]
    s_acc, r_acc = statistics.mean(s_runs), statistics.mean(r_runs)
    spread = max((statistics.stdev(v) for v in (s_runs, r_runs) if len(v) > 1), default=math.nan)
    diff = (f"a difference of {100 * (s_acc - r_acc):+.1f} points on {len(s_runs)} and {len(r_runs)} seeds "
            f"(the larger standard deviation {100 * spread:.1f} points"
            + ("; within the seeds' spread" if abs(s_acc - r_acc) <= spread else "") + ")")
    cheaper = s.best[key] <= r.best[key]
    met = s_acc > r_acc and cheaper
    words = (f"the search's best has test accuracy {pct(s_acc)} (mean over its seeds) at {fmt_cost(key, s.best[key])}; "
             f"the random grid's best {pct(r_acc)} at {fmt_cost(key, r.best[key])}, {diff}. On validation accuracy, the figure both "
             f"searched on: {pct(s.best['val_accuracy'])} against {pct(r.best['val_accuracy'])}.")
    if met:
        return f"**Met**: {words}"
    why = [] if s_acc > r_acc else ["it is not more accurate on test"]
    why += [] if cheaper else ["it is larger"]
    return f"**Missed** ({' and '.join(why)}): {words}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=None, help="students' epochs (default: the search file's, 20)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--home", default=None, help="home folder (default: a fresh temporary one)")
    ap.add_argument("--verbose", action="store_true", help="print the drivers' lines")
    ap.add_argument("--write", default=None, metavar="MARKDOWN", help="also write the figures into this file")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output goes to a file

    from distill_core.jobs import LocalExecutor
    from distill_core.search.spec import SearchSpec, load_search_file, make_plan

    home = Path(args.home or tempfile.mkdtemp(prefix="bench-search-"))
    base = load_search_file(FILE).to_dict()
    base["trials"] = args.trials
    if args.epochs:
        base["train"] = {**base["train"], "epochs": args.epochs}
    key = base["objectives"][0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} at start"
    print(f"{machine}; home {home}; {args.workers} worker(s)")
    with LocalExecutor(home, workers=args.workers, threads=1, quiet=True, log=None):
        plan = make_plan(SearchSpec.from_dict(base), home)
        teacher_s = train_teacher(home, plan)
        print(f"teacher trained in {teacher_s:.0f} s")
        search = one_search(home, SearchSpec.from_dict(base), args.verbose)
        print(f"search: {search['state']} in {search['wall'] / 60:.1f} min")
        rand = one_search(home, SearchSpec.from_dict({**base, "name": "digits-mcu-random", "sampler": "random",
                                                      "prune": False}), args.verbose)
        print(f"random grid: {rand['state']} in {rand['wall'] / 60:.1f} min")
    header = ("| | trials trained | pruned | rejected before training | wall (min) | best student that fits mcu | "
              "validation | test (seeds) | int8 size | scratch twin, test (seeds) | distillation helped by | gap closed |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|")
    teacher_acc = search["report"].twin.teacher_accuracy if search["report"].twin else math.nan
    body = f"""Machine: {machine}. {args.workers} worker processes, one torch thread each.
Script: `python bench/bench_search.py --trials {args.trials} --epochs {base['train']['epochs']} --write docs/benchmarks.md` ({args.trials} trials each; the search is
`python -m distill_core search assets/searches/digits-mcu.yaml`, the random grid the same file with
`--sampler random --no-prune`).

Digits, teacher cnn-large (test accuracy {pct(teacher_acc)}; trained once in {teacher_s:.0f} s before both
searches and shared by them), students trained {base['train']['epochs']} epochs, every family and method that fits
digits, budget mcu (int8 model in 256 KB, int8 batch-1 latency under 2 ms), objectives: validation accuracy up,
int8 size down. Wall time is from the driver's start to its end, the scratch twins of the front included.
"Test (seeds)" is the best student's test accuracy over the confirmation seeds; the scratch twin is the same
network trained without the teacher on the same seeds.

{header}
{row("search (TPE, pruning)", search, key)}
{row("random grid (no pruning)", rand, key)}

Pruning stopped {search['pruned']} of the search's {search['trained']} trials, saving {search['epochs_saved']} of
{search['trained'] * search['epochs_asked']} epochs; {search['rejected']} candidates (search) and
{rand['rejected']} (random grid) were rejected by their architecture before training.

{verdict(search, rand, key)}
"""
    print(body)
    if args.write:
        write_section(args.write, "Search (issue 15)", body)
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
