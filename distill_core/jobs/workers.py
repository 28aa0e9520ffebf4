"""The worker registry: which pools and workers serve a store, their heartbeats, and the runs
that dead ones leave behind.

A pool registers itself and each of its workers in the store's `workers` table and beats for all
of them; a run left "running" by a worker that is gone is recorded as done from the result.json
it wrote, or else marked interrupted (retryable).
"""
from __future__ import annotations

import json
import time

from .. import paths
from ..constants import DONE, INTERRUPTED, RUNNING
from . import queue
from .host import HOST, pid_alive
from .store import Store, to_json

STALE_SECONDS = 30.0  # a worker whose pool has not beaten for this long is taken for dead


def register(store: Store, pid: int, kind: str, pool_pid: int | None = None, info: dict | None = None) -> None:
    """Record a pool (kind "pool") or one of its workers (kind "worker") on this host."""
    now = time.time()
    store.write(lambda con: con.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?)",
                                        (pid, HOST, kind, pool_pid, now, now, to_json(info or {}))))


def unregister(store: Store, pid: int) -> None:
    """Forget a pool with its workers, or one worker."""
    store.write(lambda con: con.execute("DELETE FROM workers WHERE host = ? AND (pid = ? OR pool_pid = ?)", (HOST, pid, pid)))


def heartbeat(store: Store, pool_pid: int) -> None:
    """A pool's heartbeat, for itself and its workers."""
    now = time.time()
    store.write(lambda con: con.execute("UPDATE workers SET heartbeat = ? WHERE host = ? AND (pid = ? OR pool_pid = ?)",
                                        (now, HOST, pool_pid, pool_pid)))


def workers(store: Store) -> list[dict]:
    rows = store.read(lambda con: con.execute("SELECT * FROM workers ORDER BY started").fetchall())
    return [{**dict(r), "info": json.loads(r["info"]) if r["info"] else None} for r in rows]


def live_pools(store: Store, stale: float = 10.0) -> list[dict]:
    """Pools whose heartbeat is fresh and whose process is alive (on this host)."""
    now = time.time()
    return [w for w in workers(store) if w["kind"] == "pool" and now - w["heartbeat"] < stale
            and (w["host"] != HOST or pid_alive(w["pid"]))]


def salvage(store: Store, run_id: int) -> bool:
    """Record a run as done from its result.json when its worker wrote the result but died
    (or failed to reach the store) before recording it: nothing finished is lost."""
    row = store.read(lambda con: con.execute("SELECT hash, started, status FROM runs WHERE id = ?", (run_id,)).fetchone())
    if row is None or row["started"] is None or row["status"] == DONE:
        return False
    try:
        result = json.loads((paths.run_folder(store.home, row["hash"]) / paths.RESULT).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(result, dict) or float(result.get("started") or 0) < row["started"]:
        return False  # an older attempt's file
    store.finish(run_id, result)
    return True


def recover_orphans(store: Store, keep: set[int] = frozenset()) -> list[int]:
    """Mark interrupted the runs left "running" by a worker that is gone: a dead process on
    this host (and boot), or, for a worker of another host or of an earlier boot, one whose
    pool stopped beating. Workers in `keep` are the caller's own (it handles them itself).
    Returns the run ids marked."""
    now = time.time()
    beats = {(w["host"], w["pid"]): w["heartbeat"] for w in workers(store)}
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
        if dead and salvage(store, run["id"]):
            continue
        if dead and queue.end(store, run["id"], INTERRUPTED,
                              f"interrupted: its worker (pid {pid} on {host}) is gone, the pool stopped or the machine "
                              "restarted; retry to run it again", only_if_running=True, worker_pid=pid):
            marked.append(run["id"])
    return marked
