"""Executors turn queued runs in the store into results.

Pages and the CLI only talk to the store and the queue (`queue.submit`, `queue.cancel`...); an
executor is whatever serves the queue. The interface is small so a distributed executor can
stand beside the local one without touching the store: a Ray executor claims runs with
`queue.claim`, ships each run's config, data and teacher (its cache entry, teachers.py) to a
remote node, runs `engine.runner.run_one` there in a scratch home, brings the run folder back
and records the end with `store.finish` or `queue.end`.

`LocalExecutor` is a pool of long-lived worker processes on this machine, watched by a monitor
thread that replaces a worker that dies (its run is failed with the reason), stops a run that
ignores a cancel request, beats the pool's heartbeat, and marks runs of dead pools interrupted.
`ensure_workers` starts one as a detached process for the dashboard.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

from .. import paths
from ..constants import CANCELLED, FAILED, INTERRUPTED, RUNNING
from ..files import try_lock
from . import queue
from .host import HOST, pid_alive
from .store import Store
from .worker import worker_main
from .workers import heartbeat, live_pools, recover_orphans, register, salvage, unregister

# Seconds an idle worker has to exit by itself at shutdown before it is terminated. A spawned
# worker's interpreter takes about 1.1 s to tear down torch and the lab once its loop has ended
# (1.4-1.8 s beside two busy processes on two cores): a second was too short, and a terminated
# worker leaves its semaphores to the resource tracker, which warns about them.
IDLE_EXIT_GRACE = 5.0
CANCEL_GRACE = 5.0  # seconds a running run may take to honour a cancel before its worker is killed
HEARTBEAT = 1.0


def default_workers() -> int:
    """One worker per core: small models train fastest one thread each, side by side."""
    return max(1, os.cpu_count() or 1)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class Executor(ABC):
    """What serves the queue of a store. Submitting and querying go through `queue` and `Store`."""

    name = "executor"  # how its log lines name it

    def __init__(self, home: str | Path | None = None, log=print):
        self.store = Store(home)
        self.log = log
        self.pid = os.getpid()  # the process that owns the runs it serves (a restart checks it)

    @abstractmethod
    def start(self) -> "Executor":
        """Start serving the queue (returns at once)."""

    @abstractmethod
    def shutdown(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop serving. Runs in progress stop and are marked interrupted (retryable)."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether it is serving."""

    @abstractmethod
    def busy(self) -> bool:
        """Whether it holds a running run."""

    def wait_until_empty(self, timeout: float | None = None, poll: float = 0.2) -> bool:
        """Wait until no run is running and none is left to start (runs waiting on an
        interrupted run do not count); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.store.queue_state()[RUNNING] == 0 and queue.outstanding(self.store) == 0:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(poll)

    # -- foreground use ---------------------------------------------------------------------------

    def serve(self, until_empty: bool = False, idle_exit: float | None = None, handle_signals: bool = False) -> None:
        """Run in the foreground until Ctrl-C (or SIGTERM with `handle_signals`), or until no
        run is left to do (`until_empty`; runs waiting on an interrupted run do not count), or
        after `idle_exit` seconds with nothing to do. Shuts down on the way out."""
        stop = threading.Event()
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: it may arrive ignored (background jobs)
                signal.signal(sig, lambda *_: stop.set())
        if until_empty and queue.outstanding(self.store) == 0 and self.store.queue_state()[RUNNING] == 0:
            return  # nothing to do: do not start workers only to stop them
        if not self.alive():
            self.start()
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                busy = queue.outstanding(self.store) > 0 or self.busy()
                if busy:
                    idle_since = time.monotonic()
                elif until_empty:
                    break
                elif idle_exit and time.monotonic() - idle_since > idle_exit:
                    break
                stop.wait(0.2)
            if stop.is_set() and self.log:
                self.log(f"[{self.name} {self.pid}] stopping: runs in progress are marked interrupted")
        except KeyboardInterrupt:
            if self.log:
                self.log(f"[{self.name} {self.pid}] stopping: runs in progress are marked interrupted")
        finally:
            self.shutdown()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()


class LocalExecutor(Executor):
    """A pool of `workers` long-lived processes, `threads` torch threads each.
    `measure`: measurement settings for every run it serves (e.g. {"country": "FRA"}), under
    a run config's own.

    `start_method`: how `start()` makes its workers. "spawn" (the default) starts each in a new
    interpreter, which imports torch and the lab afresh: 4-9 s on a 2-core EPYC before a
    worker takes its first run. "fork" copies this process instead, with its imports done: only
    for a process that serves and never trains (the pool of `cli worker`, what the dashboard
    starts), because a child of a process that has run autograd or torch's thread pool cannot
    use them. A worker started in place of one that died is always spawned: the pool's monitor
    thread runs by then, and forking a process with threads may copy a lock another holds."""

    name = "pool"

    def __init__(self, home: str | Path | None = None, workers: int | None = None, threads: int | None = None,
                 poll: float = 0.1, quiet: bool = False, log=print, measure: dict | None = None,
                 start_method: str = "spawn"):
        super().__init__(home, log)
        self.n = workers or default_workers()
        self.threads = threads or default_threads(self.n)
        self.measure = dict(measure or {})
        self.poll, self.quiet = poll, quiet
        self.ctx = mp.get_context("spawn")
        self.first_ctx = mp.get_context(start_method)
        self.stop_flag = self.ctx.RawValue("b", 0)  # lock-free: see worker_main
        self.procs: list = []
        self.spawned: dict[int, float] = {}  # pid -> start time
        self.crashes = 0
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "LocalExecutor":
        register(self.store, self.pid, "pool", None, {"workers": self.n, "threads": self.threads, **self.measure})
        marked = recover_orphans(self.store)
        if marked and self.log:
            self.log(f"[pool {self.pid}] marked {len(marked)} run(s) left running by a dead process as interrupted: "
                     + ", ".join(f"#{i}" for i in marked))
        self.procs = [self._spawn(self.first_ctx) for _ in range(self.n)]
        self._monitor = threading.Thread(target=self._watch, name="distill-pool-monitor", daemon=True)
        self._monitor.start()
        return self

    def _spawn(self, ctx=None):
        args = (str(self.store.home), self.threads, self.stop_flag, self.pid, self.poll, self.quiet, self.measure)
        p = (ctx or self.ctx).Process(target=worker_main, args=args, daemon=True, name="distill-worker")
        p.start()
        self.spawned[p.pid] = time.monotonic()
        return p

    def alive(self) -> bool:
        return self._monitor is not None and self._monitor.is_alive() and not self._stopping.is_set()

    def busy(self) -> bool:
        return bool(self._busy_pids())

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.is_alive()]

    def shutdown(self, wait: bool = True, timeout: float = 30.0) -> None:
        self._stopping.set()
        self.stop_flag.value = 1
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        busy = set(self._busy_pids())
        idle = [p for p in self.procs if p.is_alive() and p.pid not in busy]
        grace = time.monotonic() + IDLE_EXIT_GRACE
        for p in idle:  # an idle worker sees the flag within its poll and exits, cleaning up after itself
            p.join(timeout=max(0.0, grace - time.monotonic()))
        for p in idle:  # one still importing torch has nothing to finish
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + (timeout if wait else 0)
        for p in self.procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        for p in self.procs:  # anything a killed worker left running
            self._reap(p, "interrupted: the worker pool shut down during the run; retry to run it again", INTERRUPTED)
        unregister(self.store, self.pid)

    # -- the monitor ------------------------------------------------------------------------------

    def _watch(self) -> None:
        last_beat = last_recover = 0.0
        while not self._stopping.is_set():
            try:
                self._check_workers()
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT:
                    heartbeat(self.store, self.pid)
                    last_beat = now
                self._enforce_cancels()
                if now - last_recover >= 5.0:
                    recover_orphans(self.store, keep={p.pid for p in self.procs})
                    last_recover = now
            except Exception as exc:  # the monitor must survive a busy store or a transient error
                if self.log:
                    self.log(f"[pool {self.pid}] monitor: {type(exc).__name__}: {exc}")
            self._stopping.wait(0.2)

    def _check_workers(self) -> None:
        for i, p in enumerate(self.procs):
            if p.is_alive() or self._stopping.is_set():
                continue
            code = p.exitcode
            reason = (f"worker process died (signal {-code})" if code is not None and code < 0
                      else f"worker process exited unexpectedly (exit code {code})")
            self._reap(p, reason, FAILED)
            unregister(self.store, p.pid)
            lived = time.monotonic() - self.spawned.pop(p.pid, 0.0)
            self.crashes = self.crashes + 1 if lived < 5 else 0
            if self.crashes > 3:  # a worker that dies at start-up: do not spin, wait a little
                self._stopping.wait(min(30.0, 2.0 ** self.crashes))
            if self._stopping.is_set():
                return
            self.procs[i] = self._spawn()
            if self.log:
                self.log(f"[pool {self.pid}] {reason}; started worker {self.procs[i].pid} in its place")

    def _reap(self, p, reason: str, status: str) -> None:
        """End the runs a dead worker held: failed with the reason (cancelled if it was asked to)."""
        for run in self.store.read(lambda con: con.execute(
                "SELECT id, cancel_requested FROM runs WHERE status = 'running' AND worker_pid = ? AND worker_host = ?",
                (p.pid, HOST)).fetchall()):
            if salvage(self.store, run["id"]):  # it died after writing its result
                continue
            if run["cancel_requested"] is not None:
                queue.end(self.store, run["id"], CANCELLED, "cancelled by request (its worker was stopped)",
                          only_if_running=True, worker_pid=p.pid)
            else:
                queue.end(self.store, run["id"], status, reason, only_if_running=True, worker_pid=p.pid)

    def _enforce_cancels(self) -> None:
        """A run that does not stop within CANCEL_GRACE of its cancel request (stuck outside the
        training loop) has its worker killed; the monitor then marks it cancelled."""
        mine = {p.pid for p in self.procs if p.is_alive()}
        if not mine:
            return
        cutoff = time.time() - CANCEL_GRACE
        rows = self.store.read(lambda con: con.execute(
            "SELECT worker_pid FROM runs WHERE status = ? AND cancel_requested IS NOT NULL AND cancel_requested < ? "
            "AND worker_host = ?", (RUNNING, cutoff, HOST)).fetchall())
        for (pid,) in rows:
            if pid in mine and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def _busy_pids(self) -> list[int]:
        """Pids of this pool's workers that hold a running run."""
        pids = [p.pid for p in self.procs]
        if not pids:
            return []
        return [r[0] for r in self.store.read(lambda con: con.execute(
            f"SELECT worker_pid FROM runs WHERE status = 'running' AND worker_host = ? AND worker_pid IN ({','.join('?' * len(pids))})",
            (HOST, *pids)).fetchall())]


# -- a detached pool for the dashboard -----------------------------------------------------------------


def ensure_workers(home: str | Path | None = None, workers: int | None = None, threads: int | None = None,
                   idle_exit: float | None = None, country: str | None = None, executor: str = "local",
                   address: str | None = None, retries: int | None = None, gpus: float | None = None) -> dict:
    """Make sure a worker pool serves this home folder; start a detached one if none is alive.

    For the dashboard: pages call this, then only submit and poll the store. The pool runs as
    its own process (`python -m distill_core.jobs.cli worker --managed`), survives the page,
    writes its log to <home>/logs/pool.log and records its pid and heartbeat in the store. Its
    settings (workers, threads, the CodeCarbon country; for `executor="ray"` the cluster's
    address, retries and GPUs per run) are its command-line arguments.
    Returns {"pid": int, "started": bool}.
    """
    store = Store(home)
    live = live_pools(store)
    if live:
        return {"pid": live[0]["pid"], "started": False}
    lock = pool_lock(store.home)
    if lock is None:  # a managed pool holds the lock: it is starting up
        return {"pid": None, "started": False}
    lock.close()
    logs = store.home / paths.LOGS
    logs.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "distill_core.jobs.cli", "worker", "--home", str(store.home), "--managed"]
    for flag, value in (("--workers", workers), ("--threads", threads), ("--idle-exit", idle_exit), ("--country", country)):
        if value:
            cmd += [flag, str(value)]
    if executor != "local":
        cmd += ["--executor", executor, "--address", address or ""]
        cmd += [x for flag, value in (("--retries", retries), ("--gpus", gpus)) if value is not None for x in (flag, str(value))]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # so the child finds distill_core from any cwd
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(logs / paths.POOL_LOG, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env)
    return {"pid": proc.pid, "started": True}


def stop_pool(pid: int) -> None:
    """Ask a pool of this host to stop (SIGTERM): it stops its workers and marks their runs
    interrupted. OSError when it cannot be signalled."""
    os.kill(int(pid), signal.SIGTERM)


def stop_pools(home: str | Path, wait: float = 20.0) -> None:
    """Stop every pool of this host registered in a home's store (SIGTERM, then SIGKILL after
    `wait` seconds): what a test or a benchmark that started the dashboard leaves behind."""
    from .workers import workers

    try:
        pools = [w for w in workers(Store(home)) if w["kind"] == "pool" and w["host"] == HOST]
    except Exception:  # no store yet: nothing was started
        return
    for w in pools:
        if pid_alive(w["pid"]):
            os.kill(w["pid"], signal.SIGTERM)
    deadline = time.monotonic() + wait
    while any(pid_alive(w["pid"]) for w in pools) and time.monotonic() < deadline:
        time.sleep(0.2)
    for w in pools:
        if pid_alive(w["pid"]):
            os.kill(w["pid"], signal.SIGKILL)


def pool_lock(home: Path):
    """Take <home>/pool.lock without waiting: the open file (keep it open to hold the lock),
    or None when another managed pool holds it. Where file locks are missing, always the file."""
    return try_lock(Path(home) / paths.POOL_LOCK)
