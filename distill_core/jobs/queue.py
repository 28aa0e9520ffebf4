"""Queue policy: what a submitted run becomes, which run goes next, and what a failure does.

    submit(store, spec, runs)      queue an experiment's runs, reusing identical ones
    claim(store, worker_pid)       the next ready run, marked running
    end(store, run_id, status, ..) a run failed, was cancelled or interrupted; its dependents follow
    cancel / retry / delete        what a user asks for on the Runs page or the CLI

Runs go FIFO by (priority desc, id); a run waits for its dependency (its teacher run, or the run
it starts from) to be done, and never starts while another run with the same hash is running
(both would write the same artifacts folder). Workers claim runs themselves, in one write transaction, so any number
of workers and pools (of any executor) can serve the same store.
"""
from __future__ import annotations

import shutil
import sqlite3
import time

from .. import paths
from ..config import ExperimentSpec, expand
from ..constants import CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RETRYABLE, RUNNING, STUDENT
from ..labels import run_label
from ..run_config import RunConfig
from ..teachers import TeacherCache, teacher_kind
from .host import HOST, NODE
from .store import JobError, Store, to_json

# A run is ready when what it waits for is done, or is a teacher still running whose cache entry
# is already written (`serving`: its measuring, a second or so, need not hold up its students).
_READY = """FROM runs r LEFT JOIN runs d ON d.id = r.depends_on
    WHERE r.status = 'queued'
      AND (r.depends_on IS NULL OR d.status = 'done' OR d.id IS NULL OR (d.status = 'running' AND d.serving IS NOT NULL))
      AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.hash = r.hash AND x.status = 'running')"""

# Queued runs that cannot start until someone retries an interrupted run they depend on.
_BLOCKED = """WITH RECURSIVE blocked(id) AS (
    SELECT r.id FROM runs r JOIN runs d ON d.id = r.depends_on WHERE r.status = 'queued' AND d.status = 'interrupted'
    UNION SELECT r.id FROM runs r JOIN blocked b ON r.depends_on = b.id WHERE r.status = 'queued')"""


# -- submitting ---------------------------------------------------------------------------------------


def submit(store: Store, spec: ExperimentSpec | dict, runs: list[RunConfig] | None = None, force: bool = False,
           priority: int = 0) -> tuple[int, list[int]]:
    """Queue an experiment: its `runs`, as `config.expand(spec)` made them (expanded here when
    not given, so a bad experiment raises its ConfigError before anything is written).

    A run whose hash is already in the store is reused: queued, running or done runs are linked
    to the new experiment as they are; failed, cancelled or interrupted ones are queued again.
    `force=True` queues finished runs again as new runs (the old results stay). Returns the
    experiment id and its run ids, dependencies (the teacher) first.
    """
    if not isinstance(spec, ExperimentSpec):
        spec = ExperimentSpec.from_dict(spec)
    runs = expand(spec) if runs is None else runs
    spec_json = to_json(spec.to_dict())

    def txn(con):
        v, now = store.bump(con), time.time()
        exp_id = con.execute("INSERT INTO experiments (name, spec, created, version) VALUES (?, ?, ?, ?)",
                             (spec.name or "", spec_json, now, v)).lastrowid
        by_hash: dict[str, int] = {}
        ids = []
        for pos, run in enumerate(runs):
            dep = None
            first = run.depends_on  # the run it starts from, its teacher, or the ensemble that makes this member
            if first:
                dep = by_hash.get(first)
                if dep is None:
                    row = con.execute("SELECT id FROM runs WHERE hash = ? ORDER BY (status = 'done') DESC, id DESC LIMIT 1",
                                      (first,)).fetchone()
                    dep = row[0] if row else None
            row = con.execute("SELECT id, status, depends_on FROM runs WHERE hash = ? ORDER BY id DESC LIMIT 1",
                              (run.hash,)).fetchone()
            if row is not None and (not force or row["status"] in (QUEUED, RUNNING)):
                rid = row["id"]
                if row["status"] in RETRYABLE:
                    _requeue(con, rid, v, now, depends_on=dep)
                elif row["status"] == QUEUED and row["depends_on"] is None and dep is not None:
                    con.execute("UPDATE runs SET depends_on = ? WHERE id = ?", (dep, rid))
            else:
                rid = con.execute(
                    """INSERT INTO runs (hash, role, label, config, status, depends_on, priority, force,
                       created, updated, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (run.hash, run.role, run_label(run, teacher_kind(run)), to_json(run.to_dict()), QUEUED, dep, int(priority),
                     int(bool(force)), now, now, v),
                ).lastrowid
            con.execute("INSERT OR IGNORE INTO experiment_runs (experiment_id, run_id, position) VALUES (?, ?, ?)",
                        (exp_id, rid, pos))
            by_hash[run.hash] = rid
            ids.append(rid)
        return exp_id, ids

    return store.write(txn, durable=True)


def _requeue(con: sqlite3.Connection, run_id: int, version: int, now: float, depends_on: int | None = None) -> None:
    con.execute(
        """UPDATE runs SET status = 'queued', error = NULL, traceback = NULL, result = NULL, progress = NULL,
           worker_pid = NULL, worker_host = NULL, node = NULL, cancel_requested = NULL, dep_failed = 0, started = NULL,
           finished = NULL, depends_on = COALESCE(?, depends_on), updated = ?, version = ? WHERE id = ?""",
        (depends_on, now, version, run_id),
    )
    con.execute("DELETE FROM events WHERE run_id = ?", (run_id,))


# -- what runs next -------------------------------------------------------------------------------------


def has_ready(store: Store) -> bool:
    """Whether a run could be claimed now (a cheap read, no write lock)."""
    return store.read(lambda con: con.execute(f"SELECT 1 {_READY} LIMIT 1").fetchone()) is not None


def claim(store: Store, worker_pid: int, host: str = HOST, node: str | None = NODE) -> dict | None:
    """Take the next ready run for a worker: mark it running and return its row as a dict
    (its "config" is the run's JSON: `RunConfig.from_dict(json.loads(row["config"]))`).
    `worker_pid` on `host` owns the run (a restart marks it interrupted once that process is
    gone); `node` is the machine it trains on, None until an executor knows (`Store.set_node`)."""
    def txn(con):
        v, now = store.bump(con), time.time()
        propagate_failures(con, v, now)
        row = con.execute(f"SELECT r.* {_READY} ORDER BY r.priority DESC, r.id LIMIT 1").fetchone()
        if row is None:
            return None
        con.execute("""UPDATE runs SET status = 'running', worker_pid = ?, worker_host = ?, node = ?, started = ?,
                       finished = NULL, attempts = attempts + 1, cancel_requested = NULL, progress = NULL, serving = NULL, updated = ?,
                       version = ? WHERE id = ?""", (worker_pid, host, node, now, now, v, row["id"]))
        return dict(row)

    if not has_ready(store):
        return None
    return store.write(txn)


def reattempt(store: Store, run_id: int, reason: str) -> int:
    """Start a running run over, where its executor retries it elsewhere (its node died): the
    failed attempt's events give way to one saying why, the attempt count grows, the node is
    forgotten until the new attempt starts. Returns the attempt number now under way."""
    def txn(con):
        v, now = store.bump(con), time.time()
        attempt = con.execute("UPDATE runs SET attempts = attempts + 1, node = NULL, progress = ?, updated = ?, "
                              "version = ? WHERE id = ? RETURNING attempts",
                              (to_json({"phase": "retry", "reason": reason}), now, v, run_id)).fetchone()[0]
        con.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
        con.execute("INSERT INTO events (run_id, t, data) VALUES (?, ?, ?)",
                    (run_id, now, to_json({"phase": "retry", "reason": reason, "attempt": attempt})))
        return attempt

    return store.write(txn)


def blocked_ids(store: Store) -> set[int]:
    """Queued runs waiting on an interrupted run: they start once it is retried."""
    return store.read(lambda con: {r[0] for r in con.execute(_BLOCKED + " SELECT id FROM blocked")})


def outstanding(store: Store) -> int:
    """Queued runs that will start without anyone's help: all queued runs except those waiting
    on an interrupted run (they wait for it to be retried)."""
    return store.read(lambda con: con.execute(
        _BLOCKED + " SELECT COUNT(*) FROM runs WHERE status = 'queued' AND id NOT IN (SELECT id FROM blocked)").fetchone()[0])


def propagate_failures(con: sqlite3.Connection, version: int, now: float) -> int:
    """Fail queued runs whose dependency (the teacher run) failed or was cancelled, naming it;
    repeated down chains of dependencies. Returns how many were failed. (Runs waiting on an
    interrupted run stay queued: retrying it lets them go on.)"""
    total = 0
    while True:
        rows = con.execute("""SELECT r.id, d.id AS dep, d.status AS dep_status, d.error AS dep_error FROM runs r
                              JOIN runs d ON d.id = r.depends_on
                              WHERE r.status = 'queued' AND d.status IN ('failed', 'cancelled')""").fetchall()
        if not rows:
            return total
        for r in rows:
            why = (r["dep_error"] or "").splitlines()[0][:200] if r["dep_error"] else ""
            msg = f"its teacher run #{r['dep']} {r['dep_status']}" + (f": {why}" if why else "")
            con.execute("UPDATE runs SET status = 'failed', dep_failed = 1, error = ?, finished = ?, updated = ?, "
                        "version = ? WHERE id = ?", (msg, now, now, version, r["id"]))
        total += len(rows)


# -- how runs end -----------------------------------------------------------------------------------------


def end(store: Store, run_id: int, status: str, error: str, traceback: str | None = None,
        only_if_running: bool = False, worker_pid: int | None = None) -> bool:
    """End a run as failed, cancelled or interrupted with a reason; its dependents fail."""
    assert status in (FAILED, CANCELLED, INTERRUPTED)

    def txn(con):
        v, now = store.bump(con), time.time()
        sql = "UPDATE runs SET status = ?, error = ?, traceback = ?, finished = ?, updated = ?, version = ? WHERE id = ?"
        args = [status, error, traceback, now, now, v, run_id]
        if only_if_running:
            sql += " AND status = 'running'"
        if worker_pid is not None:
            sql += " AND worker_pid = ?"
            args.append(worker_pid)
        changed = con.execute(sql, args).rowcount
        propagate_failures(con, v, now)
        return bool(changed)

    return store.write(txn, durable=True)


def cancel(store: Store, run_id: int) -> str:
    """Cancel a run. A queued run is cancelled at once; a running one is asked to stop (its
    worker stops within two seconds and marks it cancelled). Returns the status it has now:
    "cancelled", "cancelling", or its unchanged final status."""
    def txn(con):
        row = store.run_row(con, run_id)
        now = time.time()
        if row["status"] == QUEUED:
            v = store.bump(con)
            con.execute("UPDATE runs SET status = 'cancelled', finished = ?, error = 'cancelled before it started', "
                        "updated = ?, version = ? WHERE id = ?", (now, now, v, row["id"]))
            propagate_failures(con, v, now)
            return CANCELLED
        if row["status"] == RUNNING:
            if row["cancel_requested"] is None:
                v = store.bump(con)
                con.execute("UPDATE runs SET cancel_requested = ?, updated = ?, version = ? WHERE id = ?",
                            (now, now, v, row["id"]))
            return "cancelling"
        return row["status"]

    return store.write(txn)


def cancel_experiment(store: Store, experiment_id: int) -> int:
    """Cancel every queued or running run of an experiment; returns how many."""
    ids = [r["id"] for r in store.list_runs(status=[QUEUED, RUNNING], experiment=experiment_id)]
    for rid in ids:
        cancel(store, rid)
    return len(ids)


def retry(store: Store, run_id: int) -> list[int]:
    """Queue a failed, cancelled or interrupted run again, together with the runs that failed
    only because it did. Returns the ids queued."""
    def txn(con):
        row = store.run_row(con, run_id)
        if row["status"] not in RETRYABLE:
            hint = " (submit with force to run it again)" if row["status"] == DONE else ""
            raise JobError(f"run #{run_id} is {row['status']}; only failed, cancelled or interrupted runs can be retried{hint}")
        v, now = store.bump(con), time.time()
        queued, todo = [], [row["id"]]
        while todo:
            rid = todo.pop()
            _requeue(con, rid, v, now)
            queued.append(rid)
            todo += [r[0] for r in con.execute(
                "SELECT id FROM runs WHERE depends_on = ? AND status = 'failed' AND dep_failed = 1", (rid,))]
        return queued

    return store.write(txn)


def retry_interrupted(store: Store) -> list[int]:
    """Queue again every run left interrupted (by a stopped pool or a restart)."""
    out = []
    for r in store.list_runs(status=INTERRUPTED):
        try:
            out += retry(store, r["id"])
        except JobError:  # changed meanwhile
            continue
    return out


def delete(store: Store, run_id: int) -> None:
    """Delete a run, its events and, when no other run shares its hash, its artifacts folder
    (for a teacher, also its cache entry). A running run must be cancelled first."""
    def txn(con):
        row = store.run_row(con, run_id)
        if row["status"] == RUNNING:
            raise JobError(f"run #{run_id} is running; cancel it first")
        v, now = store.bump(con), time.time()
        rid = row["id"]
        con.execute("DELETE FROM events WHERE run_id = ?", (rid,))
        con.execute("DELETE FROM experiment_runs WHERE run_id = ?", (rid,))
        con.execute("DELETE FROM runs WHERE id = ?", (rid,))
        con.execute("UPDATE runs SET depends_on = NULL, updated = ?, version = ? WHERE depends_on = ?", (now, v, rid))
        con.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (rid, v))
        shared = con.execute("SELECT COUNT(*) FROM runs WHERE hash = ?", (row["hash"],)).fetchone()[0]
        return row["hash"], row["role"], shared

    h, role, shared = store.write(txn)
    if not shared:
        shutil.rmtree(paths.run_folder(store.home, h), ignore_errors=True)
        if role != STUDENT:
            TeacherCache(store.home).drop(h)  # a teacher's hash is its cache key


def make_pt2(store: Store, run_id: int, dynamic: bool = False) -> dict:
    """Make the .pt2 program of a finished run that did not make one (measure.pt2 is off by
    default: measure/on_demand.py) and record it in the store. Returns its record, {"ok", "path",
    "bytes", ...} or {"ok": False, "reason"}; JobError when the run is not done."""
    from ..measure.on_demand import make_pt2 as make

    run = store.get_run(run_id)
    if run is None or run["status"] != DONE:
        raise JobError(f"run #{run_id} " + ("does not exist" if run is None else f"is {run['status']}, not done")
                       + ": only a finished run's program can be made")
    result = make(run["folder"], dynamic)
    if not store.amend_result(run_id, result):
        raise JobError(f"run #{run_id} changed while its program was made (deleted or queued again)")
    return result["measure"]["pt2"]
