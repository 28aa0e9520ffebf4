"""A worker: a long-lived process that claims runs from the store and runs them one by one.

Python, torch and the data sets load once per worker, not once per run, so a sweep of many
small runs costs about the sum of its runs. `execute_run` runs one claimed run with progress
events, cancellation and error capture; the run itself is `engine.runner.run_one`, which needs
only the run, a home folder and the settings handed to it.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import torch

from ..constants import CANCELLED, DONE, FAILED, INTERRUPTED, STUDENT
from ..engine.runner import run_one
from ..errors import Cancelled, DistillError
from ..measure.energy import warm_energy
from ..measure.export import traced, warm_exporter, warm_trace
from ..measure.settings import measure_settings
from ..run_config import RunConfig
from ..teachers import TeacherCache
from . import queue
from .host import NODE
from .store import Store
from .workers import register, salvage

PROGRESS_INTERVAL = 0.5  # seconds between progress writes of one run (events in between are batched)
STOP_POLL = 0.25  # seconds between checks of the store for a cancel request


class EventWriter:
    """on_progress callback: every event is kept, written at most every `interval` seconds
    (the first at once), so a run costs the store at most ~2 small transactions a second."""

    def __init__(self, store: Store, run_id: int, interval: float = PROGRESS_INTERVAL):
        self.store, self.run_id, self.interval = store, run_id, interval
        self.buffer: list[dict] = []
        self.last = 0.0

    def __call__(self, event: dict) -> None:
        self.buffer.append({"t": time.time(), **event})
        if event.get("teacher_cached") and self.store is not None:  # its students may start now
            self.flush()
            with contextlib.suppress(sqlite3.Error):  # a store busy beyond its timeout: they start when it is done
                self.store.mark_serving(self.run_id)
        elif time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        try:
            self.store.add_events(self.run_id, self.buffer)
            self.buffer = []
        except sqlite3.Error:  # progress is best effort; the run goes on and retries next time
            pass
        self.last = time.monotonic()


class StopCheck:
    """should_stop callback: true when the run was cancelled (checked in the store at most every
    `interval` seconds) or when `quit` says the worker must stop (pool shutting down)."""

    def __init__(self, store: Store, run_id: int, quit: Callable[[], bool] | None = None, interval: float = STOP_POLL):
        self.store, self.run_id, self.quit, self.interval = store, run_id, quit, interval
        self.last = 0.0
        self.reason: str | None = None

    def __call__(self) -> bool:
        if self.reason:
            return True
        if self.quit is not None and self.quit():
            self.reason = "shutdown"
            return True
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        try:
            status, cancel = self.store.run_status(self.run_id)
        except sqlite3.Error:
            return False
        if cancel:
            self.reason = "cancel"
        return bool(self.reason)


@dataclass
class Outcome:
    """How one attempt at a run ended: its status and its result, or the reason it has none."""

    status: str  # DONE, FAILED, CANCELLED or INTERRUPTED
    result: dict | None = None
    error: str | None = None
    traceback: str | None = None


def attempt(config: RunConfig, home, events: Callable[[dict], None], stop: StopCheck, measure: dict | None = None,
            folder=None, server: str = "the worker pool") -> Outcome:
    """Run `run_one` and say how it ended, never raising for the run's own failure: a cancel
    request or a shutdown of its `server` (what `stop` reported), or an error with its traceback."""
    try:
        return Outcome(DONE, run_one(config, home, events, stop, folder=folder, measure=measure))
    except Cancelled as exc:
        if stop.reason == "shutdown":
            return Outcome(INTERRUPTED, error=f"interrupted: {server} shut down during the run ({exc}); retry to run it again")
        return Outcome(CANCELLED, error=f"cancelled by request ({exc})")
    except Exception as exc:  # the run failed: keep the message and the traceback for the page
        msg = str(exc) if isinstance(exc, DistillError) else f"{type(exc).__name__}: {exc}"
        return Outcome(FAILED, error=msg, traceback=traceback.format_exc())


def record(store: Store, run_id: int, outcome: Outcome, log: Callable[[str], None] | None = None) -> None:
    """Write how a run ended into the store. A result that cannot be recorded (the store busy
    beyond its timeout) is kept in its folder's result.json, which the pool's recovery reads."""
    if outcome.status != DONE:
        queue.end(store, run_id, outcome.status, outcome.error, outcome.traceback)
        return
    try:
        store.finish(run_id, outcome.result)
    except sqlite3.Error as exc:
        if log is not None:
            log(f"[worker {os.getpid()}] run #{run_id}: could not record its result ({exc}); "
                f"it is kept in {outcome.result['artifacts']['folder']}")
        if not salvage(store, run_id):
            raise


def execute_run(store: Store, run: dict, threads: int | None = None, quit: Callable[[], bool] | None = None,
                log: Callable[[str], None] | None = print, measure: dict | None = None) -> str:
    """Run one claimed run (a row dict from `queue.claim`) and record how it ended.

    `threads` fills a run's "all cores" setting; `measure` are the pool's measurement settings.
    Returns the final status: done, failed, cancelled or interrupted (the pool shut down).
    """
    run_id = run["id"]
    config = RunConfig.from_dict(json.loads(run["config"]))
    events = EventWriter(store, run_id)
    stop = StopCheck(store, run_id, quit)
    events({"phase": "start", "worker_pid": os.getpid(), "attempt": run["attempts"] + 1, "node": NODE})
    started = time.perf_counter()
    if run.get("force") and config.role != STUDENT:  # a forced teacher re-run trains again
        TeacherCache(store.home).drop(config.hash)
    outcome = attempt(config.with_threads(threads), store.home, events, stop, measure)
    events.flush()
    record(store, run_id, outcome, log)
    if log is not None:
        took = time.perf_counter() - started
        extra = f", accuracy {outcome.result['metrics']['accuracy']:.4f}" if outcome.status == DONE else ""
        log(f"[worker {os.getpid()}] run #{run_id} {run['label']}: {outcome.status} in {took:.1f} s{extra}")
    return outcome.status


def run_inline(store: Store, threads: int | None = None, log: Callable[[str], None] | None = None,
               quit: Callable[[], bool] | None = None, measure: dict | None = None) -> list[tuple[int, str]]:
    """Run ready runs one after another in this process until none is ready: for notebooks,
    tests, or a machine where extra processes are unwelcome. Returns (run id, status) pairs."""
    done = []
    while quit is None or not quit():
        run = queue.claim(store, os.getpid())
        if run is None:
            break
        done.append((run["id"], execute_run(store, run, threads, quit, log, measure)))
    return done


def warm_up_torch() -> None:
    """Pay torch's lazy start-up costs now, not in a worker's first run: the first optimiser
    imports torch._dynamo (seconds), the first backward pass initialises autograd."""
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w])
    (w * 2).sum().backward()
    opt.step()


def warm_settings(measure: dict | None) -> dict | None:
    """The measure settings runs will get by default (None for a bad one: each run fails with its message)."""
    try:
        return measure_settings(measure)
    except DistillError:
        return None


def warm_up_energy(settings: dict | None) -> None:
    """Where energy is measured, pay CodeCarbon's hardware probe in a background thread
    (measure/energy.warm_energy). Started before torch's warm-up: the probe's subprocess then
    runs beside it, and it is over before the first run's tracker starts."""
    if settings and settings["energy"]:
        threading.Thread(target=warm_energy, args=(settings["country"], settings["power_secs"]),
                         name="warm-energy", daemon=True).start()


def warm_up_exporter(settings: dict | None) -> bool:
    """Where runs export with the dynamo exporter (the default), warm it in a background thread
    (measure/export.warm_exporter) while the worker waits for or trains its first run. Returns
    whether they do (then the worker also traces once while idle: measure/export.warm_trace)."""
    if settings and settings["onnx"] and settings["exporter"] == "dynamo":
        threading.Thread(target=warm_exporter, name="warm-exporter", daemon=True).start()
        return True
    return False


def worker_main(home: str, threads: int, stop_flag, pool_pid: int, poll: float = 0.1, quiet: bool = False,
                measure: dict | None = None) -> None:
    """Entry point of a worker process: claim and run until told to stop or orphaned.

    `stop_flag`: a shared byte (multiprocessing RawValue) the pool sets to ask its workers to stop.
    It has no lock on purpose: a worker killed while it waited on a multiprocessing.Event (SIGTERM
    to the process group, as `timeout` or a service manager sends) left the pool's Event.set()
    blocked for ever, waiting for that dead sleeper to wake."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the pool, which stops workers in order
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker has the pool's handler: terminate() must end it
    torch.set_num_threads(max(1, threads))
    settings = warm_settings(measure)
    warm_up_energy(settings)
    warm_up_torch()
    trace_pending = warm_up_exporter(settings)

    store = Store(home)
    pid = os.getpid()
    register(store, pid, "worker", pool_pid, {"threads": threads})

    def quit() -> bool:
        return bool(stop_flag.value) or os.getppid() != pool_pid

    log = None if quiet else (lambda line: print(line, flush=True))
    while not quit():
        try:
            run = queue.claim(store, pid)
        except sqlite3.Error as exc:  # the store is busy beyond its timeout: try again shortly
            print(f"[worker {pid}] could not claim a run: {exc}", flush=True)
            run = None
        if run is None:
            trace_pending = trace_pending and not traced()
            if trace_pending:  # idle, nothing trains here: the first trace's 2 s are paid now, not by a run
                warm_trace()  # (one that arrives meanwhile waits at most what its own export would have taken)
                trace_pending = False
            else:
                time.sleep(poll)
            continue
        execute_run(store, run, threads, quit, log, measure)
