"""Searches are Optuna studies in <home>/search.sqlite (paths.SEARCH_DB), next to the store.

A study's user attributes hold the search's spec and its state (checking, searching,
confirming, finished, stopped, failed) with a message, the driver's pid and heartbeat, the time
spent, and the scratch twins queued for the front. Each trial's user attributes hold its
candidate, its architecture-only costs, its run in the store, its validation curve and outcome:
rejected (over the budget before training), running, pruned, complete, failed.

    create(home, spec)          check a search and make its study; returns its name
    summaries(home)             every search, newest first
    load(home, name, sampler)   the optuna.Study
    request_stop(home, name)    ask its driver to stop
    report(home, name)          what the Search page and the CLI show (search/report.py)
"""
from __future__ import annotations

import os
import signal
import sqlite3
import time
import warnings
from functools import lru_cache
from pathlib import Path

import optuna

from .. import paths
from ..errors import ConfigError, DistillError
from ..jobs.host import HOST, pid_alive
from .spec import SearchSpec, check_name, make_plan

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

CREATED, CHECKING, SEARCHING, CONFIRMING = "created", "checking", "searching", "confirming"
FINISHED, STOPPED, FAILED = "finished", "stopped", "failed"
ACTIVE_STATES = (CHECKING, SEARCHING, CONFIRMING)  # a driver runs it (or should: see driver_alive)
BEAT_STALE = 120.0  # seconds without a heartbeat after which a driver is taken for gone (one slow measurement fits)


class SearchError(DistillError):
    """A request about a search that cannot be honoured (unknown name, already running...)."""


@lru_cache(maxsize=8)
def _storage(path: str) -> optuna.storages.RDBStorage:
    con = sqlite3.connect(path, timeout=30)  # WAL: the page reads while the driver writes
    try:
        con.execute("PRAGMA journal_mode = WAL")
    finally:
        con.close()
    return optuna.storages.RDBStorage(f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 30}})


def storage(home) -> optuna.storages.RDBStorage:
    return _storage(str(paths.home_dir(home) / paths.SEARCH_DB))


def names(home) -> list[str]:
    if not (paths.home_dir(home) / paths.SEARCH_DB).is_file():
        return []
    return [s.study_name for s in optuna.get_all_study_summaries(storage(home), include_best_trial=False)]


def summaries(home) -> list[dict]:
    """Every search, newest first: name, state, message, trials (told so far), created."""
    if not (paths.home_dir(home) / paths.SEARCH_DB).is_file():
        return []
    out = []
    for s in optuna.get_all_study_summaries(storage(home), include_best_trial=False):
        a = s.user_attrs
        out.append({"name": s.study_name, "state": a.get("state"), "message": a.get("message", ""),
                    "trials": s.n_trials, "created": a.get("created", 0.0), "dataset": (a.get("spec") or {}).get("dataset")})
    return sorted(out, key=lambda r: -r["created"])


def load(home, name: str, sampler=None) -> optuna.Study:
    if name not in names(home):
        raise SearchError(f"no search named {name!r} in {paths.home_dir(home)}"
                          + (f"; searches: {', '.join(names(home))}" if names(home) else ""))
    return optuna.load_study(study_name=name, storage=storage(home), sampler=sampler)


def next_name(home) -> str:
    taken = set(names(home))
    n = 1
    while f"search-{n}" in taken:
        n += 1
    return f"search-{n}"


def create(home, spec: SearchSpec) -> str:
    """Check a search and make its study (nothing runs yet); returns its name. The budget is
    kept as its limits, so a later edit of budgets.json does not change a search under way."""
    plan = make_plan(spec, home)
    name = check_name(spec.name) if spec.name else next_name(home)
    if name in names(home):
        raise ConfigError(f"name: a search named {name!r} exists already; resume it or choose another name")
    kept = SearchSpec.from_dict({**spec.to_dict(), "name": name, "budget": {"name": plan.budget_name, **plan.budget}})
    study = optuna.create_study(storage=storage(home), study_name=name,
                                directions=["maximize"] + ["minimize"] * len(plan.objectives))
    for key, value in {"spec": kept.to_dict(), "state": CREATED, "message": "", "created": time.time(),
                       "elapsed": 0.0}.items():
        study.set_user_attr(key, value)
    return name


def driver_alive(attrs: dict) -> bool:
    """Whether the search's driver process is alive: a fresh heartbeat from a live process."""
    d = attrs.get("driver") or {}
    if attrs.get("state") not in ACTIVE_STATES or not d:
        return False
    if time.time() - float(attrs.get("heartbeat") or 0) > BEAT_STALE:
        return False
    return d.get("host") != HOST or pid_alive(int(d.get("pid") or 0))


def request_stop(home, name: str) -> bool:
    """Ask a search's driver to stop: a flag it reads within seconds, and SIGTERM when it runs on
    this host. Returns whether a live driver was asked."""
    study = load(home, name)
    study.set_user_attr("stop_requested", time.time())
    attrs = study.user_attrs
    if not driver_alive(attrs):
        return False
    d = attrs["driver"]
    if d.get("host") == HOST:
        try:
            os.kill(int(d["pid"]), signal.SIGTERM)
        except OSError:
            pass
    return True


def delete(home, name: str) -> None:
    """Forget a search (its runs stay in the store, as any run does)."""
    if driver_alive(load(home, name).user_attrs):
        raise SearchError(f"search {name!r} is running; stop it first")
    optuna.delete_study(study_name=name, storage=storage(home))
    Path(paths.search_lock(home, name)).unlink(missing_ok=True)
