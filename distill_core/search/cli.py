"""`python -m distill_core search`: start, resume, stop, show and list searches.

    search FILE [flags]        a new search from a JSON or YAML file, flags over it (or flags alone)
    search --resume NAME       go on with a search (stopped, crashed, or after a restart)
    search --stop NAME         ask a search's driver to stop
    search --show NAME         its trials, front and answer
    search --list              every search in the home folder

A search runs in the foreground (Ctrl-C stops it; resume later) with a local worker pool of its
own when none serves the home; `--external-workers` waits for another executor (the
dashboard's pool, Ray) instead, and `--detach` runs the driver in the background.
"""
from __future__ import annotations

import argparse
import json

from ..errors import DistillError
from ..config import ENSEMBLE
from ..flags import parse_teacher_flag
from ..jobs import LocalExecutor, Store
from ..jobs.workers import live_pools
from ..settings import load_settings, pool_arguments
from . import study as studies
from .driver import Driver, start_detached
from .report import answer, fmt_cost, report
from .spec import SearchSpec, load_search_file


def spec_from_args(args) -> SearchSpec:
    spec = load_search_file(args.file) if args.file else SearchSpec()
    d = spec.to_dict()
    for flag in ("name", "trials", "sampler", "seed", "parallel", "confirm_seeds"):
        if getattr(args, flag) is not None:
            d[flag] = getattr(args, flag)
    if args.time_limit is not None:
        d["time_limit"] = args.time_limit
    if args.no_prune:
        d["prune"] = False
    if args.dataset:
        d["dataset"], d["dataset_knobs"] = args.dataset, {}
    for item in args.data or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise DistillError(f"--data {item!r}: expected KEY=VALUE, e.g. --data noise=0.3")
        d["dataset_knobs"] = {**d["dataset_knobs"], key.strip(): value.strip()}
    if args.teacher:
        given = [parse_teacher_flag(t) for t in args.teacher]
        d["teacher"], d["teachers"] = (given[0], []) if len(given) == 1 else (d["teacher"], given)
    if args.ensemble:
        d["ensemble"] = args.ensemble
    if args.budget:
        d["budget"] = _json(args.budget, "--budget") if args.budget.strip().startswith("{") else args.budget
    if args.objective:
        d["objectives"] = args.objective
    for flag in ("epochs", "batch_size"):
        if getattr(args, flag) is not None:
            d["train"] = {**d["train"], flag: getattr(args, flag)}
    space = dict(d["space"])
    if args.student:
        space["students"] = {f: (space.get("students") or {}).get(f) for f in args.student}
    if args.method:
        space["methods"] = args.method
    d["space"] = space
    return SearchSpec.from_dict(d)


def _json(text: str, flag: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DistillError(f"{flag}: not valid JSON ({exc})") from None


def print_report(home, name: str) -> None:
    r = report(home, name)
    alive = "driver running" if r.driver_alive else "no driver running"
    print(f"search {name}: {r.state} ({alive}); {r.message}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
    print(f"trials: {counts or 'none yet'}; time spent {r.elapsed / 60:.1f} min")
    for note in r.notes:
        print(f"  note: {note}")
    front = r.front
    if len(front):
        print(f"\nfront ({len(front)} trials, feasible for {r.budget_name}):")
        for _, t in front.iterrows():
            scratch = r.twins.get(int(t["number"]))
            twin = f", scratch twin {100 * scratch:.1f} %" if scratch is not None else ""
            costs = ", ".join(fmt_cost(k, t[k]) for k in r.objectives)
            print(f"  #{int(t['number']):<3} {t['label']}: val {100 * t['val_accuracy']:.1f} %, "
                  f"test {100 * t['test_accuracy']:.1f} %{twin}; {costs} (run #{int(t['run_id'])})")
    lines = answer(r)
    if lines:
        print()
        print("\n".join(lines))


def cmd_search(args) -> int:
    home = Store(args.home).home
    if args.list:
        rows = studies.summaries(home)
        for s in rows:
            print(f"{s['name']:20} {s['state'] or '-':11} {s['trials']:4} trials  {s['dataset'] or ''}  {s['message'][:80]}")
        if not rows:
            print("no searches yet")
        return 0
    if args.show:
        print_report(home, args.show)
        return 0
    if args.stop:
        asked = studies.request_stop(home, args.stop)
        print(f"search {args.stop}: " + ("asked its driver to stop" if asked else "no driver is running it"))
        return 0
    if args.resume:
        name = args.resume
        study = studies.load(home, name)
        spec = dict(study.user_attrs["spec"])
        for flag, key in (("trials", "trials"), ("time_limit", "time_limit")):
            if getattr(args, flag) is not None:  # a resumed search may be given more trials or time
                spec[key] = getattr(args, flag)
        SearchSpec.from_dict(spec)
        study.set_user_attr("spec", spec)
    else:
        name = studies.create(home, spec_from_args(args))
        print(f"search {name} created in {home}")
    if args.detach:
        pid = start_detached(home, name, workers=not args.external_workers)
        print(f"search {name}: driver started in the background (pid {pid}); follow it with --show {name}")
        return 0
    return run_foreground(home, name, args.workers, args.external_workers)


def run_foreground(home, name: str, workers: int | None = None, external: bool = False) -> int:
    """Drive a search here, with a local pool of our own unless one serves the home already."""
    pool = None
    if not external and not live_pools(Store(home)):
        settings = pool_arguments(load_settings(home)[0])
        pool = LocalExecutor(home, workers=workers or settings["workers"], threads=settings["threads"],
                             measure={"country": settings["country"]}, quiet=True, log=None).start()
        print(f"[search {name}] a pool of {pool.n} worker(s) serves the runs", flush=True)
    try:
        state = Driver(home, name).run()
    finally:
        if pool is not None:
            pool.shutdown()
    print()
    print_report(home, name)
    return 0 if state in (studies.FINISHED, studies.STOPPED) else 1


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("search", help="search for the most accurate student that fits a budget",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("file", nargs="?", help="a search file (JSON or YAML; see docs/guide.md)")
    p.add_argument("--home", default=argparse.SUPPRESS, help="lab home folder (default: $DISTILL_HOME or ~/.distill_lab)")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--resume", metavar="NAME", help="go on with a search")
    act.add_argument("--stop", metavar="NAME", help="ask a search's driver to stop")
    act.add_argument("--show", metavar="NAME", help="print a search's trials, front and answer")
    act.add_argument("--list", action="store_true", help="list the searches")
    p.add_argument("--name", help="name of a new search (default: search-N)")
    p.add_argument("--dataset")
    p.add_argument("--data", action="append", metavar="KEY=VALUE", help="a data set knob; repeat for several")
    p.add_argument("--teacher", action="append",
                   help="teacher: a model name or arch:knob=value,..., onnx:path=model.onnx or outputs:path=outputs.npz; "
                        "repeat for an ensemble")
    p.add_argument("--ensemble", choices=ENSEMBLE.choices, help="how several --teacher combine (default mean-logits)")
    p.add_argument("--student", action="append", metavar="FAMILY", help="search only these families (repeat)")
    p.add_argument("--method", action="append", help="search only these methods (repeat)")
    p.add_argument("--budget", help="a profile (mcu, phone, cpu-server, yours) or JSON limits")
    p.add_argument("--objective", action="append", metavar="COST", help="a cost to minimise (once or twice)")
    p.add_argument("--trials", type=int, help="students to train (default 30)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES", help="no trial starts after this (default: none)")
    p.add_argument("--sampler", choices=("tpe", "nsga2", "random"))
    p.add_argument("--no-prune", action="store_true", help="train every trial to the end")
    p.add_argument("--seed", type=int)
    p.add_argument("--parallel", type=int, help="trials at once (default: as many as there are workers)")
    p.add_argument("--confirm-seeds", type=int, help="seeds for the best student and its scratch twin (default 3)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--workers", type=int, help="workers of the pool started when none serves the home")
    p.add_argument("--external-workers", action="store_true", help="start no pool: another executor serves the queue")
    p.add_argument("--detach", action="store_true", help="run the driver in the background and return")
    p.set_defaults(func=cmd_search)

