"""The experiment store and background jobs: submit, run, cancel, faults, restarts, concurrency."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distill_core import teachers
from distill_core.errors import ConfigError
from distill_core.jobs import RESULT_COLUMNS, JobError, LocalExecutor, Store, ensure_workers, queue, run_inline
from distill_core.jobs import cli
from distill_core.jobs.executor import pool_lock
from distill_core.jobs.host import pid_alive
from distill_core.jobs.queue import claim, outstanding
from distill_core.jobs.workers import live_pools
from distill_core.run_config import RunConfig

# Measurements (ONNX, latency, energy) belong to their own tests; here they would only add time.
MEASURE_OFF = json.dumps({k: False for k in ("energy", "pt2", "onnx", "int8", "latency", "card", "budgets")})
TINY = {"dataset": "digits", "teacher": "mlp-small", "students": ["hinton-tiny"], "temperatures": [2, 4],
        "train": {"epochs": 2}}


def long_teacher(lr: float = 1e-3) -> dict:
    """One teacher run that trains for minutes unless stopped (its students are not needed)."""
    return {"dataset": "digits", "teacher": "mlp-small", "students": ["logistic"], "methods": ["kd"],
            "baseline": False, "teacher_train": {"epochs": 5000, "lr": lr}, "train": {"epochs": 1}}


@pytest.fixture
def jhome(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("DISTILL_HOME", str(h))
    monkeypatch.setenv("DISTILL_MEASURE", MEASURE_OFF)
    return h


def wait_for(cond, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def training_event(store: Store, run_id: int):
    return next((e for e in store.progress(run_id) if e.get("phase") != "start"), None)


# -- in-process: the store, expansion, results ------------------------------------------------------

def test_submit_run_results_and_dedup(jhome, capsys):
    store = Store()
    exp_id, ids = queue.submit(store, TINY)
    assert len(ids) == 4  # teacher, kd T=2, kd T=4, scratch baseline
    runs = {r["id"]: r for r in store.list_runs(experiment=exp_id)}
    teacher = ids[0]
    assert runs[teacher]["role"] == "teacher" and runs[teacher]["depends_on"] is None
    assert all(runs[i]["role"] == "student" and runs[i]["depends_on"] == teacher for i in ids[1:])
    assert store.queue_state()["queued"] == 4
    cursor = store.changes_since(0)["cursor"]

    assert dict(run_inline(store)) == {i: "done" for i in ids}
    changes = store.changes_since(cursor)
    assert set(changes["runs"]) == set(ids) and changes["counts"]["done"] == 4
    assert store.changes_since(changes["cursor"])["runs"] == []

    # progress: a start event, then the training loop's events with every epoch end
    events = store.progress(ids[1])
    assert events[0]["phase"] == "start"
    assert [e["epoch"] for e in events if e.get("epoch_end")] == [1, 2]
    assert store.progress(ids[1], after=events[-1]["id"]) == []

    run = store.get_run(ids[1])
    assert run["status"] == "done" and run["result"]["metrics"]["accuracy"] > 0.1
    assert (Path(run["folder"]) / "result.json").is_file()
    assert run["label"] == "hinton-tiny · kd T=2 α=0.9 · seed 0"

    frame = store.results_frame()
    assert list(frame["run_id"]) == ids
    assert list(frame.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    assert frame["accuracy"].between(0, 1).all()
    assert frame.loc[frame.role == "teacher", "teacher_agreement"].isna().all()
    students = frame[frame.role == "student"]
    assert students["teacher_agreement"].notna().all() and students["teacher_accuracy"].notna().all()
    assert sorted(students["temperature"].dropna()) == [2.0, 4.0]
    assert (students["teacher"] == "mlp-small").all() and (students["model"] == "hinton-tiny").all()
    assert frame["params"].gt(0).all() and frame["train.epochs"].eq(2).all()
    assert "phases.student_training.seconds" in frame.columns
    for name, (dtype, _) in RESULT_COLUMNS.items():
        if dtype == "float64":
            assert frame[name].dtype == np.float64, name
    assert teachers.reusable(jhome)[0]["hash"] == store.get_run(teacher)["hash"]

    # identical runs are reused, not repeated; force queues them again as new runs
    exp2, again = queue.submit(store, TINY)
    assert again == ids and exp2 != exp_id
    assert store.queue_state() == {**store.queue_state(), "queued": 0, "done": 4}
    _, forced = queue.submit(store, TINY, force=True)
    assert not set(forced) & set(ids) and store.queue_state()["queued"] == 4
    assert len(store.results_frame(experiment=exp2)) == 4

    # CLI over the same store
    assert cli.main(["jobs", "--home", str(jhome)]) == 0
    out = capsys.readouterr().out
    assert "hinton-tiny · kd T=4" in out and "queued 4" in out
    assert cli.main(["results", "--home", str(jhome), "--csv", str(jhome / "r.csv")]) == 0
    assert len(pd.read_csv(jhome / "r.csv")) == 4
    assert cli.main(["cancel", "--home", str(jhome), str(forced[0])]) == 0
    assert store.get_run(forced[1])["status"] == "failed"  # its teacher was cancelled
    assert "teacher run" in store.get_run(forced[1])["error"]
    assert cli.main(["retry", "--home", str(jhome), str(forced[0])]) == 0
    assert store.queue_state()["queued"] == 4  # the teacher and the three that failed with it
    assert cli.main(["show", "--home", str(jhome), "999"]) == 2


def test_bad_experiment_is_rejected_before_anything_is_queued(jhome):
    store = Store()
    with pytest.raises(ConfigError, match="temperatures"):
        queue.submit(store, {**TINY, "temperatures": [-1]})
    with pytest.raises(ConfigError, match="unknown"):
        queue.submit(store, {**TINY, "dataset": "nope"})
    assert store.queue_state()["queued"] == 0 and store.experiments() == []


def test_schema_version_is_recorded_and_a_newer_store_is_refused(jhome):
    import sqlite3

    from distill_core.jobs import SCHEMA_VERSION
    from distill_core.jobs import store as store_module

    store = Store()
    assert store.schema_version() == SCHEMA_VERSION
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    store_module._migrated.clear()  # as a fresh process would
    with pytest.raises(JobError, match="newer release"):
        Store()


def test_results_frame_is_typed_even_when_empty(jhome):
    frame = Store().results_frame()
    assert frame.empty and list(frame.columns) == list(RESULT_COLUMNS)
    assert frame["accuracy"].dtype == np.float64 and frame["run_id"].dtype == np.int64


def test_failed_run_keeps_its_error_and_dependents_follow_on_retry(jhome):
    import torch

    from distill_core.models import build_model, save_weights

    weights = jhome.parent / "teacher.safetensors"
    torch.manual_seed(0)
    save_weights(build_model("mlp-small", (64,), 10), weights)
    spec = {**TINY, "teacher": {"weights": str(weights), "model": "mlp-small"}, "temperatures": [4]}
    store = Store()
    _, ids = queue.submit(store, spec)
    weights.rename(weights.with_suffix(".bak"))  # the file disappears after validation

    assert dict(run_inline(store))[ids[0]] == "failed"
    teacher = store.get_run(ids[0])
    assert "no such weight file" in teacher["error"] and "Traceback" in teacher["traceback"]
    for rid in ids[1:]:
        run = store.get_run(rid)
        assert run["status"] == "failed" and f"teacher run #{ids[0]} failed" in run["error"]

    weights.with_suffix(".bak").rename(weights)
    assert sorted(queue.retry(store, ids[0])) == sorted(ids)
    assert dict(run_inline(store)) == {i: "done" for i in ids}
    with pytest.raises(JobError, match="only failed, cancelled or interrupted"):
        queue.retry(store, ids[0])


def test_students_start_while_their_teacher_is_measured(jhome, monkeypatch):
    """Once a teacher's cache entry is written its students may be claimed, while the teacher
    run itself is still being measured; not before. A teacher claimed again starts unserving."""
    from distill_core.jobs.worker import execute_run
    from distill_core.measure.hook import RunMeasurement

    store = Store()
    _, ids = queue.submit(store, {**TINY, "temperatures": [4]})
    teacher = claim(store, 1)
    assert teacher["id"] == ids[0] and claim(store, 2) is None  # training: its students wait
    during = []
    real = RunMeasurement.attach

    def attach(self, result, *args, **kwargs):
        if result["role"] == "teacher":
            during.append((store.get_run(ids[0])["status"], claim(store, 2)))
        return real(self, result, *args, **kwargs)

    monkeypatch.setattr(RunMeasurement, "attach", attach)
    assert execute_run(store, teacher, log=None) == "done"
    [(status, student)] = during
    assert status == "running" and student is not None and student["id"] in ids[1:]
    assert {"phase": "measuring", "teacher_cached": True}.items() <= store.progress(ids[0])[-1].items()
    assert execute_run(store, student, log=None) == "done"
    # A teacher running again (a forced re-run drops its cache entry) holds its students anew.
    con_ready = lambda: store.read(lambda con: con.execute(f"SELECT r.id {queue._READY}").fetchall())
    store.write(lambda con: con.execute("UPDATE runs SET status = 'queued' WHERE id IN (?, ?)", (ids[0], student["id"])))
    assert claim(store, 1)["id"] == ids[0]
    assert [r[0] for r in con_ready()] == []


def test_delete_removes_artifacts_unless_shared(jhome):
    store = Store()
    _, ids = queue.submit(store, {**TINY, "temperatures": [4]})
    run_inline(store)
    folder = Path(store.get_run(ids[1])["folder"])
    assert folder.is_dir()
    queue.delete(store, ids[1])
    assert store.get_run(ids[1]) is None and not folder.exists()
    assert ids[1] in store.changes_since(0)["deleted"]
    teacher_cache = jhome / "teachers"
    assert any(teacher_cache.iterdir())
    queue.delete(store, ids[0])  # a teacher takes its cached weights and logits with it
    assert not [p for p in teacher_cache.iterdir() if not p.name.startswith(".")]
    with pytest.raises(JobError, match="no run"):
        queue.delete(store, 12345)


# -- worker processes: cancel, kill -9, restart -------------------------------------------------------

@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """One pool of two warm workers shared by the process tests (start-up is the slow part)."""
    home = tmp_path_factory.mktemp("pool") / "home"
    mp_env = pytest.MonkeyPatch()
    mp_env.setenv("DISTILL_HOME", str(home))
    mp_env.setenv("DISTILL_MEASURE", MEASURE_OFF)
    executor = LocalExecutor(home, workers=2, threads=1, quiet=True, log=None).start()
    yield executor
    executor.shutdown(timeout=10)
    mp_env.undo()


def test_cancel_stops_a_running_job_within_two_seconds(pool):
    store = pool.store
    _, ids = queue.submit(store, long_teacher(lr=2e-3))
    wait_for(lambda: training_event(store, ids[0]), 60, "the teacher to train")
    asked = time.monotonic()
    assert queue.cancel(store, ids[0]) == "cancelling"
    wait_for(lambda: store.get_run(ids[0])["status"] == "cancelled", 2.0, "the run to be cancelled")
    assert time.monotonic() - asked < 2.0
    # its student never starts: it fails naming the cancelled teacher
    wait_for(lambda: store.get_run(ids[1])["status"] == "failed", 5, "the dependent to fail")
    assert "cancelled" in store.get_run(ids[1])["error"]


def test_kill_9_fails_the_run_and_the_pool_goes_on(pool):
    store = pool.store
    _, (victim, *_) = queue.submit(store, long_teacher(lr=3e-3))
    wait_for(lambda: training_event(store, victim), 60, "the long run to train")
    pid = store.get_run(victim)["worker_pid"]
    assert pid in pool.worker_pids()
    _, others = queue.submit(store, {**TINY, "seeds": [7]})
    os.kill(pid, signal.SIGKILL)
    run = wait_for(lambda: (r := store.get_run(victim))["status"] == "failed" and r, 10, "the run to be failed")
    assert run["error"] == "worker process died (signal 9)"
    assert pool.wait_until_empty(timeout=90)
    assert {store.get_run(i)["status"] for i in others} == {"done"}
    assert len(pool.worker_pids()) == 2 and pid not in pool.worker_pids()
    assert victim in queue.retry(store, victim) and queue.cancel(store, victim) in ("cancelled", "cancelling")


def test_shutdown_returns_after_an_idle_worker_was_killed(pool):
    """A worker killed while it waited for work (SIGTERM to the process group, as `timeout`
    sends) once left the pool's stop signal waiting for ever on that dead waiter. The last test of
    the shared pool: it shuts the pool down."""
    import threading

    assert pool.wait_until_empty(timeout=60)
    time.sleep(0.5)  # both workers back in their idle wait
    for pid in pool.worker_pids():
        os.kill(pid, signal.SIGKILL)
    done = threading.Thread(target=pool.shutdown, kwargs={"timeout": 10}, daemon=True)
    done.start()
    done.join(30)
    assert not done.is_alive(), "the pool's shutdown hung"
    assert pool.worker_pids() == []


def test_a_pool_stopped_while_its_workers_wait_leaves_nothing_behind(jhome):
    """Idle workers exit by themselves when the pool stops (a terminated one left its semaphores
    to the resource tracker, which warned about them on every stop)."""
    script = (
        "import sys, time\n"
        "from distill_core.jobs import LocalExecutor\n"
        "from distill_core.jobs.workers import workers\n"
        "if __name__ == '__main__':\n"
        "    ex = LocalExecutor(sys.argv[1], workers=1, threads=1, quiet=True, log=None).start()\n"
        "    deadline = time.monotonic() + 60\n"
        "    while not [w for w in workers(ex.store) if w['kind'] == 'worker'] and time.monotonic() < deadline:\n"
        "        time.sleep(0.1)\n"
        "    time.sleep(0.3)\n"
        "    ex.shutdown(timeout=10)\n"
        "    print('exit codes', [p.exitcode for p in ex.procs])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(jhome)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "exit codes [0]" in proc.stdout  # it returned; not terminated (-15)
    assert "leaked" not in proc.stderr, proc.stderr


def test_restart_resumes_queued_runs_and_marks_orphans_interrupted(jhome, capsys):
    store = Store()
    _, first = queue.submit(store, TINY)
    _, second = queue.submit(store, {**TINY, "teacher": "logistic", "temperatures": [4], "baseline": False})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = claim(store, dead.pid)  # a worker took the first teacher, then the machine went down
    assert orphan["id"] == first[0] and not pid_alive(dead.pid)

    assert cli.main(["worker", "--home", str(jhome), "--workers", "1", "--until-empty", "--quiet"]) == 0
    run = store.get_run(first[0])
    assert run["status"] == "interrupted" and "gone" in run["error"]
    assert {store.get_run(i)["status"] for i in second} == {"done"}  # the other experiment resumed
    waiting = store.list_runs(experiment=None, status="queued")
    assert {r["id"] for r in waiting} == set(first[1:]) and {r["id"] for r in waiting} <= queue.blocked_ids(store)
    assert outstanding(store) == 0

    assert queue.retry(store, first[0]) == [first[0]]
    run_inline(store)
    assert {store.get_run(i)["status"] for i in first} == {"done"}


def test_a_result_written_before_its_worker_died_is_kept(jhome):
    from distill_core.engine.runner import run_one
    from distill_core.jobs.workers import recover_orphans

    store = Store()
    _, ids = queue.submit(store, {**TINY, "temperatures": [4], "baseline": False})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = claim(store, dead.pid)
    run_one(RunConfig.from_dict(json.loads(run["config"])))  # the worker wrote result.json, then died before recording it
    assert recover_orphans(store) == []
    got = store.get_run(ids[0])
    assert got["status"] == "done" and got["result"]["metrics"]["accuracy"] > 0


def _submitter(home: str, k: int, barrier, errors) -> None:
    os.environ["DISTILL_HOME"] = home
    try:
        store = Store(home)
        barrier.wait(60)
        for i in range(3):
            _, ids = queue.submit(store, {**TINY, "temperatures": [float(10 * k + i + 1)], "baseline": False})
            queue.submit(store, {**TINY, "temperatures": [99.0], "baseline": False})  # the same runs from everyone
            store.list_runs()
            for j in range(20):  # progress writes in between, as workers do
                store.add_events(ids[-1], [{"phase": "student", "epoch": j}])
    except BaseException as exc:  # reported to the test
        errors.put(f"{type(exc).__name__}: {exc}")


def test_many_submitters_at_once_never_see_a_locked_database(jhome):
    Store()  # create the schema once, as a running app would have
    ctx = mp.get_context("spawn")
    n = 4
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_submitter, args=(str(jhome), k, barrier, errors)) for k in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == [] and [p.exitcode for p in procs] == [0] * n
    store = Store()
    runs = store.list_runs()
    assert len(runs) == 1 + n * 3 + 1  # one teacher, each distinct student, the shared one once
    assert len({r["hash"] for r in runs}) == len(runs)
    assert len(store.experiments()) == n * 6


def test_ensure_workers_starts_one_detached_pool(jhome):
    store = Store()
    first = ensure_workers(jhome, workers=1)
    try:
        assert first["started"]
        wait_for(lambda: live_pools(store), 60, "the pool to beat")
        assert ensure_workers(jhome, workers=1)["started"] is False
        _, ids = queue.submit(store, {**TINY, "temperatures": [4], "baseline": False})
        wait_for(lambda: all(store.get_run(i)["status"] == "done" for i in ids), 90, "the runs to finish")
        # Its worker was forked from it (imports done: seconds sooner than a spawned one) ...
        forked = _workers_of(store, first["pid"])
        assert len(forked) == 1 and _cmdline(forked[0]) == _cmdline(first["pid"])
        # ... and one started in place of a dead worker is spawned (the pool has threads by then)
        os.kill(forked[0], signal.SIGKILL)
        wait_for(lambda: [p for p in _workers_of(store, first["pid"]) if p != forked[0]], 60, "a new worker")
        again = [p for p in _workers_of(store, first["pid"]) if p != forked[0]]
        assert "spawn_main" in _cmdline(again[0])
        _, ids = queue.submit(store, {**TINY, "temperatures": [5], "baseline": False})
        wait_for(lambda: all(store.get_run(i)["status"] == "done" for i in ids), 90, "the runs to finish")
    finally:
        os.kill(first["pid"], signal.SIGTERM)
        wait_for(lambda: not pid_alive(first["pid"]) or _reap(first["pid"]), 20, "the pool to stop")
    assert live_pools(store) == []
    wait_for(lambda: not any(pid_alive(p) for p in [*forked, *again]), 20, "the workers to stop")
    lock = pool_lock(store.home)  # no forked worker kept the pool's lock
    assert lock is not None
    lock.close()


def _workers_of(store, pool_pid: int) -> list[int]:
    from distill_core.jobs.workers import workers

    return [w["pid"] for w in workers(store) if w["kind"] == "worker" and w["pool_pid"] == pool_pid and pid_alive(w["pid"])]


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _reap(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True
