"""The search driver: the one process that runs a search, in the foreground or detached.

It asks Optuna for a candidate, measures the candidate's architecture, rejects it if it cannot
fit the budget, and otherwise queues it as an ordinary run (`jobs.queue.submit`). The run is
deduplicated by hash and served by whatever executor serves the store, with as many trials at
once as there are workers. The driver follows each run's progress events to prune hopeless
trials (search/pruning.py) and tells Optuna each outcome. When the trials are done, it queues the
scratch twins of the front's members, and the best member's extra seeds. Its state lives in the
study and the store, so a search resumes after a restart: trials it had queued are picked up
again, and finished ones are never repeated. "Stop" cancels the search's queued and running
runs. A teacher being trained goes on, because other runs may need it and a resumed search
starts from it.

    python -m distill_core search FILE             a new search, in the foreground
    python -m distill_core search --resume NAME    go on with one (after a stop, a crash, a restart)
    start_detached(home, name)                     the same as a background process (the Search page)
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from .. import paths
from ..config import ExperimentSpec, expand
from ..constants import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, SCRATCH, STUDENT
from ..data.cache import load_data
from ..errors import ConfigError, DistillError
from ..files import try_lock
from ..jobs import Store, queue
from ..jobs.host import HOST
from ..jobs.workers import live_pools
from ..settings import load_settings, with_run_settings
from . import study as studies
from .costs import ENERGY_COST, budget_check, cost_table, measure_architecture
from .pruning import PruningRule, hopeless
from .report import answer, report
from .space import Candidate, Dim
from .spec import Plan, SearchSpec, make_plan

TrialState = optuna.trial.TrialState
BEAT = 2.0  # seconds between heartbeats (and reads of a stop request)
MAX_REJECTED_IN_A_ROW = 100  # candidates over the budget in a row before the search says so and stops asking


@dataclass
class Flight:
    """A trial whose run is queued or training."""

    trial: optuna.Trial
    run_id: int
    experiment: dict
    costs: list[float]  # its objective costs (architecture-only)
    constraints: dict
    curve: list[float] = field(default_factory=list)
    last_event: int = 0
    stopped: bool = False  # its run was cancelled by a stop of the search: queue it again when it ends so


def make_sampler(kind: str, seed: int, trials: int):
    """Optuna's sampler for a search: random trials for the first third (at most 10), then TPE
    on all parameters jointly (a family's knobs only exist when it is chosen: `group`), with
    running trials counted as if they had failed so parallel trials differ (`constant_liar`)."""
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))
    with warnings.catch_warnings():  # multivariate and group are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=max(2, min(10, trials // 3)))


class Driver:
    """Runs one search (see the module docstring). `stop`: an event that ends it as "stopped"
    (set by SIGTERM or Ctrl-C in the foreground); `log`: where its lines go."""

    def __init__(self, home, name: str, log=None, stop: threading.Event | None = None, poll: float = 0.5):
        self.home = paths.home_dir(home)
        self.name, self.poll_s = name, poll
        self.log = log or (lambda line: print(line, flush=True))
        self.store = Store(self.home)
        attrs = studies.load(self.home, name).user_attrs
        self.spec = SearchSpec.from_dict(attrs["spec"])
        self.plan: Plan = make_plan(self.spec, self.home)
        self.settings = self.plan.settings
        told = len(studies.load(self.home, name).trials)
        # a new sampler seed per session: a resumed TPE must not draw its first session's candidates again
        sampler = make_sampler(self.settings["sampler"], self.settings["seed"] + told, self.settings["trials"])
        self.study = studies.load(self.home, name, sampler=sampler)
        self.rule = PruningRule.for_epochs(self.plan.train["epochs"])
        self.stop = stop or threading.Event()
        self.flights: dict[int, Flight] = {}
        self.arch: dict[str, dict] = {}  # model spec (JSON) -> its architecture-only measurement
        self.finished: list[tuple[list[float], list[float]]] = []  # (costs, curve) of finished trials
        self.rejected_in_a_row = 0
        self.failure: str | None = None
        self.done_why = ""
        self.elapsed_before = float(attrs.get("elapsed") or 0.0)
        self.session_start = time.monotonic()
        self.last_beat = 0.0
        self.requeued: set[str] = set()  # twin experiments queued again this session
        self.data = None
        self.space = self.plan.space  # narrowed to the families that can fit by _precheck

    # -- the whole search -------------------------------------------------------------------------

    def run(self) -> str:
        """Run the search to its end; returns its final state (finished, stopped or failed)."""
        lock = _take_lock(self.home, self.name)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, lambda *_: self.stop.set())
        try:
            self._set(state=studies.CHECKING, driver={"pid": os.getpid(), "host": HOST}, heartbeat=time.time(),
                      stop_requested=None, message="checking the smallest model of each family against the budget")
            self.prepare()
            self._set(state=studies.SEARCHING, message="")
            if self._search() == studies.STOPPED:
                return self._stopped()
            if self.failure:
                raise studies.SearchError(self.failure)
            self._set(state=studies.CONFIRMING, message=self.done_why + "; training the scratch twins of the front")
            if self._confirm() == studies.STOPPED:
                return self._stopped()
            self._set(state=studies.FINISHED, message=self.done_why + ".")
            self.log(f"[search {self.name}] finished: {self.done_why}")
            for line in answer(report(self.home, self.name, self.store)):
                self.log(f"[search {self.name}] {line}")
            return studies.FINISHED
        except DistillError as exc:
            self._set(state=studies.FAILED, message=str(exc))
            raise
        except BaseException as exc:
            self._set(state=studies.FAILED, message=f"the driver stopped: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._set(elapsed=self._elapsed())
            lock.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def prepare(self) -> None:
        """Before asking: the budget against each family's smallest model, then the trials a
        previous driver left running."""
        self.data = load_data(self.plan.teacher.dataset)
        self._precheck()
        self._adopt()

    def _search(self) -> str | None:
        while True:
            self._beat()
            self.poll()
            if self._stopping():
                return studies.STOPPED
            if self.failure:
                return None
            while self._may_ask() and len(self.flights) < self._parallel() and not self._stopping():
                self.ask()
                self._beat()  # candidates rejected in a row can take a while: stay seen, and hear a stop
            if not self.flights and not self._may_ask():
                return None
            self.stop.wait(self.poll_s)

    # -- before the search: the budget against each family's smallest model -----------------------

    def _precheck(self) -> None:
        attrs = self.study.user_attrs
        if "precheck" not in attrs:
            checked = []
            for cand in self.plan.space.smallest():
                self._beat()
                try:
                    m = self._measure(cand.model)
                except DistillError as exc:  # a combination of knobs its factory refuses
                    checked.append({"family": cand.family, "label": cand.label, "fits": False, "missing": {},
                                    "reason": f"its smallest model cannot be built: {exc}"})
                    continue
                fit = budget_check(m, self.plan.budget_name, self.plan.budget)
                table = cost_table(m)
                checked.append({"family": cand.family, "label": cand.label, "fits": fit["fits"], "reason": fit["reason"],
                                "missing": {k: table[k][1] for k in self.plan.objectives if table[k][0] is None}})
            self._set(precheck=checked)
        else:
            checked = attrs["precheck"]
        for c in checked:
            if c["missing"]:
                key, why = next(iter(c["missing"].items()))
                hint = " (turn energy measurement on)" if key == ENERGY_COST else ""
                raise ConfigError(f"objective {key}: the architecture check cannot measure it: {why}{hint}")
        fitting = [c["family"] for c in checked if c["fits"]]
        if not fitting:
            raise ConfigError(f"Nothing in this space fits {self.plan.budget_name}, found before training anything: "
                              + "; ".join(f"the smallest {c['family']} ({c['label'].split(' · ')[0]}): "
                                          f"{c['reason']}" for c in checked)
                              + ". Loosen the budget or search smaller models.")
        notes = list(self.plan.space.notes) + [
            f"{c['family']} left out: even its smallest model ({c['label'].split(' · ')[0]}) does not fit "
            f"{self.plan.budget_name}: {c['reason']}" for c in checked if not c["fits"]]
        self._set(notes=notes)
        kept = tuple(f for f in self.plan.space.families if f.arch in fitting)
        family = Dim("student", "fixed", kept[0].arch) if len(kept) == 1 else Dim("student", "choice",
                                                                                  choices=tuple(f.arch for f in kept))
        self.space = dataclasses.replace(self.plan.space, families=kept, family=family)

    def _measure(self, model: dict) -> dict:
        key = json.dumps(model, sort_keys=True)
        if key not in self.arch:
            self.arch[key] = measure_architecture(model, self.data, energy=ENERGY_COST in self.plan.objectives)
        return self.arch[key]

    # -- asking for candidates --------------------------------------------------------------------

    def _trained(self) -> int:
        """Trials that trained (or are training): every trial but those rejected before training."""
        n = 0
        for t in self.study.get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE or (t.state in (TrialState.PRUNED, TrialState.FAIL)
                                                  and t.user_attrs.get("outcome") in ("pruned", "failed")):
                n += 1
        return n + len(self.flights)

    def _may_ask(self) -> bool:
        limit = self.plan.time_limit
        if limit is not None and self._elapsed() >= limit * 60:
            self.done_why = f"the time limit of {limit:g} min was reached"
            return False
        if self.rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
            self.done_why = (f"the last {MAX_REJECTED_IN_A_ROW} candidates were all rejected before training "
                             f"(over {self.plan.budget_name} or invalid): narrow the space to smaller models")
            return False
        if self._trained() >= self.settings["trials"]:
            self.done_why = f"{self.settings['trials']} trials trained"
            return False
        return True

    def _parallel(self) -> int:
        if self.settings["parallel"]:
            return self.settings["parallel"]
        return max(1, sum(int((p.get("info") or {}).get("workers") or 1) for p in live_pools(self.store)))

    def ask(self) -> None:
        """One candidate: rejected before training, or queued as a run."""
        trial = self.study.ask()
        cand = self.space.sample(trial)
        trial.set_user_attr("candidate", cand.to_dict())
        try:
            m = self._measure(cand.model)
        except DistillError as exc:  # knobs its factory refuses together
            self._end(trial, TrialState.FAIL, "invalid", str(exc))
            self.rejected_in_a_row += 1
            return
        fit = budget_check(m, self.plan.budget_name, self.plan.budget)
        table = cost_table(m)
        trial.set_user_attr("arch", {"costs": {k: v for k, (v, _) in table.items()}, "fits": fit["fits"],
                                     "reason": fit["reason"], "constraints": fit["constraints"]})
        costs = [table[k][0] for k in self.plan.objectives]
        if not fit["fits"]:
            self._end(trial, TrialState.PRUNED, "rejected", f"over {self.plan.budget_name} before training: {fit['reason']}",
                      fit["constraints"])
            self.rejected_in_a_row += 1
            return
        if None in costs:
            self._end(trial, TrialState.FAIL, "invalid", "a cost could not be measured: "
                      + "; ".join(f"{k}: {table[k][1]}" for k in self.plan.objectives if table[k][0] is None))
            self.rejected_in_a_row += 1
            return
        exp = self._experiment(cand, name=f"search {self.name} · trial {trial.number}")
        try:
            runs = expand(exp)
        except DistillError as exc:
            self._end(trial, TrialState.FAIL, "invalid", str(exc))
            self.rejected_in_a_row += 1
            return
        trial.set_user_attr("experiment", exp.to_dict())  # first: a driver that dies now is resumed from it
        run_id = self._submit(exp, runs)
        trial.set_user_attr("run_id", run_id)
        self.flights[trial.number] = Flight(trial, run_id, exp.to_dict(), costs, fit["constraints"])
        self.rejected_in_a_row = 0
        self.log(f"[search {self.name}] trial {trial.number}: {cand.label} queued as run #{run_id}")

    def _submit(self, exp: ExperimentSpec, runs=None) -> int:
        """Queue a trial's experiment (again: a finished run is reused, a cancelled or interrupted
        one queued anew); the id of its student run."""
        runs = runs if runs is not None else expand(exp)
        _, ids = queue.submit(self.store, exp, runs)
        return next(i for r, i in zip(runs, ids) if r.role == STUDENT)

    def _experiment(self, cand: Candidate, **kwargs) -> ExperimentSpec:
        """The experiment of a candidate, with this home's device and thread settings (not part of
        a run's identity)."""
        return with_run_settings(self.plan.experiment(cand, **kwargs), load_settings(self.home)[0])

    def _end(self, trial: optuna.Trial, state, outcome: str, reason: str, constraints: dict | None = None,
             values: list[float] | None = None, **attrs) -> None:
        for key, value in {"outcome": outcome, "reason": reason, **attrs}.items():
            trial.set_user_attr(key, value)
        for what, value in (constraints or {}).items():
            trial.set_constraint(what, value)
        self.study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
        if outcome != "complete" and outcome != "running":
            self.log(f"[search {self.name}] trial {trial.number} {outcome}: {reason}")

    # -- following the runs ------------------------------------------------------------------------

    def poll(self) -> None:
        """Follow the trials' runs: prune, tell what finished, queue again what was interrupted."""
        if not self.flights:
            return
        ids = [f.run_id for f in self.flights.values()]
        rows = {r["id"]: dict(r) for r in self.store.read(lambda con: con.execute(
            f"SELECT id, status, error, dep_failed, depends_on FROM runs WHERE id IN ({','.join('?' * len(ids))})",
            ids).fetchall())}
        blocked = queue.blocked_ids(self.store) if any(r["status"] == QUEUED for r in rows.values()) else set()
        for number, f in list(self.flights.items()):
            row = rows.get(f.run_id)
            if row is None:
                self._finish(number, TrialState.FAIL, "failed", f"its run #{f.run_id} was deleted")
            elif row["status"] == RUNNING:
                self._follow(number, f)
            elif row["status"] == DONE:
                self._complete(number, f)
            elif row["status"] == FAILED:
                if row["dep_failed"]:
                    self.failure = f"the teacher failed, so no trial can train: {row['error']}"
                self._finish(number, TrialState.FAIL, "failed", row["error"] or "failed")
            elif row["status"] == CANCELLED and f.stopped:
                f.stopped = False
                self._submit(ExperimentSpec.from_dict(f.experiment))
            elif row["status"] == CANCELLED:
                self._finish(number, TrialState.FAIL, "failed", "its run was cancelled outside the search")
            elif row["status"] == INTERRUPTED or f.run_id in blocked:
                self._submit(ExperimentSpec.from_dict(f.experiment))  # queued again: the same run
                f.curve, f.last_event = [], 0
                self.log(f"[search {self.name}] trial {number}: run #{f.run_id} was interrupted; queued it again")

    def _follow(self, number: int, f: Flight) -> None:
        events = self.store.progress(f.run_id, after=f.last_event)
        grew = False
        for e in events:
            f.last_event = e["id"]
            if e.get("phase") == "start":
                f.curve = []  # a new attempt
            elif e.get("epoch_end") and e.get("phase") == STUDENT and e.get("val_accuracy") is not None:
                f.curve.append(float(e["val_accuracy"]))
                grew = True
        if not grew or not self.settings["prune"]:
            return
        why = hopeless(f.curve, f.costs, self.finished, self.rule)
        if why:
            queue.cancel(self.store, f.run_id)
            self._finish(number, TrialState.PRUNED, "pruned", why, curve=list(f.curve))

    def _complete(self, number: int, f: Flight) -> None:
        result = (self.store.get_run(f.run_id) or {}).get("result") or {}
        train = result.get("train") or {}
        history = train.get("history") or []
        if not history:
            self._finish(number, TrialState.FAIL, "failed", "its run finished without a training history")
            return
        val = float(history[(train.get("kept_epoch") or len(history)) - 1]["val_accuracy"])
        own = budget_check(result.get("measure") or {}, self.plan.budget_name, self.plan.budget)
        curve = [float(h["val_accuracy"]) for h in history]
        f.constraints = own["constraints"]
        self._finish(number, TrialState.COMPLETE, "complete", "" if own["fits"] else f"over {self.plan.budget_name} "
                     f"by its own measurement: {own['reason']}", values=[val, *f.costs], curve=curve,
                     val_accuracy=val, test_accuracy=float(result["metrics"]["accuracy"]), fits=own["fits"])
        self.finished.append((f.costs, curve))
        self.log(f"[search {self.name}] trial {number} complete: validation accuracy {val:.4f}"
                 + ("" if own["fits"] else f" (over {self.plan.budget_name}: {own['reason']})"))

    def _finish(self, number: int, state, outcome: str, reason: str, values=None, **attrs) -> None:
        f = self.flights.pop(number)
        self._end(f.trial, state, outcome, reason, f.constraints, values, **attrs)

    # -- resuming -------------------------------------------------------------------------------------

    def _adopt(self) -> None:
        """Trials a stopped or crashed driver left running: follow their runs again (queueing
        them again when they were cancelled or interrupted); finished trials keep their outcome."""
        for t in self.study.get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE:
                self.finished.append(([t.values[1 + i] for i in range(len(self.plan.objectives))],
                                      list(t.user_attrs.get("curve") or [])))
            if t.state != TrialState.RUNNING:
                continue
            trial = optuna.Trial(self.study, t._trial_id)
            exp = t.user_attrs.get("experiment")
            if not exp:
                self._end(trial, TrialState.FAIL, "abandoned", "the driver stopped before queueing it")
                continue
            arch = t.user_attrs["arch"]
            run_id = self._submit(ExperimentSpec.from_dict(exp))  # a finished run is reused as it is
            if "run_id" not in t.user_attrs:  # it died between queueing the run and noting it
                trial.set_user_attr("run_id", run_id)
            self.flights[t.number] = Flight(trial, run_id, exp, [arch["costs"][k] for k in self.plan.objectives],
                                            arch["constraints"], stopped=bool(t.user_attrs.get("stopped")))
            self.log(f"[search {self.name}] trial {t.number}: following its run #{run_id} again")

    # -- after the trials: scratch twins ------------------------------------------------------------

    def _confirm(self) -> str | None:
        """Queue the scratch twin of each front member (on its seed) and the best member's
        confirmation seeds (distilled and scratch), then wait for them."""
        r = report(self.home, self.name, self.store)
        if r.best is None:
            self.done_why += "; no trained student fits the budget, so there is no twin to train"
            return None
        twins = dict(self.study.user_attrs.get("twins") or {})
        seed = self.settings["seed"]
        for _, row in r.front.iterrows():
            number = int(row["number"])
            best = number == int(r.best["number"])
            seeds = list(range(seed, seed + self.settings["confirm_seeds"])) if best else [seed]
            have = set((twins.get(str(number)) or {}).get("scratch", {}))
            if {str(s) for s in seeds} <= have:
                continue
            cand = self.study.get_trials(deepcopy=False)[number].user_attrs["candidate"]
            cand = Candidate(cand["family"], cand["model"], cand["method"], cand["lr"])
            exp = self._experiment(cand, seeds=seeds, baseline=True,
                                   name=f"search {self.name} · scratch twin of trial {number}")
            runs = expand(exp)
            _, ids = queue.submit(self.store, exp, runs)
            entry = {"distilled": {}, "scratch": {}, "experiment": exp.to_dict()}
            for run, rid in zip(runs, ids):
                if run.role == STUDENT:
                    entry["scratch" if run.method_name == SCRATCH else "distilled"][str(run.seed)] = rid
            twins[str(number)] = entry
            self.log(f"[search {self.name}] trial {number}: scratch twin queued (seeds {', '.join(map(str, seeds))})")
        self._set(twins=twins)
        while True:
            self._beat()
            if self._stopping():
                return studies.STOPPED
            open_runs = self._open_twin_runs(twins)
            if not open_runs:
                return None
            self.stop.wait(self.poll_s)

    def _open_twin_runs(self, twins: dict) -> list[int]:
        """Twin runs not finished yet. Twins left interrupted, or cancelled by a stop, are queued
        again, once per session (a failed one stays failed: the report says so)."""
        out = []
        for number, entry in twins.items():
            ids = [int(i) for part in ("distilled", "scratch") for i in entry[part].values()]
            statuses = {i: self.store.run_status(i)[0] for i in ids}
            if {INTERRUPTED, CANCELLED} & set(statuses.values()) and number not in self.requeued:
                self.requeued.add(number)
                queue.submit(self.store, ExperimentSpec.from_dict(entry["experiment"]))
                statuses = {i: self.store.run_status(i)[0] for i in ids}
            out += [i for i, s in statuses.items() if s in (QUEUED, RUNNING, INTERRUPTED)]
        return out

    # -- state, heartbeat, stopping -----------------------------------------------------------------

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.session_start

    def _set(self, **attrs) -> None:
        for key, value in attrs.items():
            self.study.set_user_attr(key, value)

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat < BEAT:
            return
        self.last_beat = now
        self._set(heartbeat=time.time(), elapsed=self._elapsed())
        if self.study.user_attrs.get("stop_requested"):
            self.stop.set()

    def _stopping(self) -> bool:
        return self.stop.is_set()

    def _stopped(self) -> str:
        """Cancel the search's queued and running runs; their trials stay open for a resume."""
        for f in self.flights.values():
            queue.cancel(self.store, f.run_id)
            f.trial.set_user_attr("stopped", True)
        for entry in (self.study.user_attrs.get("twins") or {}).values():
            for part in ("distilled", "scratch"):
                for rid in entry[part].values():
                    if self.store.run_status(int(rid))[0] in (QUEUED, RUNNING):
                        queue.cancel(self.store, int(rid))
        n = self._trained() - len(self.flights)
        self._set(state=studies.STOPPED, message=f"stopped by request after {n} trained trial(s); resume to go on")
        self.log(f"[search {self.name}] stopped; resume with: python -m distill_core search --resume {self.name}")
        return studies.STOPPED


def _take_lock(home: Path, name: str):
    """The search's lock file, held while its driver runs; SearchError when another holds it."""
    f = try_lock(paths.search_lock(home, name))
    if f is None:
        raise studies.SearchError(f"search {name!r} is already running (another driver holds {paths.search_lock(home, name)})")
    return f


def start_detached(home, name: str, workers: bool = False) -> int:
    """Run a search's driver as a background process that outlives the page: its lines go to
    <home>/logs/search-<name>.log. `workers`: let it start a worker pool of its own when none
    serves the store. Returns its pid."""
    home = paths.home_dir(home)
    (home / paths.LOGS).mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "distill_core", "search", "--home", str(home), "--resume", name]
    if not workers:
        cmd.append("--external-workers")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # so the child finds distill_core from any cwd
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(paths.search_log(home, name), "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env)
    return proc.pid
