"""The database: one SQLite file, `<home>/lab.sqlite` (paths.DB).

It holds experiments, their runs (status, config, result, error), progress events, and the
worker pools that serve the queue. This module is the database layer only: the connection,
retries while another process writes, the schema and its migrations, and plain reads and writes
of rows. What the rows mean for the queue (which run goes next, dependencies, failures that
propagate) is in `queue.py`; the worker registry and heartbeats in `workers.py`. Artifacts
(weights, exports, cards) live in `<home>/runs/<hash>/`; a run's row keeps the path.

Reads for the pages, all on `Store`:

    list_runs(status=, experiment=) -> [run summary dicts]             the jobs table
    get_run(run_id)                 -> full run dict or None            config, result, traceback
    progress(run_id, after=0)       -> [event dicts]                    live curves
    results_frame(experiment=None)  -> pandas DataFrame, one row per finished run (every plot)
    experiments()                   -> experiments with their run counts
    changes_since(cursor)           -> what changed (cheap polling)
    queue_state()                   -> {status: count}

Concurrency: every call opens its own short-lived connection, so a Store may be shared by
threads and processes. Writes take the write lock up front (BEGIN IMMEDIATE) and are retried
with backoff while another process holds it, so many submitters never see "database is locked".
"""
from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from .. import paths
from ..constants import DONE, RUNNING, STATUSES
from ..errors import DistillError
from .results import build_frame

SCHEMA_VERSION = 3


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
    # The machine a run trains on, as its executor names it: this host for the local pool, a
    # Ray node for the Ray executor (worker_pid and worker_host stay the process that owns the run).
    2: ["ALTER TABLE runs ADD COLUMN node TEXT"],
    # When a running teacher's cache entry was written: its students may start while it is
    # still being measured (queue._READY); NULL until then and for every other run.
    3: ["ALTER TABLE runs ADD COLUMN serving REAL"],
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
        self.home = paths.home_dir(home)
        self.path = self.home / paths.DB
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

    @staticmethod
    def run_row(con: sqlite3.Connection, run_id: int) -> sqlite3.Row:
        """A run's row inside a transaction; JobError when there is none."""
        row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise JobError(f"no run #{run_id}")
        return row

    # -- queries for the pages -------------------------------------------------------------------

    _SUMMARY = ("id, hash, role, label, status, depends_on, priority, attempts, worker_pid, node, cancel_requested, "
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
        priority, attempts, worker_pid, node (the machine it trains on), created/started/finished/updated (unix seconds), error,
        progress (the latest event dict or None), experiments (ids), cancelling, accuracy.
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
            return rows, self._experiment_map(con)

        rows, exps = self.read(q)
        out = []
        for row in rows:
            d = self._summary(row, exps)
            d["accuracy"] = row["acc"]
            d.pop("acc", None)
            out.append(d)
        if frame:
            df = pd.DataFrame(out, columns=[c.strip() for c in self._SUMMARY.split(",")] + ["experiments", "cancelling", "accuracy"])
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
                 force=bool(row["force"]), folder=str(paths.run_folder(self.home, row["hash"])))
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

    def results_frame(self, experiment: int | None = None, status: str | None = DONE):
        """All finished runs as one pandas DataFrame, one row per run: the single source for
        every plot. See `results.RESULT_COLUMNS` for the fixed columns; every numeric or text
        leaf of a run's `measure`, `energy` and `phases` results, of its training settings and
        of its method and data-set knobs is added as "measure.size.fp32_bytes"-style columns.
        Numbers are float64 with NaN where a run has no value; never 0 for missing."""
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

    # -- written by workers -------------------------------------------------------------------------

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

    def mark_serving(self, run_id: int) -> None:
        """A running teacher's cache entry is written: the runs that wait for it may start."""
        def txn(con):
            v, now = self.bump(con), time.time()
            con.execute("UPDATE runs SET serving = ?, updated = ?, version = ? WHERE id = ? AND status = 'running'",
                        (now, now, v, run_id))

        self.write(txn)

    def set_node(self, run_id: int, node: str) -> None:
        """Record the machine a run trains on (an executor learns it when the run starts there)."""
        def txn(con):
            v, now = self.bump(con), time.time()
            con.execute("UPDATE runs SET node = ?, updated = ?, version = ? WHERE id = ?", (node, now, v, run_id))

        self.write(txn)

    def run_status(self, run_id: int) -> tuple[str | None, bool]:
        """(status, cancel requested) of a run; (None, True) when it was deleted."""
        row = self.read(lambda con: con.execute("SELECT status, cancel_requested FROM runs WHERE id = ?", (run_id,)).fetchone())
        if row is None:
            return None, True
        return row[0], row[1] is not None

    def amend_result(self, run_id: int, result: dict) -> bool:
        """Replace a done run's result with a later version of it (an export made on demand);
        False when the run is not done (deleted, or trained again meanwhile)."""
        def txn(con):
            v = self.bump(con)
            cur = con.execute("UPDATE runs SET result = ?, updated = ?, version = ? WHERE id = ? AND status = 'done'",
                              (to_json(result), time.time(), v, run_id))
            return cur.rowcount == 1

        return self.write(txn, durable=True)

    def finish(self, run_id: int, result: dict) -> None:
        """Store a run's result: it is done (whatever was decided about it meanwhile)."""
        def txn(con):
            v, now = self.bump(con), time.time()
            con.execute("UPDATE runs SET status = 'done', result = ?, error = NULL, traceback = NULL, finished = ?, "
                        "updated = ?, version = ? WHERE id = ?", (to_json(result), now, now, v, run_id))

        self.write(txn, durable=True)
