"""The Ray executor: how it scales with worker CPUs, and what it costs against the local pool.

In one run, the same sweep of 10 digits runs (hinton-tiny students, kd at five temperatures x
two seeds, the teacher already cached), from submit to the last result:

1. on a local Ray instance with 1 worker CPU, and with 2 (target: 2 CPUs at least 1.7x faster);
2. on the local pool with 1 and with 2 worker processes (target: Ray within 1.15x of the pool
   with as many workers; the 2-worker ratio is the one the target is judged on).

Each executor is warmed up first on the same home (the teacher trained and cached, every
worker has imported torch and run a run), as a long-lived executor is. Every run asks for one
CPU and one torch thread. Ray's files go to a temporary folder of this script. Measurements
(ONNX, latency, energy) are off, as in bench_jobs.py, so the figures are the executors'. The
machine is shared: the load average before and after is printed, and each configuration runs
`--rounds` times (the best round counts, as timeit advises: the least disturbed one).
Usage: python bench/bench_ray.py [--epochs 100] [--rounds 2] [--write docs/benchmarks.md]
A smoke test of the script (not figures to keep): --runs 2 --epochs 5 --rounds 1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_jobs import MEASURE_OFF, spec, wait_done  # noqa: E402
from bench_util import cpu_model, write_section  # noqa: E402

TEMPERATURES = [1.0, 2.0, 4.0, 8.0, 16.0]


def sweep(executor, epochs: int, seed_base: int, runs: int) -> dict:
    """Warm the executor up on its home, then time the sweep of `runs` runs (two seeds x the
    first runs/2 temperatures)."""
    from distill_core.jobs import queue

    store = executor.store
    _, warm = queue.submit(store, spec(epochs, [seed_base + 1000 + i for i in range(min(4, max(2, runs)))], [4.0]))
    wait_done(store, warm)
    t0 = time.time()
    _, ids = queue.submit(store, spec(epochs, [seed_base, seed_base + 1], TEMPERATURES[: runs // 2]))
    ids = [i for i in ids if store.get_run(i)["role"] == "student"]
    assert len(ids) == runs, len(ids)
    wall = wait_done(store, ids) - t0
    frame = store.results_frame().set_index("run_id").loc[ids]
    return {"wall_s": wall, "sum_run_s": float(frame["run_seconds"].sum()),
            "nodes": sorted({store.get_run(i)["node"] for i in ids})}


def on_ray(home: Path, cpus: int, epochs: int, seed_base: int, runs: int) -> dict:
    from distill_core.jobs.ray_executor import RayExecutor

    t0 = time.monotonic()
    ex = RayExecutor(home, address="", workers=cpus, threads=1, log=None).start()
    try:
        start = time.monotonic() - t0
        return {"executor": f"Ray, {cpus} CPU" + ("s" if cpus > 1 else ""), **sweep(ex, epochs, seed_base, runs), "start_s": start}
    finally:
        ex.shutdown()


def on_pool(home: Path, workers: int, epochs: int, seed_base: int, runs: int) -> dict:
    from distill_core.jobs import LocalExecutor

    t0 = time.monotonic()
    ex = LocalExecutor(home, workers=workers, threads=1, quiet=True, log=None).start()
    try:
        start = time.monotonic() - t0
        return {"executor": f"local pool, {workers} worker" + ("s" if workers > 1 else ""),
                **sweep(ex, epochs, seed_base, runs), "start_s": start}
    finally:
        ex.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100, help="student epochs per run (100: about 1.5 s each)")
    ap.add_argument("--rounds", type=int, default=2, help="times each configuration runs (the best counts)")
    ap.add_argument("--runs", type=int, default=10, choices=range(2, 11, 2), metavar="{2,4,...,10}",
                    help="runs in the timed sweep (10: the target's sweep; fewer only to try the script)")
    ap.add_argument("--write", default=None, help="Markdown file whose '## Ray executor (issue 14)' section is replaced")
    args = ap.parse_args()
    if args.write and args.runs != 10:
        ap.error("--write keeps the figures of the 10-run sweep only: drop --runs")
    if args.write:
        args.write = str(Path(args.write).resolve())
    os.environ["DISTILL_MEASURE"] = json.dumps(MEASURE_OFF)
    tmp = tempfile.mkdtemp(prefix="bray", dir="/tmp")  # short: Ray's socket paths must stay short
    os.makedirs(Path(tmp) / "ray")
    os.environ["RAY_TMPDIR"] = tmp  # Ray's session files, and its note of the current cluster, stay ours
    import ray

    load0 = os.getloadavg()
    machine = (f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, Ray {ray.__version__}, "
               f"load average {load0[0]:.2f} (1 min) / {load0[1]:.2f} (5 min) at the start")
    print(machine, flush=True)
    configs = [(f"{kind}{n}", lambda h, s, kind=kind, n=n: (on_ray if kind == "ray" else on_pool)(h, n, args.epochs, s, args.runs))
               for kind in ("ray", "pool") for n in (1, 2)]
    results: dict[str, list[dict]] = {k: [] for k, _ in configs}
    for r in range(args.rounds):
        for i, (key, run) in enumerate(configs):
            got = run(Path(tmp) / f"{key}-{r}", 100 * (10 * r + i))
            results[key].append(got)
            print(f"round {r + 1}: {got['executor']}: wall {got['wall_s']:.2f} s for {args.runs} runs (sum of run times "
                  f"{got['sum_run_s']:.2f} s; start {got['start_s']:.1f} s; nodes {', '.join(got['nodes'])})", flush=True)
    load1 = os.getloadavg()
    best = {k: min(v, key=lambda x: x["wall_s"]) for k, v in results.items()}
    speedup = best["ray1"]["wall_s"] / best["ray2"]["wall_s"]
    ratio = best["ray2"]["wall_s"] / best["pool2"]["wall_s"]
    ratio1 = best["ray1"]["wall_s"] / best["pool1"]["wall_s"]
    pool_speedup = best["pool1"]["wall_s"] / best["pool2"]["wall_s"]
    print(f"Ray 2 CPUs vs 1 CPU: {speedup:.2f}x faster (target >= 1.7x: {'met' if speedup >= 1.7 else 'MISSED'}); "
          f"the local pool, 2 workers vs 1: {pool_speedup:.2f}x")
    print(f"Ray 2 CPUs vs the local pool of 2: {ratio:.3f}x its wall time (target <= 1.15x: {'met' if ratio <= 1.15 else 'MISSED'}); "
          f"Ray 1 CPU vs the pool of 1: {ratio1:.3f}x")
    print(f"load average at the end: {load1[0]:.2f} (1 min) / {load1[1]:.2f} (5 min)")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    if args.write:
        rows = ["| executor | best wall (s) | every round (s) | sum of run times, best round (s) | start() (s) |",
                "|---|---|---|---|---|"]
        for key, runs in results.items():
            b = best[key]
            rows.append(f"| {b['executor']} | {b['wall_s']:.2f} | {', '.join('%.2f' % x['wall_s'] for x in runs)} "
                        f"| {b['sum_run_s']:.2f} | {b['start_s']:.1f} |")
        body = f"""Machine: {machine}; at the end {load1[0]:.2f} / {load1[1]:.2f}.
Script: `python bench/bench_ray.py --write docs/benchmarks.md` (student epochs {args.epochs},
measurements off, {args.rounds} rounds; one CPU and one torch thread per run).

The same sweep of 10 digits runs (hinton-tiny students, kd at five temperatures x two seeds,
teacher already cached), from submit to the last result, on warm executors: a local Ray
instance started with 1 and with 2 worker CPUs, and the local pool of 1 and of 2 worker processes.
"start()" is how long the executor took to start serving (for Ray: starting the instance and the progress hub; the local pool starts its processes in the background).

{chr(10).join(rows)}

- Ray with 2 CPUs against 1: {speedup:.2f}x faster (target at least 1.7x: {"met" if speedup >= 1.7 else "missed"});
  the local pool with 2 workers against 1: {pool_speedup:.2f}x.
- Ray with 2 CPUs against the local pool of 2: {ratio:.3f}x its wall time (target at most 1.15x:
  {"met" if ratio <= 1.15 else "missed"}); with 1 CPU against the pool of 1: {ratio1:.3f}x.

The machine has two cores shared with other work, so two runs side by side compete with
everything else on it; the load average above says how busy it was."""
        write_section(args.write, "Ray executor (issue 14)", body)
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()
