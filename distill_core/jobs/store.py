"""The experiment store: one SQLite file, `<DISTILL_HOME>/lab.sqlite`.

It holds experiments, their runs (status, config, result, error), progress events, and the
worker pools that serve the queue. Artifacts (weights, exports, cards) live in
`<home>/runs/<hash>/`, written there by `engine.runner.run_one`; the store keeps the path.

Everything a page shows comes from here. The page-facing API, all on `Store`:

    submit(spec, force=False)       -> (experiment_id, [run ids])      validates first
    list_runs(status=, experiment=) -> [run summary dicts]             the jobs table
    get_run(run_id)                 -> full run dict or None            config, result, traceback
    progress(run_id, after=0)       -> [event dicts]                    live curves
    results_frame(experiment=None)  -> pandas DataFrame, one row per finished run (every plot)
    teachers(dataset=None)          -> trained teachers available for reuse
    changes_since(cursor)           -> what changed (cheap polling)
    queue_state()                   -> {status: count}
    cancel(id) / cancel_experiment(id) / retry(id) / retry_interrupted() / delete(id)

Concurrency: every call opens its own short-lived connection, so a Store may be shared by
threads and processes. Writes take the write lock up front (BEGIN IMMEDIATE) and are retried
with backoff while another process holds it, so many submitters never see "database is locked".
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import DistillError
from ..paths import home_dir
from .labels import model_label, run_label

QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = "queued", "running", "done", "failed", "cancelled", "interrupted"
STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
RETRYABLE = (FAILED, CANCELLED, INTERRUPTED)  # a run in one of these can be queued again
SCHEMA_VERSION = 1
DB_NAME = "lab.sqlite"


def _host_id() -> str:
    """This machine and boot: a pid recorded before a restart must not be taken for a live one."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{socket.gethostname()}:{f.read().strip()[:8]}"
    except OSError:
        return socket.gethostname()


HOST = _host_id()


class JobError(DistillError):
    """A request the store cannot honour (unknown run, deleting a running run...)."""


# Schema: MIGRATIONS[n] takes a version n-1 database to version n. A later release appends a
# step; opening an older home folder applies the missing steps in one transaction.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE experiments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL DEFAULT '',
            spec TEXT NOT NULL,
            created REAL NOT NULL,
            version INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hash TEXT NOT NULL,
            role TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL,
            status TEXT NOT NULL,
            depends_on INTEGER,
            priority INTEGER NOT NULL DEFAULT 0,
            force INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            worker_pid INTEGER,
            worker_host TEXT,
            cancel_requested REAL,
            dep_failed INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            updated REAL NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            traceback TEXT,
            progress TEXT,
            result TEXT)""",
        "CREATE INDEX runs_status ON runs(status, priority, id)",
        "CREATE INDEX runs_hash ON runs(hash)",
        "CREATE INDEX runs_version ON runs(version)",
        "CREATE INDEX runs_depends ON runs(depends_on)",
        """CREATE TABLE experiment_runs (
            experiment_id INTEGER NOT NULL,
            run_id INTEGER NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (experiment_id, run_id))""",
        "CREATE INDEX experiment_runs_run ON experiment_runs(run_id)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL,
            t REAL NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX events_run ON events(run_id, id)",
        """CREATE TABLE workers (
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            kind TEXT NOT NULL,
            pool_pid INTEGER,
            started REAL NOT NULL,
            heartbeat REAL NOT NULL,
            info TEXT,
            PRIMARY KEY (host, pid))""",
        "CREATE TABLE tombstones (run_id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters VALUES ('version', 0)",
    ],
}

_migrated: set[str] = set()  # databases this process has already brought up to date


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def to_json(obj: Any) -> str:
    def default(o):
        try:
            return float(o)
        except (TypeError, ValueError):
            return str(o)

    return json.dumps(obj, default=default, allow_nan=True)


def _loads(text: str | None):
    return json.loads(text) if text else None


class Store:
    """The lab's SQLite store in `home` (default: DISTILL_HOME)."""

    def __init__(self, home: str | Path | None = None, timeout: float = 60.0):
        self.home = home_dir(home)
        self.path = self.home / DB_NAME
        self.timeout = timeout  # how long a write keeps retrying while the database is busy
        if str(self.path) not in _migrated:
            self._migrate()
            _migrated.add(str(self.path))

    # -- connections and transactions -------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """A new connection (autocommit; use `read`/`write` for transactions)."""
        con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = 10000")
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("PRAGMA foreign_keys = OFF")
        return con

    def _retrying(self, body: Callable[[], Any]) -> Any:
        delay, deadline = 0.005, time.monotonic() + self.timeout
        while True:
            try:
                return body()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `fn(con)` in one read transaction (a consistent snapshot)."""
        def body():
            con = self.connect()
            try:
                con.execute("BEGIN")
                try:
                    return fn(con)
                finally:
                    con.execute("COMMIT")
            finally:
                con.close()

        return self._retrying(body)

    def write(self, fn: Callable[[sqlite3.Connection], Any], durable: bool = False) -> Any:
        """Run `fn(con)` in one write transaction, taking the write lock first.

        `fn` may run more than once (when the database was busy), so it must only touch the
        database. `durable` syncs to disk at commit (results must survive a power cut).
        """
        def body():
            con = self.connect()
            try:
                if durable:
                    con.execute("PRAGMA synchronous = FULL")
                con.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(con)
                    con.execute("COMMIT")
                    return out
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            finally:
                con.close()

        return self._retrying(body)

    def _migrate(self) -> None:
        def setup():
            con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            try:
                con.execute("PRAGMA busy_timeout = 10000")
                if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
            finally:
                con.close()

        self._retrying(setup)

        def step(con):
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = con.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise JobError(f"{self.path} was written by a newer release (schema {current}, "
                               f"this release knows {SCHEMA_VERSION}); upgrade distill_core")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for sql in MIGRATIONS[version]:
                    con.execute(sql)
            if row is None:
                con.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

        self.write(step)

    def schema_version(self) -> int:
        return self.read(lambda con: con.execute("SELECT version FROM schema_version").fetchone()[0])

    @staticmethod
    def bump(con: sqlite3.Connection) -> int:
        """Next change number (inside a write transaction). Writes are serialised, so change
        numbers grow in commit order: a poller that passes the last one it saw misses nothing."""
        return con.execute("UPDATE counters SET value = value + 1 WHERE name = 'version' RETURNING value").fetchone()[0]

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, spec, force: bool = False, priority: int = 0) -> tuple[int, list[int]]:
        """Validate an experiment, expand it into runs and queue them.

        `spec` is an ExperimentSpec or a dict of its fields. A ConfigError (with a message for
        the widget concerned) is raised before anything is written. A run whose config hash is
        already in the store is reused: queued, running or done runs are linked to the new
        experiment as they are; failed, cancelled or interrupted ones are queued again.
        `force=True` queues finished runs again as new runs (the old results stay).
        Returns the experiment id and its run ids, dependencies (the teacher) first.
        """
        from ..config import ExperimentSpec, expand, run_hash

        if not isinstance(spec, ExperimentSpec):
            spec = ExperimentSpec.from_dict(spec)
        configs = expand(spec)
        items = [(cfg, run_hash(cfg), run_label(cfg), run_hash(cfg["teacher"]) if cfg.get("teacher") else None)
                 for cfg in configs]
        spec_json = to_json(spec.to_dict())

        def txn(con):
            v, now = self.bump(con), time.time()
            exp_id = con.execute("INSERT INTO experiments (name, spec, created, version) VALUES (?, ?, ?, ?)",
                                 (spec.name or "", spec_json, now, v)).lastrowid
            by_hash: dict[str, int] = {}
            ids = []
            for pos, (cfg, h, label, teacher_hash) in enumerate(items):
                dep = None
                if teacher_hash:
                    dep = by_hash.get(teacher_hash)
                    if dep is None:
                        row = con.execute("SELECT id FROM runs WHERE hash = ? ORDER BY (status = 'done') DESC, id DESC LIMIT 1",
                                          (teacher_hash,)).fetchone()
                        dep = row[0] if row else None
                row = con.execute("SELECT id, status, depends_on FROM runs WHERE hash = ? ORDER BY id DESC LIMIT 1",
                                  (h,)).fetchone()
                if row is not None and (not force or row["status"] in (QUEUED, RUNNING)):
                    rid = row["id"]
                    if row["status"] in RETRYABLE:
                        self._requeue(con, rid, v, now, depends_on=dep)
                    elif row["status"] == QUEUED and row["depends_on"] is None and dep is not None:
                        con.execute("UPDATE runs SET depends_on = ? WHERE id = ?", (dep, rid))
                else:
                    rid = con.execute(
                        """INSERT INTO runs (hash, role, label, config, status, depends_on, priority, force,
                           created, updated, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        (h, cfg["role"], label, to_json(cfg), QUEUED, dep, int(priority), int(bool(force)), now, now, v),
                    ).lastrowid
                con.execute("INSERT OR IGNORE INTO experiment_runs (experiment_id, run_id, position) VALUES (?, ?, ?)",
                            (exp_id, rid, pos))
                by_hash[h] = rid
                ids.append(rid)
            return exp_id, ids

        return self.write(txn, durable=True)

    @staticmethod
    def _requeue(con, run_id: int, version: int, now: float, depends_on: int | None = None) -> None:
        con.execute(
            """UPDATE runs SET status = 'queued', error = NULL, traceback = NULL, result = NULL, progress = NULL,
               worker_pid = NULL, worker_host = NULL, cancel_requested = NULL, dep_failed = 0, started = NULL,
               finished = NULL, depends_on = COALESCE(?, depends_on), updated = ?, version = ? WHERE id = ?""",
            (depends_on, now, version, run_id),
        )
        con.execute("DELETE FROM events WHERE run_id = ?", (run_id,))

    # -- control ---------------------------------------------------------------------------------

    def _row(self, con, run_id: int) -> sqlite3.Row:
        row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise JobError(f"no run #{run_id}")
        return row

    def cancel(self, run_id: int) -> str:
        """Cancel a run. A queued run is cancelled at once; a running one is asked to stop (its
        worker stops within two seconds and marks it cancelled). Returns the status it has now:
        "cancelled", "cancelling", or its unchanged final status."""
        def txn(con):
            row = self._row(con, run_id)
            now = time.time()
            if row["status"] == QUEUED:
                v = self.bump(con)
                con.execute("UPDATE runs SET status = 'cancelled', finished = ?, error = 'cancelled before it started', "
                            "updated = ?, version = ? WHERE id = ?", (now, now, v, row["id"]))
                propagate_failures(con, v, now)
                return CANCELLED
            if row["status"] == RUNNING:
                if row["cancel_requested"] is None:
                    v = self.bump(con)
                    con.execute("UPDATE runs SET cancel_requested = ?, updated = ?, version = ? WHERE id = ?",
                                (now, now, v, row["id"]))
                return "cancelling"
            return row["status"]

        return self.write(txn)

    def cancel_experiment(self, experiment_id: int) -> int:
        """Cancel every queued or running run of an experiment; returns how many."""
        ids = [r["id"] for r in self.list_runs(status=[QUEUED, RUNNING], experiment=experiment_id)]
        for rid in ids:
            self.cancel(rid)
        return len(ids)

    def retry(self, run_id: int) -> list[int]:
        """Queue a failed, cancelled or interrupted run again, together with the runs that
        failed only because it did. Returns the ids queued."""
        def txn(con):
            row = self._row(con, run_id)
            if row["status"] not in RETRYABLE:
                hint = " (submit with force to run it again)" if row["status"] == DONE else ""
                raise JobError(f"run #{run_id} is {row['status']}; only failed, cancelled or interrupted runs can be retried{hint}")
            v, now = self.bump(con), time.time()
            queued, todo = [], [row["id"]]
            while todo:
                rid = todo.pop()
                self._requeue(con, rid, v, now)
                queued.append(rid)
                todo += [r[0] for r in con.execute(
                    "SELECT id FROM runs WHERE depends_on = ? AND status = 'failed' AND dep_failed = 1", (rid,))]
            return queued

        return self.write(txn)

    def retry_interrupted(self) -> list[int]:
        """Queue again every run left interrupted (by a stopped pool or a restart)."""
        ids = [r["id"] for r in self.list_runs(status=INTERRUPTED)]
        out = []
        for rid in ids:
            try:
                out += self.retry(rid)
            except JobError:  # changed meanwhile
                continue
        return out

    def delete(self, run_id: int) -> None:
        """Delete a run, its events and, when no other run shares its hash, its artifacts folder
        (for a teacher, also its cached weights and logits). A running run must be cancelled first."""
        def txn(con):
            row = self._row(con, run_id)
            if row["status"] == RUNNING:
                raise JobError(f"run #{run_id} is running; cancel it first")
            v, now = self.bump(con), time.time()
            rid = row["id"]
            con.execute("DELETE FROM events WHERE run_id = ?", (rid,))
            con.execute("DELETE FROM experiment_runs WHERE run_id = ?", (rid,))
            con.execute("DELETE FROM runs WHERE id = ?", (rid,))
            con.execute("UPDATE runs SET depends_on = NULL, updated = ?, version = ? WHERE depends_on = ?", (now, v, rid))
            con.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (rid, v))
            shared = con.execute("SELECT COUNT(*) FROM runs WHERE hash = ?", (row["hash"],)).fetchone()[0]
            return row["hash"], row["role"], json.loads(row["config"]), shared

        h, role, config, shared = self.write(txn)
        if not shared:
            shutil.rmtree(self.home / "runs" / h, ignore_errors=True)
            if role != "student":
                shutil.rmtree(self.home / "teachers" / teacher_cache_key(config), ignore_errors=True)

    # -- queries for the pages -------------------------------------------------------------------

    _SUMMARY = ("id, hash, role, label, status, depends_on, priority, attempts, worker_pid, cancel_requested, "
                "created, started, finished, updated, error, progress")

    def _summary(self, row: sqlite3.Row, experiments: dict[int, list[int]], result: dict | None = None) -> dict:
        d = {k: row[k] for k in row.keys() if k not in ("progress", "result", "config", "traceback")}
        d["progress"] = _loads(row["progress"])
        d["experiments"] = experiments.get(row["id"], [])
        d["cancelling"] = row["status"] == RUNNING and row["cancel_requested"] is not None
        if "result" in row.keys():
            result = _loads(row["result"])
        d["accuracy"] = ((result or {}).get("metrics") or {}).get("accuracy")
        return d

    def list_runs(self, status: str | Iterable[str] | None = None, experiment: int | None = None,
                  role: str | None = None, limit: int | None = None, newest_first: bool = False,
                  frame: bool = False):
        """Run summaries (no config or full result): id, hash, role, label, status, depends_on,
        priority, attempts, worker_pid, created/started/finished/updated (unix seconds), error,
        progress (the latest event dict or None), experiments (ids), cancelling, accuracy, blocked
        (queued behind an interrupted run: it starts once that run is retried).
        Filter by status (one or several), experiment id, role. `frame=True` gives a DataFrame."""
        where, args = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                raise JobError(f"unknown status {bad[0]!r}; statuses: {', '.join(STATUSES)}")
            where.append(f"r.status IN ({','.join('?' * len(statuses))})")
            args += statuses
        if experiment is not None:
            where.append("r.id IN (SELECT run_id FROM experiment_runs WHERE experiment_id = ?)")
            args.append(int(experiment))
        if role is not None:
            where.append("r.role = ?")
            args.append(role)
        sql = (f"SELECT {', '.join('r.' + c.strip() for c in self._SUMMARY.split(','))}, "
               "json_extract(r.result, '$.metrics.accuracy') AS acc FROM runs r")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY r.id" + (" DESC" if newest_first else "")
        if limit:
            sql += f" LIMIT {int(limit)}"

        def q(con):
            rows = con.execute(sql, args).fetchall()
            return rows, self._experiment_map(con), blocked_ids(con)

        rows, exps, blocked = self.read(q)
        out = []
        for row in rows:
            d = self._summary(row, exps)
            d["accuracy"] = row["acc"]
            d["blocked"] = row["id"] in blocked
            d.pop("acc", None)
            out.append(d)
        if frame:
            import pandas as pd

            df = pd.DataFrame(out, columns=[c.strip() for c in self._SUMMARY.split(",")] + ["experiments", "cancelling", "accuracy", "blocked"])
            for col in ("depends_on", "worker_pid", "cancel_requested", "created", "started", "finished", "updated", "accuracy"):
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
            return df
        return out

    @staticmethod
    def _experiment_map(con, run_id: int | None = None) -> dict[int, list[int]]:
        sql = "SELECT run_id, experiment_id FROM experiment_runs"
        rows = con.execute(sql + " WHERE run_id = ?", (run_id,)) if run_id is not None else con.execute(sql + " ORDER BY experiment_id")
        out: dict[int, list[int]] = {}
        for rid, eid in rows:
            out.setdefault(rid, []).append(eid)
        return out

    def get_run(self, run_id: int) -> dict | None:
        """Everything about one run: the summary fields plus config, result (the dict run_one
        returned: metrics, train history, phases, artifacts...), traceback, events count."""
        def q(con):
            row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
            if row is None:
                return None
            n = con.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (row["id"],)).fetchone()[0]
            return row, self._experiment_map(con, row["id"]), n

        got = self.read(q)
        if got is None:
            return None
        row, exps, n_events = got
        result = _loads(row["result"])
        d = self._summary(row, exps, result)
        d.update(config=_loads(row["config"]), result=result, traceback=row["traceback"], events=n_events,
                 force=bool(row["force"]), folder=str(self.home / "runs" / row["hash"]))
        return d

    def progress(self, run_id: int, after: int = 0) -> list[dict]:
        """The run's progress events in order, each {"id", "t", **event}. Events come from the
        training loop (phase, epoch, epochs, step, steps, losses, val_accuracy, elapsed,
        epoch_end) plus a {"phase": "start"} event when a worker picks the run up. Pass the
        last id seen as `after` to fetch only newer ones."""
        rows = self.read(lambda con: con.execute(
            "SELECT id, t, data FROM events WHERE run_id = ? AND id > ? ORDER BY id", (int(run_id), int(after))).fetchall())
        return [{"id": r["id"], "t": r["t"], **json.loads(r["data"])} for r in rows]

    def queue_state(self) -> dict[str, int]:
        """How many runs are in each status (every status present, 0 when none)."""
        rows = self.read(lambda con: con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        out = dict.fromkeys(STATUSES, 0)
        out.update({s: n for s, n in rows})
        return out

    def changes_since(self, cursor: int = 0) -> dict:
        """Cheap polling. Returns {"cursor": int, "runs": [ids changed after `cursor`],
        "deleted": [ids deleted after it], "experiments": [new experiment ids],
        "counts": queue_state()}. Start with 0; pass back the cursor returned last time.
        A run changes when it is queued, starts, reports progress, finishes or is cancelled."""
        cursor = int(cursor or 0)

        def q(con):
            now = con.execute("SELECT value FROM counters WHERE name = 'version'").fetchone()[0]
            runs = [r[0] for r in con.execute("SELECT id FROM runs WHERE version > ? ORDER BY id", (cursor,))]
            deleted = [r[0] for r in con.execute("SELECT run_id FROM tombstones WHERE version > ?", (cursor,))]
            exps = [r[0] for r in con.execute("SELECT id FROM experiments WHERE version > ?", (cursor,))]
            counts = con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
            return now, runs, deleted, exps, counts

        now, runs, deleted, exps, counts = self.read(q)
        state = dict.fromkeys(STATUSES, 0)
        state.update({s: n for s, n in counts})
        return {"cursor": now, "runs": runs, "deleted": deleted, "experiments": exps, "counts": state}

    def experiments(self) -> list[dict]:
        """Experiments, newest first: id, name, created, spec (dict), runs (count), and counts per status."""
        def q(con):
            exps = con.execute("SELECT * FROM experiments ORDER BY id DESC").fetchall()
            counts = con.execute("SELECT e.experiment_id, r.status, COUNT(*) FROM experiment_runs e "
                                 "JOIN runs r ON r.id = e.run_id GROUP BY e.experiment_id, r.status").fetchall()
            return exps, counts

        exps, counts = self.read(q)
        per: dict[int, dict] = {}
        for eid, status, n in counts:
            per.setdefault(eid, {})[status] = n
        return [{"id": e["id"], "name": e["name"], "created": e["created"], "spec": json.loads(e["spec"]),
                 "runs": sum(per.get(e["id"], {}).values()), "counts": per.get(e["id"], {})} for e in exps]

    def teachers(self, dataset: str | None = None) -> list[dict]:
        """Trained teachers available for reuse (from teacher runs and the teacher cache).

        Each: hash, run_id (None when trained inside another run), role, dataset, model (short
        name), model_spec, params, test_accuracy, created, config (the teacher run config) and
        spec_fields: the ExperimentSpec fields (dataset, dataset_knobs, teacher, teacher_train)
        that make a new experiment reuse this very teacher instead of training one.
        """
        from ..config import dataset_name_and_knobs
        from ..engine.runner import TeacherCache

        runs = {}
        for r in self.list_runs(status=DONE):
            if r["role"] != "student":
                runs[teacher_cache_key(self.get_run(r["id"])["config"])] = r["id"]
        out = []
        for meta in TeacherCache(self.home).list():
            h = meta["hash"]
            try:
                cfg = json.loads((self.home / "teachers" / h / "config.json").read_text())
            except (OSError, ValueError):
                continue
            if not cfg.get("dataset"):
                continue
            name, ds = dataset_name_and_knobs(cfg["dataset"])
            if dataset is not None and name != dataset:
                continue
            out.append({
                "hash": h, "run_id": runs.get(h), "role": meta.get("role"), "dataset": name,
                "model": model_label(cfg.get("model")), "model_spec": cfg.get("model"),
                "params": meta.get("params"), "test_accuracy": meta.get("test_accuracy"),
                "created": meta.get("created"), "config": cfg,
                "spec_fields": {"dataset": name, "dataset_knobs": ds, "teacher": cfg.get("model"),
                                "teacher_train": cfg.get("train")},
            })
        return sorted(out, key=lambda t: -(t["created"] or 0))

    def results_frame(self, experiment: int | None = None, status: str | None = DONE):
        """All finished runs as one pandas DataFrame, one row per run: the single source for
        every plot. See `results.RESULT_COLUMNS` for the fixed columns; every numeric or text
        leaf of a run's `measure`, `energy` and `phases` results, of its training settings and
        of its method and data-set knobs is added as "measure.size.fp32_bytes"-style columns.
        Numbers are float64 with NaN where a run has no value; never 0 for missing."""
        from .results import build_frame

        where, args = [], []
        if status is not None:
            where.append("r.status = ?")
            args.append(status)
        if experiment is not None:
            where.append("r.id IN (SELECT run_id FROM experiment_runs WHERE experiment_id = ?)")
            args.append(int(experiment))
        sql = "SELECT r.* FROM runs r" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id"

        def q(con):
            return con.execute(sql, args).fetchall(), self._experiment_map(con)

        rows, exps = self.read(q)
        return build_frame(rows, exps, experiment)

    # -- used by workers -------------------------------------------------------------------------

    def add_events(self, run_id: int, events: list[dict]) -> None:
        """Append progress events; the last becomes the run's current progress."""
        if not events:
            return

        def txn(con):
            v, now = self.bump(con), time.time()
            con.executemany("INSERT INTO events (run_id, t, data) VALUES (?, ?, ?)",
                            [(run_id, e.get("t", now), to_json({k: x for k, x in e.items() if k != "t"})) for e in events])
            con.execute("UPDATE runs SET progress = ?, updated = ?, version = ? WHERE id = ?",
                        (to_json(events[-1]), now, v, run_id))

        self.write(txn)

    def run_status(self, run_id: int) -> tuple[str | None, bool]:
        """(status, cancel requested) of a run; (None, True) when it was deleted."""
        row = self.read(lambda con: con.execute("SELECT status, cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone())
        if row is None:
            return None, True
        return row[0], row[1] is not None

    def finish(self, run_id: int, result: dict) -> None:
        """Store a run's result: it is done (whatever was decided about it meanwhile)."""
        def txn(con):
            v, now = self.bump(con), time.time()
            con.execute("UPDATE runs SET status = 'done', result = ?, error = NULL, traceback = NULL, finished = ?, "
                        "updated = ?, version = ? WHERE id = ?", (to_json(result), now, now, v, run_id))

        self.write(txn, durable=True)

    def salvage(self, run_id: int) -> bool:
        """Record a run as done from its result.json when its worker wrote the result but died
        (or failed to reach the store) before recording it: nothing finished is lost."""
        row = self.read(lambda con: con.execute("SELECT hash, started, status FROM runs WHERE id = ?", (run_id,)).fetchone())
        if row is None or row["started"] is None or row["status"] == DONE:
            return False
        try:
            result = json.loads((self.home / "runs" / row["hash"] / "result.json").read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(result, dict) or float(result.get("started") or 0) < row["started"]:
            return False  # an older attempt's file
        self.finish(run_id, result)
        return True

    def end(self, run_id: int, status: str, error: str, traceback: str | None = None,
            only_if_running: bool = False, worker_pid: int | None = None) -> bool:
        """End a run as failed, cancelled or interrupted with a reason; its dependents fail."""
        assert status in (FAILED, CANCELLED, INTERRUPTED)

        def txn(con):
            v, now = self.bump(con), time.time()
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

        return self.write(txn, durable=True)

    # -- worker pools ----------------------------------------------------------------------------

    def register_worker(self, pid: int, kind: str, pool_pid: int | None = None, info: dict | None = None) -> None:
        now = time.time()
        self.write(lambda con: con.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?)",
                                           (pid, HOST, kind, pool_pid, now, now, to_json(info or {}))))

    def unregister_worker(self, pid: int) -> None:
        self.write(lambda con: con.execute("DELETE FROM workers WHERE host = ? AND (pid = ? OR pool_pid = ?)", (HOST, pid, pid)))

    def heartbeat(self, pool_pid: int) -> None:
        """A pool's heartbeat, for itself and its workers."""
        now = time.time()
        self.write(lambda con: con.execute("UPDATE workers SET heartbeat = ? WHERE host = ? AND (pid = ? OR pool_pid = ?)",
                                           (now, HOST, pool_pid, pool_pid)))

    def workers(self) -> list[dict]:
        rows = self.read(lambda con: con.execute("SELECT * FROM workers ORDER BY started").fetchall())
        return [{**dict(r), "info": _loads(r["info"])} for r in rows]

    def live_pools(self, stale: float = 10.0) -> list[dict]:
        """Pools whose heartbeat is fresh and whose process is alive (on this host)."""
        now = time.time()
        return [w for w in self.workers() if w["kind"] == "pool" and now - w["heartbeat"] < stale
                and (w["host"] != HOST or pid_alive(w["pid"]))]


def teacher_cache_key(config: dict) -> str:
    """The folder name of a teacher (or assistant) config in <home>/teachers/."""
    from ..engine import runner

    key = getattr(runner, "cache_key", None)
    if key is None:
        from ..config import run_hash as key
    return key(config)


# Queued runs that cannot start until someone retries an interrupted run they depend on.
BLOCKED_CTE = """WITH RECURSIVE blocked(id) AS (
    SELECT r.id FROM runs r JOIN runs d ON d.id = r.depends_on WHERE r.status = 'queued' AND d.status = 'interrupted'
    UNION SELECT r.id FROM runs r JOIN blocked b ON r.depends_on = b.id WHERE r.status = 'queued')"""


def blocked_ids(con: sqlite3.Connection) -> set[int]:
    return {r[0] for r in con.execute(BLOCKED_CTE + " SELECT id FROM blocked")}


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


def pid_alive(pid: int | None) -> bool:
    """Whether a process of this host is alive (a zombie counts as dead)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True

