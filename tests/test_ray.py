"""The Ray executor on Ray's own testing cluster: a head and a second node on this machine, one
CPU each, shared by the tests of this module (start-up is the slow part; all of them together
take about a minute on two busy cores, and must stay under two).

Every run's remote home is a scratch folder on its node, never the driver's home: whatever a
run needs travels through the object store, and its files come back to the driver's home.
The tests without a cluster (Ray missing, addresses, folders sent between machines) come first.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from distill_core import files, paths
from distill_core.constants import DONE, STUDENT, TEACHER
from distill_core.errors import ConfigError, DataError
from distill_core.jobs import Store, queue, run_inline
from distill_core.jobs.ray_executor import ExecutorError, check_address, named_files, relocate, require_ray
from distill_core.jobs.workers import recover_orphans
from test_jobs import MEASURE_OFF, wait_for

SWEEP = {"dataset": "digits", "teacher": "mlp-small", "students": ["hinton-tiny"], "methods": ["kd"],
         "temperatures": [2, 4, 8, 16], "teacher_train": {"epochs": 15}, "train": {"epochs": 2}}


def long_teacher(seed: int, epochs: int = 5000) -> dict:
    """One teacher run that trains until stopped (or for `epochs`), and one student waiting on it."""
    return {"dataset": "digits", "teacher": "mlp-small", "students": ["logistic"], "methods": ["kd"], "baseline": False,
            "teacher_train": {"epochs": epochs, "lr": 1e-3 * (1 + seed)}, "train": {"epochs": 1}}


# -- without a cluster ------------------------------------------------------------------------------


def test_without_ray_choosing_it_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    from distill_core import settings
    from distill_core.jobs import cli
    from distill_core.jobs.ray_executor import RayExecutor, check_connection

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as it does where Ray is missing
    with pytest.raises(ExecutorError, match="requirements-ray.txt"):
        require_ray()
    with pytest.raises(ExecutorError, match="pip install"):
        RayExecutor(tmp_path)
    with pytest.raises(ExecutorError, match="requirements-ray.txt"):
        check_connection("auto")
    with pytest.raises(ConfigError, match="executor .*requirements-ray.txt"):
        settings.validate_settings({"executor": "ray"})
    assert settings.validate_settings({"executor": "local"})["executor"] == "local"
    assert cli.main(["worker", "--home", str(tmp_path), "--executor", "ray"]) == 2
    assert "requirements-ray.txt" in capsys.readouterr().err


def test_addresses_and_what_travels():
    for good in ("", " auto ", "ray://10.0.0.5:10001", "head.lab:6379"):
        assert check_address(good) == good.strip()
    for bad in ("http://x", "ray://host", "host:99999", "two words:1"):
        with pytest.raises(ValueError, match="ray://host:port"):
            check_address(bad)
    config = {"dataset": {"name": "csv", "path": "/d.csv", "sha256": "a"}, "weights": {"path": "/w.st", "sha256": "b"},
              "teacher": {"dataset": {"name": "csv", "path": "/d.csv", "sha256": "a"}, "onnx": {"path": "/t.onnx", "sha256": "c"}}}
    assert named_files(config) == [("/w.st", "b"), ("/t.onnx", "c")]  # the data set travels loaded, not as its file
    moved = relocate({"a": ["/tmp/x/w", "/tmp/xy"], "b": "/tmp/x"}, "/tmp/x", "/home/runs/h")
    assert moved == {"a": ["/home/runs/h/w", "/tmp/xy"], "b": "/home/runs/h"}


def test_no_cluster_at_the_address_is_said_in_seconds(monkeypatch):
    import socket

    ray = pytest.importorskip("ray")
    from distill_core.jobs.ray_executor import connect

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a process not yet connected
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ExecutorError, match=f"nothing answers at 127.0.0.1:{port}"):
        connect(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10


def test_folders_sent_between_machines_never_land_outside(tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.json").write_text("{}")
    (tmp_path / "src" / "sub" / "b.bin").write_bytes(b"\0\1")
    tree = files.read_tree(tmp_path / "src")
    assert tree == {"a.json": b"{}", "sub/b.bin": b"\0\1"}
    files.write_tree(tmp_path / "dst", tree)
    assert files.read_tree(tmp_path / "dst") == tree
    for bad in ("../escape", "/etc/x", "sub/../../x", "c:\\x", ""):
        with pytest.raises(DataError, match="refusing"):
            files.write_tree(tmp_path / "dst2", {"ok.txt": b"", bad: b"x"})
        assert not (tmp_path / "dst2").exists() and not (tmp_path / "escape").exists()  # nothing written at all


def test_a_weight_file_is_read_from_its_copy_when_the_original_is_gone(tmp_path):
    import torch

    from distill_core.data.cache import load_data
    from distill_core.models import build_model, save_weights
    from distill_core.run_config import RunConfig
    from distill_core.teachers import teacher_of

    original = tmp_path / "user" / "teacher.safetensors"
    original.parent.mkdir()
    torch.manual_seed(0)
    save_weights(build_model("mlp-small", (64,), 10), original)
    sha = files.file_sha256(original)
    copy = files.write_tree(tmp_path / "node" / "files" / sha, {original.name: original.read_bytes()}) / original.name
    shutil.rmtree(original.parent)  # the node does not see the user's folder
    config = RunConfig(role=TEACHER, dataset={"name": "digits"}, model={"arch": "mlp", "hidden": [64]}, method={"name": "scratch"},
                       train={}, weights={"path": str(original), "sha256": sha})
    assert files.locate(original, sha) == original
    with files.local_copies({sha: copy}):
        assert files.locate(original, sha) == copy
        model = teacher_of(config).make(load_data(config.dataset), None, None, None, None).model
        assert sum(p.numel() for p in model.parameters()) > 0
    assert files.locate(original, sha) == original  # outside the block, the path is the path again


def test_a_task_that_ended_is_landed_without_waiting_for_the_others(tmp_path):
    """The driver lands a finished run at once, whatever its other runs are doing: each run's
    wait is a worker left idle (the stand-in keeps `ray.wait`'s contract: it returns when
    `num_returns` refs are ready, or at the timeout)."""
    pytest.importorskip("ray")
    from distill_core.jobs.ray_executor import RayExecutor

    class Ref:
        def __init__(self, ready):
            self.ready = ready

    class StandIn:
        exceptions = require_ray().exceptions

        def wait(self, refs, num_returns, timeout):
            ready = [r for r in refs if r.ready][:num_returns]
            if len(ready) < num_returns:
                time.sleep(timeout)
            return ready, [r for r in refs if r not in ready]

        def get(self, ref):
            return {"status": DONE}

    ex = RayExecutor(tmp_path / "home", log=None)
    ex.ray = StandIn()
    landed = []
    ex._drain = lambda: None
    ex._land = lambda flight, out: landed.append(flight)
    ended, running = Ref(True), Ref(False)
    ex.inflight = {running: "still training", ended: "done"}
    t0 = time.monotonic()
    ex._collect(timeout=3.0)
    assert landed == ["done"] and list(ex.inflight.values()) == ["still training"]
    assert time.monotonic() - t0 < 1.0


def test_a_store_of_the_first_schema_gains_the_later_columns(tmp_path):
    import sqlite3

    from distill_core.jobs.store import MIGRATIONS, SCHEMA_VERSION

    db = tmp_path / paths.DB
    con = sqlite3.connect(db)
    for sql in MIGRATIONS[1]:
        con.execute(sql)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO runs (hash, role, config, status, created, updated) VALUES ('h', 'teacher', '{}', 'done', 0, 0)")
    con.commit()
    con.close()
    store = Store(tmp_path)
    assert store.schema_version() == SCHEMA_VERSION == 3
    row = store.get_run(store.list_runs()[0]["id"])
    assert row["node"] is None and row["serving"] is None and row["hash"] == "h"  # the old row is kept


# -- the testing cluster ------------------------------------------------------------------------------


def ray_processes(tmp: str) -> list[psutil.Process]:
    """Processes of this machine started for our cluster (they carry our RAY_TMPDIR)."""
    out = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get("RAY_TMPDIR") == tmp:
                out.append(p)
        except (psutil.Error, OSError):
            continue
    return out


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from distill_core.jobs.ray_executor import connect

    # A short folder of our own: Ray's socket paths must stay short, and its note of "the current
    # cluster" (which `ray.init("auto")` reads) must not be the machine's.
    tmp = tempfile.mkdtemp(prefix="dlray", dir="/tmp")
    os.mkdir(Path(tmp) / "ray")
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TMPDIR", tmp)
    env.setenv("DISTILL_MEASURE", MEASURE_OFF)
    node = {"num_cpus": 1, "object_store_memory": 80 << 20}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False, "temp_dir": str(Path(tmp) / "ray"),
                                                      "_system_config": {"health_check_period_ms": 500,
                                                                         "health_check_failure_threshold": 4}})
    try:
        second = c.add_node(**node)
        connect(c.address)  # this test process is the driver; the lab's code travels as a runtime env
        c.wait_for_nodes()
        yield c, second
    finally:
        ray.shutdown()
        c.shutdown()
        env.undo()
        left = wait_gone(tmp)
        for p in left:  # the last resort, for our own processes only
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"Ray processes survived the cluster: {[p.pid for p in left]}"


def wait_gone(tmp: str, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    while (left := ray_processes(tmp)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


@pytest.fixture
def executor(cluster, tmp_path, monkeypatch):
    """A Ray executor for a fresh home of its own, on the shared cluster."""
    from distill_core.jobs.ray_executor import RayExecutor

    c, _ = cluster
    monkeypatch.setenv("DISTILL_MEASURE", MEASURE_OFF)
    ex = RayExecutor(tmp_path / "home", address=c.address, log=None).start()
    yield ex
    ex.shutdown(timeout=10)


def test_a_sweep_runs_on_both_nodes_with_the_teacher_trained_once(executor):
    assert len(executor.warmed()) == 2  # both nodes have imported the lab: either can take the next run
    store = executor.store
    _, ids = queue.submit(store, SWEEP)
    teacher, students = ids[0], ids[1:]
    assert len(students) == 5  # four kd students and the scratch baseline
    assert executor.wait_until_empty(timeout=90)
    runs = [store.get_run(i) for i in ids]
    assert [r["status"] for r in runs] == [DONE] * 6, [r["error"] for r in runs]
    trained = [r["id"] for r in runs if "teacher_training" in r["result"]["phases"]]
    assert trained == [teacher] and all(store.get_run(i)["result"]["teacher_cached"] for i in students)
    assert len({r["node"] for r in runs}) == 2  # both nodes served the sweep, and the Runs page says which
    for r in runs:  # the files came back into the driver's home; the result points at them
        folder = Path(r["folder"])
        assert folder.parent == store.home / paths.RUNS
        assert {paths.WEIGHTS, paths.RESULT, paths.CONFIG} <= {p.name for p in folder.iterdir()}
        assert r["result"]["artifacts"]["weights"] == str(folder / paths.WEIGHTS)
        assert json.loads((folder / paths.RESULT).read_text())["artifacts"]["folder"] == str(folder)
        assert "distill-node-" not in json.dumps(r["result"])  # nothing names the node's scratch home
        starts = [e for e in store.progress(r["id"]) if e["phase"] == "start"]
        assert len(starts) == 1 and starts[0]["node"] == r["node"]
    assert (paths.teacher_folder(store.home, runs[0]["hash"]) / paths.LOGITS).is_file()  # the teacher is cached here too


def test_a_teacher_that_fails_on_its_node_fails_its_students(executor, tmp_path):
    import torch

    from distill_core.models import build_model, save_weights

    wrong = tmp_path / "wrong.safetensors"  # weights of another architecture: refused where they are loaded
    torch.manual_seed(0)
    save_weights(build_model("logistic", (64,), 10), wrong)
    store = executor.store
    _, ids = queue.submit(store, {**SWEEP, "teacher": {"weights": str(wrong), "model": "mlp-small"}, "temperatures": [4]})
    assert executor.wait_until_empty(timeout=60)
    teacher = store.get_run(ids[0])
    assert teacher["status"] == "failed" and teacher["node"] and "Traceback" in teacher["traceback"]
    for rid in ids[1:]:
        run = store.get_run(rid)
        assert run["status"] == "failed" and f"teacher run #{ids[0]} failed" in run["error"]
    _, ids = queue.submit(store, {**SWEEP, "temperatures": [4], "train": {"epochs": 1, "device": "cuda"}})
    assert executor.wait_until_empty(timeout=30)  # a run asks for a GPU no node has: it fails, saying so
    assert "no node of the Ray cluster offers 1 CPU(s) and 1 GPU(s)" in store.get_run(ids[1])["error"]


def test_a_users_table_need_not_exist_on_the_nodes(executor, tmp_path):
    from sklearn.datasets import load_digits

    from distill_core.config import ExperimentSpec, expand
    from distill_core.data.cache import load_data

    digits = load_digits()
    table = tmp_path / "user" / "digits.csv"
    table.parent.mkdir()
    rows = ["label," + ",".join(f"p{i}" for i in range(64))]
    rows += [f"{y}," + ",".join(str(int(v)) for v in x) for x, y in zip(digits.data[:400], digits.target[:400])]
    table.write_text("\n".join(rows))
    spec = ExperimentSpec.from_dict({**SWEEP, "dataset": "csv", "dataset_knobs": {"path": str(table)},
                                     "temperatures": [4], "baseline": False, "teacher_train": {"epochs": 3}})
    runs = expand(spec)
    load_data(runs[0].dataset)  # the driver (this process) has read the table, checked against its sha256 ...
    shutil.rmtree(table.parent)  # ... and then the file is gone from this machine too
    _, ids = queue.submit(executor.store, spec, runs)
    assert executor.wait_until_empty(timeout=60)
    assert [executor.store.get_run(i)["status"] for i in ids] == [DONE, DONE]


def test_onnx_and_outputs_teachers_travel_with_their_files(executor, tmp_path):
    """An ONNX teacher whose weights are external data beside it, and a file of outputs: each
    travels with its sha256 (the ONNX file with its data), and the run's result names the
    user's file, not the node's copy. Then the same inputs arrive where the originals are gone."""
    import numpy as np
    import onnx

    from distill_core.data.cache import load_data
    from distill_core.jobs import remote
    from distill_core.jobs.ray_executor import Flight
    from distill_core.measure.phases import PhaseRecorder
    from distill_core.run_config import RunConfig
    from distill_core.teachers import teacher_of
    from onnx_models import linear_onnx

    user = tmp_path / "user"
    user.mkdir()
    model = onnx.load(str(linear_onnx(user / "inline.onnx")))
    onnx.save(model, str(user / "teacher.onnx"), save_as_external_data=True, location="teacher.data", size_threshold=0)
    (user / "inline.onnx").unlink()
    n = load_data({"name": "digits"}).n_rows
    np.savez(user / "outputs.npz", logits=np.random.default_rng(0).normal(size=(n, 10)).astype(np.float32))
    store = executor.store
    small = {**SWEEP, "temperatures": [4], "baseline": False}
    _, onnx_ids = queue.submit(store, {**small, "teacher": {"onnx": str(user / "teacher.onnx")}})
    _, out_ids = queue.submit(store, {**small, "teacher": {"outputs": str(user / "outputs.npz")}})
    assert executor.wait_until_empty(timeout=60)
    runs = [store.get_run(i) for i in onnx_ids + out_ids]
    assert [r["status"] for r in runs] == [DONE] * 4, [r["error"] for r in runs]
    assert runs[0]["result"]["measure"]["onnx"]["path"] == str(user / "teacher.onnx")  # not the node's scratch copy
    assert not any("distill-node-" in json.dumps(r["result"]) for r in runs)  # nothing names the node's scratch home
    assert [runs[0]["result"]["teacher"]["kind"], runs[2]["result"]["teacher"]["kind"]] == ["onnx", "outputs"]

    for rid in (onnx_ids[0], out_ids[0]):  # what a node gets, with the user's folder gone from it
        run = store.get_run(rid)
        config = RunConfig.from_dict(run["config"])
        inputs = executor._inputs(Flight(run, config, 1, 0.0))
        hidden = tmp_path / "hidden"
        user.rename(hidden)
        try:
            node = tmp_path / f"node{rid}"
            copies = remote.arrive(inputs, node)
            with files.local_copies(copies):
                made = teacher_of(config).make(load_data(config.dataset), PhaseRecorder(), [], None, None)
            assert made.logits["test"].shape[1] == 10
            if config.source["kind"] == "onnx":
                assert {p.name for p in next(iter(copies.values())).parent.iterdir()} == {"teacher.onnx", "teacher.data"}
        finally:
            hidden.rename(user)


def test_progress_arrives_while_a_run_trains_and_cancel_stops_it_within_two_seconds(executor):
    store = executor.store
    _, ids = queue.submit(store, long_teacher(0))
    wait_for(lambda: any(e.get("phase") == TEACHER for e in store.progress(ids[0])), 60, "the teacher to train")
    first = len(store.progress(ids[0]))
    time.sleep(1.2)  # progress keeps arriving while it trains
    assert store.get_run(ids[0])["status"] == "running" and len(store.progress(ids[0])) > first
    asked = time.monotonic()
    assert queue.cancel(store, ids[0]) == "cancelling"
    wait_for(lambda: store.get_run(ids[0])["status"] == "cancelled", 3, "the run to be cancelled")
    assert time.monotonic() - asked < 2.0
    assert "cancelled by request" in store.get_run(ids[0])["error"]
    wait_for(lambda: store.get_run(ids[1])["status"] == "failed", 5, "the dependent to fail")


def test_local_pool_and_ray_give_the_same_runs_and_files(cluster, tmp_path, monkeypatch):
    """The done-when of issue 14: the same experiment, same seeds, on CPU: equal accuracies and
    the same files in the store (weights equal to the byte), measured as the dashboard does."""
    from distill_core.jobs.ray_executor import RayExecutor

    monkeypatch.setenv("DISTILL_MEASURE", "quick")
    spec = {**SWEEP, "temperatures": [4], "teacher_train": {"epochs": 5}}
    local = Store(tmp_path / "local")
    _, local_ids = queue.submit(local, spec)
    run_inline(local, threads=1)
    ray_ex = RayExecutor(tmp_path / "ray", address=cluster[0].address, log=None).start()
    try:
        _, ray_ids = queue.submit(ray_ex.store, spec)
        assert ray_ex.wait_until_empty(timeout=90)
    finally:
        ray_ex.shutdown()

    def snapshot(store, ids):
        out = {}
        for i in ids:
            r = store.get_run(i)
            assert r["status"] == DONE, r["error"]
            folder = Path(r["folder"])
            names = sorted(p.name for p in folder.iterdir())
            weights = hashlib.sha256((folder / paths.WEIGHTS).read_bytes()).hexdigest()
            out[r["hash"]] = (r["role"], r["result"]["metrics"]["accuracy"], names, weights)
        cached = sorted(p.name for p in (store.home / paths.TEACHERS).iterdir() if not p.name.startswith("."))
        return out, cached

    assert snapshot(ray_ex.store, ray_ids) == snapshot(local, local_ids)
    roles = [v[0] for v in snapshot(local, local_ids)[0].values()]
    assert roles.count(STUDENT) == 2 and "model.onnx" in snapshot(local, local_ids)[0][local.get_run(local_ids[1])["hash"]][2]


def test_the_drivers_death_leaves_runs_a_restart_marks_interrupted(cluster, tmp_path):
    """The driver as the dashboard starts it (a detached `worker --executor ray` process), killed."""
    import ray

    from distill_core.jobs import ensure_workers
    from distill_core.jobs.workers import live_pools

    home = tmp_path / "home"
    store = Store(home)
    _, ids = queue.submit(store, long_teacher(1))
    driver = ensure_workers(home, executor="ray", address=cluster[0].address)
    assert driver["started"]
    try:
        wait_for(lambda: store.get_run(ids[0])["node"], 60, "the run to start on a node")
        pool = live_pools(store)[0]
        assert pool["pid"] == driver["pid"] and pool["info"]["executor"] == "ray" and pool["info"]["nodes"] == 2
    finally:
        os.kill(driver["pid"], signal.SIGKILL)
        os.waitpid(driver["pid"], 0)
    run = store.get_run(ids[0])
    assert run["status"] == "running" and run["worker_pid"] == driver["pid"]
    assert recover_orphans(store) == [ids[0]]  # what the next pool or Ray driver does when it starts
    assert "interrupted" == store.get_run(ids[0])["status"]
    # Ray stops the tasks of a driver that died: the cluster's CPUs come free
    wait_for(lambda: ray.available_resources().get("CPU", 0) >= 2, 30, "the dead driver's task to stop")


def test_a_run_that_ignores_its_cancel_has_its_task_stopped(executor, monkeypatch):
    import types

    from distill_core.jobs import ray_executor

    store = executor.store
    _, ids = queue.submit(store, long_teacher(4))
    wait_for(lambda: any(e.get("phase") == TEACHER for e in store.progress(ids[0])), 60, "the teacher to train")

    class Deaf:  # a hub that never passes a stop request on: the run goes on as if stuck
        def __init__(self, hub):
            self.hub = hub
            self.stop = types.SimpleNamespace(remote=lambda *args: None)

        def __getattr__(self, name):
            return getattr(self.hub, name)

    monkeypatch.setattr(ray_executor, "CANCEL_GRACE", 0.5)
    executor.hub = Deaf(executor.hub)
    queue.cancel(store, ids[0])
    wait_for(lambda: store.get_run(ids[0])["status"] == "cancelled", 10, "the task to be stopped")
    assert store.get_run(ids[0])["error"] == "cancelled by request (its task was stopped)"
    executor.hub = executor.hub.hub


def test_without_retries_a_run_whose_node_died_fails_naming_it(cluster, tmp_path):
    import types

    import ray

    from distill_core.jobs.ray_executor import Flight, RayExecutor
    from distill_core.run_config import RunConfig

    ex = RayExecutor(tmp_path / "home", address=cluster[0].address, retries=0, log=None)  # not started
    ex.hub = types.SimpleNamespace(forget=types.SimpleNamespace(remote=lambda run_id: None))
    queue.submit(ex.store, long_teacher(5))
    run = queue.claim(ex.store, os.getpid())
    flight = Flight(run, RunConfig.from_dict(json.loads(run["config"])), 1, 0.0, node_id="f" * 56, node="10.0.0.9 (ffffffff)")
    ex._lost(flight, ray.exceptions.WorkerCrashedError())  # its node is not among the live ones
    got = ex.store.get_run(run["id"])
    assert got["status"] == "failed" and got["error"] == "node 10.0.0.9 (ffffffff) died"


def test_the_connection_check_shows_the_nodes_cpus_and_gpus(cluster):
    from distill_core.jobs.ray_executor import check_connection

    info = check_connection(cluster[0].address)  # from a process of its own, as the Settings page asks
    assert info["alive"] == 2 and info["cpus"] == 2 and info["gpus"] == 0
    assert {n["node"].split(" (")[1][:8] for n in info["nodes"]} == {cluster[0].head_node.node_id[:8],
                                                                    cluster[1].node_id[:8]}
    with pytest.raises(ExecutorError, match="address must be"):
        check_connection("http://nowhere")


def test_a_node_removed_mid_run_reruns_its_run_on_the_head(cluster, executor):
    """Last: the cluster has only its head afterwards."""
    c, second = cluster
    assert len(executor.warmed()) == 2
    store = executor.store
    ids = [queue.submit(store, long_teacher(seed, epochs=150))[1][0] for seed in (2, 3)]
    nodes = wait_for(lambda: all(store.get_run(i)["node"] for i in ids) and {i: store.get_run(i)["node"] for i in ids},
                     60, "both runs to start")
    assert len(set(nodes.values())) == 2
    head = c.head_node.node_id[:8]
    victim = next(i for i, n in nodes.items() if head not in n)
    c.remove_node(second, allow_graceful=False)
    wait_for(lambda: any(e["phase"] == "retry" for e in store.progress(victim)), 30, "the run to be retried")
    assert store.get_run(victim)["attempts"] == 2
    wait_for(lambda: store.get_run(victim)["status"] != "running", 90, "the retried run to finish", poll=0.2)
    run = store.get_run(victim)
    assert run["status"] == DONE and head in run["node"], run["error"]
    assert [e["phase"] for e in store.progress(victim)][:2] == ["retry", "start"]
    assert "died" in store.progress(victim)[0]["reason"]
    assert all(store.get_run(i)["status"] == DONE for i in ids)
