"""Command line for the store and the workers.

    submit FILE     queue an experiment from JSON or YAML
    jobs            table of runs (status, progress); --watch to follow
    show ID         one run in full (error and traceback included)
    cancel ID...    cancel runs (or --experiment E)
    retry ID...     queue failed / cancelled / interrupted runs again (or --interrupted)
    delete ID...    delete runs and their artifacts
    results         finished runs as a table, or --csv
    export ID --pt2 make a finished run's .pt2 program (not made for every run)
    worker          serve the queue in the foreground (Ctrl-C stops; --until-empty; --executor ray)
    cluster         the Ray cluster's nodes, CPUs and GPUs (--address)

`add_commands(subparsers)` plugs these into the main CLI; `python -m distill_core.jobs.cli`
runs them alone. Each handler returns an exit code.
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import sys
import time

import pandas as pd

from ..config import expand, load_experiment_file
from ..constants import DONE, QUEUED, RUNNING
from ..errors import DistillError
from ..measure.settings import COUNTRY
from . import queue
from .executor import LocalExecutor, ensure_workers, pool_lock
from .ray_executor import ADDRESS_HELP
from .store import Store
from .workers import live_pools


def _store(args) -> Store:
    return Store(args.home)


def _handled(fn):
    @functools.wraps(fn)
    def wrapper(args) -> int:
        try:
            return fn(args) or 0
        except DistillError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return wrapper


def _fmt_time(t) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


def progress_cell(run: dict, blocked: set[int] = frozenset()) -> str:
    """The PROGRESS column: "student epoch 3/30 10%" from a run's latest progress event, or
    what a queued run waits for (`blocked`: queue.blocked_ids)."""
    p = run.get("progress") or {}
    if run["status"] == QUEUED:
        if run["id"] in blocked:
            return f"waits for #{run['depends_on']} (retry it)"
        return QUEUED
    if run["status"] != RUNNING:
        return "-"
    if run.get("cancelling"):
        return "cancelling"
    if not p or p.get("phase") == "start":
        return "starting"
    if p.get("phase") == "retry":  # its node died: the Ray executor runs it again elsewhere
        return f"running again: {p.get('reason', '')}"
    bits = [str(p.get("phase", ""))]
    if p.get("epochs"):
        bits.append(f"epoch {p.get('epoch')}/{p['epochs']}")
    if p.get("steps"):
        bits.append(f"{100 * p.get('step', 0) / p['steps']:.0f}%")
    return " ".join(b for b in bits if b)


def _table(rows: list[list], headers: list[str]) -> str:
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


@_handled
def cmd_submit(args) -> int:
    store = _store(args)
    spec = load_experiment_file(args.file)
    exp_id, ids = queue.submit(store, spec, expand(spec), force=args.force, priority=args.priority)
    runs = {r["id"]: r for r in store.list_runs(experiment=exp_id)}
    done = [i for i in ids if runs[i]["status"] == DONE]
    print(f"experiment #{exp_id}: {len(ids)} runs ({', '.join(f'#{i}' for i in ids)})"
          + (f"; {len(done)} already done and reused" if done else ""))
    if args.start_workers:
        info = ensure_workers(store.home, args.workers or None)
        print(f"worker pool {'started' if info['started'] else 'already running'} (pid {info['pid']})")
    elif not live_pools(store):
        print("no worker pool is running: start one with the `worker` command")
    return 0


@_handled
def cmd_jobs(args) -> int:
    store = _store(args)
    while True:
        runs = store.list_runs(status=args.status, experiment=args.experiment, newest_first=True, limit=args.limit)
        blocked = queue.blocked_ids(store)
        rows = [[r["id"], r["status"], r["role"], r["label"], progress_cell(r, blocked),
                 f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-", _fmt_time(r["updated"]),
                 (r["error"] or "").splitlines()[0][:60] if r["error"] else ""] for r in reversed(runs)]
        state = store.queue_state()
        text = _table(rows, ["ID", "STATUS", "ROLE", "LABEL", "PROGRESS", "ACC", "UPDATED", "ERROR"])
        summary = "  ".join(f"{k} {v}" for k, v in state.items() if v)
        pools = live_pools(store)
        if args.watch:
            print("\033[2J\033[H", end="")
        print(text if rows else "no runs")
        print(f"\n{summary or 'empty queue'}; worker pools: {len(pools)}")
        if not args.watch:
            return 0
        if state[RUNNING] == 0 and queue.outstanding(store) == 0:
            return 0
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


@_handled
def cmd_show(args) -> int:
    store = _store(args)
    run = store.get_run(args.id)
    if run is None:
        print(f"error: no run #{args.id}", file=sys.stderr)
        return 2
    for key in ("id", "label", "role", "status", "hash", "experiments", "depends_on", "attempts", "worker_pid", "node", "folder"):
        print(f"{key:12} {run[key]}")
    for key in ("created", "started", "finished"):
        print(f"{key:12} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run[key])) if run[key] else '-'}")
    if run["progress"]:
        print(f"{'progress':12} {progress_cell(run, queue.blocked_ids(store))}")
    if run["result"]:
        m = run["result"]["metrics"]
        print("metrics      " + ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float)))
    if run["error"]:
        print(f"\nerror: {run['error']}")
    if run["traceback"]:
        print(run["traceback"])
    if args.config:
        print(json.dumps(run["config"], indent=1))
    return 0


@_handled
def cmd_cancel(args) -> int:
    store = _store(args)
    if args.experiment is not None:
        print(f"experiment #{args.experiment}: {queue.cancel_experiment(store, args.experiment)} run(s) cancelled")
    for rid in args.ids:
        print(f"run #{rid}: {queue.cancel(store, rid)}")
    return 0


@_handled
def cmd_retry(args) -> int:
    store = _store(args)
    ids = queue.retry_interrupted(store) if args.interrupted else []
    for rid in args.ids:
        ids += queue.retry(store, rid)
    print(f"queued again: {', '.join(f'#{i}' for i in ids) or 'nothing'}")
    return 0


@_handled
def cmd_delete(args) -> int:
    store = _store(args)
    for rid in args.ids:
        queue.delete(store, rid)
        print(f"run #{rid} deleted")
    return 0


@_handled
def cmd_export(args) -> int:
    if not args.pt2:
        print("error: say what to make: --pt2 (the torch.export program; ONNX and int8 are made for every run)",
              file=sys.stderr)
        return 2
    pt2 = queue.make_pt2(_store(args), args.id, args.dynamic)
    if not pt2.get("ok"):
        print(f"error: run #{args.id}: {pt2.get('reason')}", file=sys.stderr)
        return 1
    batch = "any batch size" if pt2.get("dynamic_batch") else "batch size 1"
    print(f"run #{args.id}: {pt2['path']} ({pt2['bytes']:,} bytes, {batch})")
    return 0


DEFAULT_RESULT_COLUMNS = ["run_id", "role", "label", "accuracy", "teacher_agreement", "ece", "params", "train_seconds"]


@_handled
def cmd_results(args) -> int:
    frame = _store(args).results_frame(experiment=args.experiment)
    if args.csv:
        if args.csv == "-":
            frame.to_csv(sys.stdout, index=False)
        else:
            frame.to_csv(args.csv, index=False)
            print(f"{len(frame)} runs, {len(frame.columns)} columns written to {args.csv}")
        return 0
    if frame.empty:
        print("no finished runs")
        return 0
    cols = args.columns.split(",") if args.columns else DEFAULT_RESULT_COLUMNS
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        print(f"error: unknown column(s) {', '.join(missing)}; see --csv for all", file=sys.stderr)
        return 2
    shown = frame[cols].copy()
    for c in shown.columns:  # whole numbers (params, bytes) print as integers, not 1.956e+04
        v = shown[c]
        if v.dtype.kind == "f" and v.notna().any() and (v.dropna() % 1 == 0).all() and v.abs().max() >= 1000:
            shown[c] = v.astype("Int64")
    with pd.option_context("display.width", 200, "display.max_colwidth", 48, "display.float_format", "{:.4g}".format):
        print(shown.to_string(index=False))
    return 0


@_handled
def cmd_worker(args) -> int:
    store = Store(args.home)
    lock = None
    if args.managed:
        lock = pool_lock(store.home)
        if lock is None:
            print(f"a managed worker pool already serves {store.home}")
            return 0
    if args.retry_interrupted:
        ids = queue.retry_interrupted(store)
        if ids:
            print(f"queued interrupted runs again: {', '.join(f'#{i}' for i in ids)}")
    measure = {"country": COUNTRY.coerce(args.country, "--country")} if args.country else None
    log = functools.partial(print, flush=True)
    if args.executor == "ray":
        from .ray_executor import RayExecutor

        pool = RayExecutor(store.home, address=args.address, workers=args.workers, threads=args.threads,
                           retries=args.retries, gpus=args.gpus, quiet=args.quiet, log=log, measure=measure)
        print(f"[ray {pool.pid}] connecting to {pool.address or 'a local Ray instance'} to serve {store.home}", flush=True)
        if not (args.until_empty and queue.outstanding(store) == 0 and store.queue_state()[RUNNING] == 0):
            pool.start()
            info = pool.refresh()
            print(f"[ray {pool.pid}] {info['nodes']} node(s), {info['cpus']:g} CPU(s), {info['gpus']:g} GPU(s); "
                  f"{pool.threads} CPU(s) per run", flush=True)
    else:
        # A managed pool is a process of its own that only serves (ensure_workers starts it): its
        # workers are forked from it, imports done (see LocalExecutor). Called in a process that
        # may have trained (cli.main from Python), the workers are spawned.
        fork = args.managed and "fork" in mp.get_all_start_methods()
        if fork and lock is not None:  # a forked worker shares the lock's open file: it must not hold it
            os.register_at_fork(after_in_child=lock.close)
        pool = LocalExecutor(store.home, workers=args.workers, threads=args.threads, quiet=args.quiet, measure=measure,
                             start_method="fork" if fork else "spawn")
        print(f"[pool {pool.pid}] {pool.n} worker(s) x {pool.threads} thread(s) serving {store.home}", flush=True)
    pool.serve(until_empty=args.until_empty, idle_exit=args.idle_exit, handle_signals=True)
    state = store.queue_state()
    print(f"[{pool.name} {pool.pid}] stopped; " + ", ".join(f"{k} {v}" for k, v in state.items() if v), flush=True)
    if lock is not None:
        lock.close()
    return 0


@_handled
def cmd_cluster(args) -> int:
    from .ray_executor import cluster_summary, connect, require_ray

    ray = require_ray()
    connect(args.address, args.workers, ship_code=False)
    try:
        info = {"address": args.address, **cluster_summary()}
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps(info))
        return 0
    rows = [[n["node"], "alive" if n["alive"] else "dead", f"{n['cpus']:g}", f"{n['gpus']:g}"] for n in info["nodes"]]
    print(_table(rows, ["NODE", "STATE", "CPUS", "GPUS"]))
    print(f"\nRay {info['ray']} at {args.address or 'a local instance (started for this check, now stopped)'}: "
          f"{info['alive']} live node(s), {info['cpus']:g} CPU(s), {info['gpus']:g} GPU(s)")
    return 0


def add_commands(subparsers) -> None:
    """Add the job commands to an argparse subparsers object (each sets `func`)."""
    def sub(name, fn, help):
        p = subparsers.add_parser(name, help=help, description=help)
        p.add_argument("--home", default=None, help="lab home folder (default: $DISTILL_HOME or ~/.distill_lab)")
        p.set_defaults(func=fn)
        return p

    p = sub("submit", cmd_submit, "queue an experiment from a JSON or YAML file")
    p.add_argument("file")
    p.add_argument("--force", action="store_true", help="run again even runs already done")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--start-workers", action="store_true", help="start a background worker pool if none is alive")
    p.add_argument("--workers", type=int, default=0, help="workers for --start-workers (default: one per core)")

    p = sub("jobs", cmd_jobs, "list runs with their status and progress")
    p.add_argument("--status", action="append", default=None, help="only this status (repeatable)")
    p.add_argument("--experiment", type=int, default=None)
    p.add_argument("--limit", type=int, default=50, help="newest N runs (default 50; 0 = all)")
    p.add_argument("--watch", type=float, default=0, metavar="SECONDS", help="refresh every SECONDS until the queue is empty")

    p = sub("show", cmd_show, "show one run in full, error and traceback included")
    p.add_argument("id", type=int)
    p.add_argument("--config", action="store_true", help="print its config too")

    p = sub("cancel", cmd_cancel, "cancel runs (a running one stops within two seconds)")
    p.add_argument("ids", type=int, nargs="*")
    p.add_argument("--experiment", type=int, default=None, help="cancel every unfinished run of this experiment")

    p = sub("retry", cmd_retry, "queue failed, cancelled or interrupted runs again")
    p.add_argument("ids", type=int, nargs="*")
    p.add_argument("--interrupted", action="store_true", help="every interrupted run")

    p = sub("delete", cmd_delete, "delete runs and their artifacts")
    p.add_argument("ids", type=int, nargs="+")

    p = sub("results", cmd_results, "finished runs as a table or CSV")
    p.add_argument("--experiment", type=int, default=None)
    p.add_argument("--csv", nargs="?", const="-", default=None, metavar="PATH", help="write every column as CSV (to stdout without PATH)")
    p.add_argument("--columns", default=None, help="comma-separated columns for the table")

    p = sub("export", cmd_export, "make an export a finished run did not make: its .pt2 program")
    p.add_argument("id", type=int, help="the run's id (see `jobs`)")
    p.add_argument("--pt2", action="store_true", help="the torch.export program (.pt2)")
    p.add_argument("--dynamic", action="store_true", help="with a free batch axis (about 3x slower to export)")

    p = sub("worker", cmd_worker, "serve the queue with local worker processes or a Ray cluster (Ctrl-C stops)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: a Ray cluster (docs/cluster.md)")
    p.add_argument("--address", default="", help="Ray only: " + ADDRESS_HELP)
    p.add_argument("--retries", type=int, default=1, help="Ray only: times a run whose node dies is run again (default 1)")
    p.add_argument("--gpus", type=float, default=0.0, help="Ray only: GPUs per run (runs whose device is cuda get 1 at least)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: one per core); Ray: CPUs of a local instance")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores / workers); Ray: CPUs per run (default 1)")
    p.add_argument("--until-empty", action="store_true", help="stop when nothing is queued or running")
    p.add_argument("--retry-interrupted", action="store_true", help="queue interrupted runs again before starting")
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS", help="stop after SECONDS with nothing to do")
    p.add_argument("--quiet", action="store_true", help="no line per finished run")
    p.add_argument("--country", default=None, help="ISO alpha-3 country code for CO2 (default: $DISTILL_COUNTRY or USA)")
    p.add_argument("--managed", action="store_true", help=argparse.SUPPRESS)  # started by ensure_workers

    p = subparsers.add_parser("cluster", help="the Ray cluster's nodes, CPUs and GPUs (a connection check)",
                              description="the Ray cluster's nodes, CPUs and GPUs (a connection check)")
    p.add_argument("--address", default="", help=ADDRESS_HELP)
    p.add_argument("--workers", type=int, default=None, help="CPUs of a local instance (empty address)")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=cmd_cluster)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distill_core.jobs.cli", description="Distillation Lab jobs")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
