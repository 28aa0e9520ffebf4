"""Queue policy: which run goes next, dependencies, and runs orphaned by dead workers.

FIFO by (priority desc, id), a run waits for its dependency (its teacher run) to be done, and a
run never starts while another run with the same hash is running (both would write the same
artifacts folder). Workers claim runs themselves through `claim`, in one write transaction, so
any number of workers and pools can serve the same store.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .store import BLOCKED_CTE, HOST, RUNNING, Store, pid_alive, propagate_failures

_READY = """FROM runs r LEFT JOIN runs d ON d.id = r.depends_on
    WHERE r.status = 'queued' AND (r.depends_on IS NULL OR d.status = 'done' OR d.id IS NULL)
      AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.hash = r.hash AND x.status = 'running')"""

STALE_SECONDS = 30.0  # a worker whose pool has not beaten for this long is taken for dead


def has_ready(store: Store) -> bool:
    """Whether a run could be claimed now (a cheap read, no write lock)."""
    return store.read(lambda con: con.execute(f"SELECT 1 {_READY} LIMIT 1").fetchone()) is not None


def claim(store: Store, worker_pid: int, host: str = HOST) -> dict | None:
    """Take the next ready run for this worker: mark it running and return its row as a dict."""
    def txn(con):
        v, now = store.bump(con), time.time()
        propagate_failures(con, v, now)
        row = con.execute(f"SELECT r.* {_READY} ORDER BY r.priority DESC, r.id LIMIT 1").fetchone()
        if row is None:
            return None
        con.execute("""UPDATE runs SET status = 'running', worker_pid = ?, worker_host = ?, started = ?, finished = NULL,
                       attempts = attempts + 1, cancel_requested = NULL, progress = NULL, updated = ?, version = ?
                       WHERE id = ?""", (worker_pid, host, now, now, v, row["id"]))
        return dict(row)

    if not has_ready(store):
        return None
    return store.write(txn)


def outstanding(store: Store) -> int:
    """Queued runs that will start without anyone's help: all queued runs except those waiting
    on an interrupted run (they wait for it to be retried)."""
    return store.read(lambda con: con.execute(
        BLOCKED_CTE + " SELECT COUNT(*) FROM runs WHERE status = 'queued' AND id NOT IN (SELECT id FROM blocked)").fetchone()[0])


def recover_orphans(store: Store, keep: set[int] = frozenset()) -> list[int]:
    """Mark interrupted the runs left "running" by a worker that is gone: a dead process on
    this host (and boot), or, for a worker of another host or of an earlier boot, one whose
    pool stopped beating. Workers in `keep` are the caller's own (it handles them itself).
    Returns the run ids marked."""
    now = time.time()
    beats = {(w["host"], w["pid"]): w["heartbeat"] for w in store.workers()}
    marked = []
    for run in store.list_runs(status=RUNNING):
        row = store.read(lambda con: con.execute("SELECT worker_pid, worker_host FROM runs WHERE id = ?",
                                                 (run["id"],)).fetchone())
        if row is None:
            continue
        pid, host = row["worker_pid"], row["worker_host"]
        if host == HOST and pid in keep:
            continue
        if host == HOST:
            dead = not pid_alive(pid)
        else:
            beat = beats.get((host, pid))
            dead = beat is None or now - beat > STALE_SECONDS
        if dead and store.salvage(run["id"]):
            continue
        if dead and store.end(run["id"], "interrupted",
                              f"interrupted: its worker (pid {pid} on {host}) is gone, the pool stopped or the machine "
                              "restarted; retry to run it again", only_if_running=True, worker_pid=pid):
            marked.append(run["id"])
    return marked


def ensure_workers(home: str | Path | None = None, workers: int | None = None, threads: int | None = None,
                   idle_exit: float | None = None) -> dict:
    """Make sure a worker pool serves this home folder; start a detached one if none is alive.

    For the dashboard: pages call this, then only submit and poll the store. The pool runs as
    its own process (`python -m distill_core.jobs.cli worker --managed`), survives the page,
    writes its log to <home>/logs/pool.log and records its pid and heartbeat in the store.
    Returns {"pid": int, "started": bool}.
    """
    store = Store(home)
    live = store.live_pools()
    if live:
        return {"pid": live[0]["pid"], "started": False}
    lock = pool_lock(store.home)
    if lock is None:  # a managed pool holds the lock: it is starting up
        return {"pid": None, "started": False}
    lock.close()
    (store.home / "logs").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "distill_core.jobs.cli", "worker", "--home", str(store.home), "--managed"]
    if workers:
        cmd += ["--workers", str(workers)]
    if threads:
        cmd += ["--threads", str(threads)]
    if idle_exit:
        cmd += ["--idle-exit", str(idle_exit)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # so the child finds distill_core from any cwd
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(store.home / "logs" / "pool.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=env)
    return {"pid": proc.pid, "started": True}


def pool_lock(home: Path):
    """Take <home>/pool.lock without waiting: the open file (keep it open to hold the lock),
    or None when another managed pool holds it. Where file locks are missing, always the file."""
    f = open(home / "pool.lock", "a+")
    try:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        return f
    except OSError:
        f.close()
        return None
    return f
