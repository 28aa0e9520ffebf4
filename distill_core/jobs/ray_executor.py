"""The Ray executor: the same queue, served by a Ray cluster (docs/cluster.md).

`RayExecutor` is a driver on this machine. It claims ready runs from the store as `queue.claim`
gives them (so a student starts after its teacher, and a failed teacher fails its students;
a teacher on Ray serves its students when its task is done, as its cache entry comes back with it),
sends each to the cluster as a Ray task asking for the CPUs (and GPU) the run needs, and
records the end with `worker.record`, as the local pool does. Nothing on a node is assumed: the
run's config, its data set, the files it names and its teacher's cache entry travel through
Ray's object store (each put once and shared by every run of a sweep); the node runs it in a
scratch home (remote.py) and sends the run folder back, which lands in this home's runs/ (and
a teacher's cache entry in its teachers/). The code itself travels as a Ray runtime
environment (`py_modules`), so nodes need the lab's requirements, not a checkout.

Progress comes through a small actor beside the driver (remote.ProgressHub), drained into the
store every half second. A cancel asks the run to stop (cooperatively, within a quarter of a
second) and after CANCEL_GRACE seconds stops its task with `ray.cancel(force=True)`. A node or
worker process that dies mid-run: the run is tried again (`retries` times, on another node when
there is one) or failed with the reason ("node ... died"). The driver owns its runs as a local
pool does (its pid on this host), so after its own death a restart marks them interrupted.

Ray is optional: it is imported when an executor starts, and without it `require_ray` says how
to install it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .. import onnx_files, paths
from ..constants import CANCELLED, DONE, FAILED, INTERRUPTED, STUDENT
from ..data.cache import load_data
from ..errors import DistillError
from ..files import write_json, write_tree
from ..measure.settings import measure_settings
from ..run_config import RunConfig
from ..teachers import TeacherCache
from . import queue
from .executor import CANCEL_GRACE, HEARTBEAT, Executor
from .host import HOST
from .remote import hub_class, run_task, warm_up
from .worker import PROGRESS_INTERVAL, Outcome, record
from .workers import heartbeat, recover_orphans, register, unregister

INSTALL_HINT = "pip install -r requirements-ray.txt (or: pip install 'ray>=2.9')"
ADDRESS_HELP = ("empty: start a local Ray instance on this machine; auto: the cluster this machine joined with "
                "`ray start`; ray://host:10001: a cluster through Ray Client; host:6379: a cluster's head node")


class ExecutorError(DistillError):
    """The Ray executor cannot serve: Ray is missing, the cluster cannot be reached, ..."""


def ray_installed() -> bool:
    """Whether Ray can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        return False


def require_ray():
    """The ray module, or ExecutorError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"the Ray executor needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def check_address(address: str) -> str:
    """A cluster address as `ray.init` takes it (stripped); ValueError saying which forms work."""
    a = (address or "").strip()
    if a in ("", "auto"):
        return a
    host, _, port = a.removeprefix("ray://").rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536 and " " not in host and "/" not in host:
        return a
    raise ValueError(f"must be empty, auto, ray://host:port or host:port ({ADDRESS_HELP}); got {address!r}")


def code_env() -> dict:
    """The runtime environment that sends this lab's code to every node."""
    return {"py_modules": [str(Path(__file__).resolve().parents[1])], "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str = "", num_cpus: int | None = None, ship_code: bool = True, temp_dir: str | None = None) -> bool:
    """Connect this process to a Ray cluster (an empty address starts a local instance with
    `num_cpus` CPUs, no dashboard). Returns whether this call connected (False: it already was,
    and the caller does not own the connection). ExecutorError when it cannot."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    address = check_address(address)
    if address not in ("", "auto"):  # fail in seconds, not after Ray's own minute of retries
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise ExecutorError(f"cannot connect to the Ray cluster at {address}: nothing answers at {host}:{port} "
                                f"({exc.strerror or exc}); is its head node started (ray start --head)?") from None
    kwargs: dict = {"log_to_driver": False, "logging_level": "warning"}
    if ship_code:
        kwargs["runtime_env"] = code_env()
    if not address:
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
        if temp_dir:
            kwargs["_temp_dir"] = temp_dir
    try:
        ray.init(address=address or None, **kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray says what went wrong
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = " (a ray:// address needs Ray Client: pip install 'ray[client]')" if address.startswith("ray://") else ""
        raise ExecutorError(f"cannot connect to {where}: {first}{hint}") from None
    return True


def node_label(node: dict) -> str:
    """A node of `ray.nodes()` named as remote.node_name names it on the node."""
    return f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})"


def cluster_summary() -> dict:
    """The connected cluster: its nodes (alive or not) with their CPUs and GPUs, and the totals
    over the live ones."""
    ray = require_ray()
    nodes = [{"node": node_label(n), "alive": bool(n["Alive"]), "cpus": float(n["Resources"].get("CPU", 0)),
              "gpus": float(n["Resources"].get("GPU", 0))} for n in ray.nodes()]
    live = [n for n in nodes if n["alive"]]
    return {"ray": ray.__version__, "nodes": nodes, "alive": len(live), "cpus": sum(n["cpus"] for n in live),
            "gpus": sum(n["gpus"] for n in live)}


def check_connection(address: str, num_cpus: int | None = None, timeout: float = 120.0) -> dict:
    """`cluster_summary` of the cluster at `address`, asked from a separate process (a page's
    process must not become a Ray driver; an empty address starts a local instance there and
    stops it). ExecutorError saying what went wrong."""
    if not ray_installed():
        require_ray()
    try:
        address = check_address(address)
    except ValueError as exc:
        raise ExecutorError(f"address {exc}") from None
    cmd = [sys.executable, "-m", "distill_core.jobs.cli", "cluster", "--json", "--address", address]
    if num_cpus:
        cmd += ["--workers", str(num_cpus)]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ExecutorError(f"no answer from the Ray cluster at {address or 'a local instance'} within {timeout:.0f} s") from None
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
        raise ExecutorError(why)
    return json.loads(lines[-1])


# -- the executor -------------------------------------------------------------------------------------


@dataclass
class Flight:
    """A run this driver sent to the cluster and has not recorded yet."""

    run: dict  # the row queue.claim gave
    config: RunConfig
    cpus: int
    gpus: float
    tries: int = 1  # attempts on Ray for this claim
    node_id: str | None = None  # where it runs, once its start event arrived
    node: str | None = None
    cancel_sent: float | None = None  # when it was asked to stop
    killed: bool = False  # ray.cancel(force=True) was used
    avoid: set = field(default_factory=set)  # nodes it died on


def named_files(config: dict) -> list[tuple[str, str]]:
    """(path, sha256) of every file a run config names as {"path", "sha256"} (a teacher's weight
    file, ...), its teachers' included; data sets are left out: they travel loaded."""
    out = []

    def walk(obj, key=None):
        if isinstance(obj, dict):
            if key != "dataset" and isinstance(obj.get("path"), str) and isinstance(obj.get("sha256"), str):
                out.append((obj["path"], obj["sha256"]))
            for k, v in obj.items():
                if key != "dataset":
                    walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)

    walk(config)
    return list(dict.fromkeys(out))


def _onnx_sources(obj) -> set[str]:
    """The paths of the ONNX files a run config's teachers come from ({"kind": "onnx", "path"})."""
    if isinstance(obj, dict):
        own = {obj["path"]} if obj.get("kind") == "onnx" and isinstance(obj.get("path"), str) else set()
        return own.union(*(_onnx_sources(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_onnx_sources(v) for v in obj))
    return set()


def relocate(obj, old: str, new: str):
    """`obj` with every string that starts with the folder `old` starting with `new` instead."""
    if isinstance(obj, dict):
        return {k: relocate(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relocate(v, old, new) for v in obj]
    if isinstance(obj, str) and (obj == old or obj.startswith(old + os.sep) or obj.startswith(old + "/")):
        return new + obj[len(old):]
    return obj


class RayExecutor(Executor):
    """Serve the queue of `home` with the Ray cluster at `address` (see `check_address`; empty:
    a local instance with `workers` CPUs). Each run asks for `threads` CPUs (its own threads
    setting first; default 1) and `gpus` GPUs (at least 1 when its device is cuda); a run whose
    node or worker process dies is tried `retries` more times before it fails. `measure`:
    measurement settings for every run, under a run config's own (resolved here, with this
    machine's $DISTILL_MEASURE and $DISTILL_COUNTRY, so every node measures alike)."""

    name = "ray"

    def __init__(self, home: str | Path | None = None, address: str = "", workers: int | None = None,
                 threads: int | None = None, retries: int = 1, gpus: float = 0.0, poll: float = 0.05,
                 quiet: bool = False, log=print, measure: dict | None = None, temp_dir: str | None = None):
        super().__init__(home, log)
        self.ray = require_ray()
        try:
            self.address = check_address(address)
        except ValueError as exc:
            raise ExecutorError(f"address {exc}") from None
        self.workers, self.threads = workers, max(1, threads or 1)
        self.retries, self.gpus, self.poll, self.quiet = int(retries), float(gpus), poll, quiet
        self.measure = dict(measure or {})
        self.temp_dir = temp_dir
        self.inflight: dict = {}  # ObjectRef -> Flight
        self.capacity = 0
        self._refs: dict[str, object] = {}  # inputs already in the object store, by what they are
        self._owns_ray = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.hub = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> "RayExecutor":
        ray = self.ray
        self.defaults = measure_settings(self.measure)  # a bad setting fails here, before anything runs
        self._owns_ray = connect(self.address, self.workers, temp_dir=self.temp_dir)
        self.hub = self._make_hub()
        self._task = ray.remote(max_retries=0)(run_task)
        info = self.refresh()
        register(self.store, self.pid, "pool", None, {"executor": "ray", "address": self.address, "workers": self.workers,
                                                      "threads": self.threads, "retries": self.retries, "gpus": self.gpus,
                                                      **self.measure, **info})
        marked = recover_orphans(self.store, keep={self.pid})
        if marked and self.log:
            self.log(f"[ray {self.pid}] marked {len(marked)} run(s) left running by a dead process as interrupted: "
                     + ", ".join(f"#{i}" for i in marked))
        # one warm-up per CPU, so that the first runs do not pay the imports (as local workers do)
        self._warm = [ray.remote(max_retries=0)(warm_up).options(num_cpus=1).remote(self.measure)
                      for _ in range(int(self.capacity))]
        self._thread = threading.Thread(target=self._loop, name="distill-ray-driver", daemon=True)
        self._thread.start()
        return self

    def _make_hub(self):
        """The progress hub, on this driver's own node (it goes when the driver goes)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = self.ray.get_runtime_context().get_node_id()
        return self.ray.remote(num_cpus=0)(hub_class()).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()

    def warmed(self, timeout: float = 120.0) -> list[str]:
        """Wait for the warm-up tasks of `start` (one per CPU); the nodes they ran on."""
        done, _ = self.ray.wait(self._warm, num_returns=len(self._warm), timeout=timeout)
        return sorted({self.ray.get(ref) for ref in done})

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def busy(self) -> bool:
        return bool(self.inflight)

    def shutdown(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Stop claiming; runs in flight are asked to stop and come back interrupted (after
        `timeout`, their tasks are cancelled by force). Disconnects when it connected."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.hub is not None:
            for flight in self.inflight.values():
                self.hub.stop.remote(flight.run["id"], "shutdown")
            deadline = time.monotonic() + (timeout if wait else 0.0)
            while self.inflight and time.monotonic() < deadline:
                self._collect(0.2)
            for ref in list(self.inflight):
                self.ray.cancel(ref, force=True)
            for ref, flight in list(self.inflight.items()):
                self.inflight.pop(ref)
                queue.end(self.store, flight.run["id"], INTERRUPTED, "interrupted: the Ray executor shut down during "
                          "the run; retry to run it again", only_if_running=True)
            try:
                self.ray.kill(self.hub)
            except Exception:  # a hub already gone with its node
                pass
            self.hub = None
        unregister(self.store, self.pid)
        self._refs.clear()
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False

    # -- the driver loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        last = {"beat": 0.0, "drain": 0.0, "refresh": 0.0, "recover": 0.0}
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if now - last["beat"] >= HEARTBEAT:
                    heartbeat(self.store, self.pid)
                    last["beat"] = now
                if now - last["refresh"] >= 2.0:
                    self.refresh()
                    last["refresh"] = now
                self._claim()
                if now - last["drain"] >= PROGRESS_INTERVAL:
                    self._drain()
                    self._enforce_cancels()
                    last["drain"] = now
                if now - last["recover"] >= 5.0:
                    recover_orphans(self.store, keep={self.pid})
                    last["recover"] = now
                self._collect(self.poll)
            except Exception as exc:  # the driver must survive a busy store or a transient Ray error
                if self.log:
                    self.log(f"[ray {self.pid}] driver: {type(exc).__name__}: {exc}")
                self._stopping.wait(0.5)

    def refresh(self) -> dict:
        """The cluster now: its live nodes, and how many runs it takes at once (CPUs / threads)."""
        self.nodes = {n["NodeID"]: n for n in self.ray.nodes() if n["Alive"]}
        cpus = sum(n["Resources"].get("CPU", 0) for n in self.nodes.values())
        self.capacity = int(cpus // self.threads)
        return {"nodes": len(self.nodes), "cpus": cpus, "gpus": sum(n["Resources"].get("GPU", 0) for n in self.nodes.values())}

    def _claim(self) -> None:
        while len(self.inflight) < self.capacity and not self._stopping.is_set():
            run = queue.claim(self.store, self.pid, HOST, node=None)
            if run is None:
                return
            try:
                config = RunConfig.from_dict(json.loads(run["config"]))
                cpus = int(config.train.get("threads") or self.threads)
                gpus = max(self.gpus, 1.0 if config.train.get("device") == "cuda" else 0.0)
                flight = Flight(run, config, cpus, gpus)
                self._submit(flight)
            except DistillError as exc:
                queue.end(self.store, run["id"], FAILED, str(exc))
            except Exception as exc:
                queue.end(self.store, run["id"], FAILED, f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def _submit(self, flight: Flight) -> None:
        """Send one attempt at a run to the cluster (ExecutorError when no node could take it)."""
        fits = [nid for nid, n in self.nodes.items()
                if n["Resources"].get("CPU", 0) >= flight.cpus and n["Resources"].get("GPU", 0) >= flight.gpus]
        if not fits:
            raise ExecutorError(f"no node of the Ray cluster offers {flight.cpus} CPU(s)"
                                + (f" and {flight.gpus:g} GPU(s)" if flight.gpus else "")
                                + f" (its nodes: {self._describe_nodes()})")
        options: dict = {"num_cpus": flight.cpus, "num_gpus": flight.gpus}
        elsewhere = [nid for nid in fits if nid not in flight.avoid]
        if flight.avoid and elsewhere:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(elsewhere[0], soft=True)
        run = {"id": flight.run["id"], "config": flight.config.to_dict(), "attempt": flight.run["attempts"] + flight.tries}
        ref = self._task.options(**options).remote(run, self._inputs(flight), self.hub, flight.cpus, self.defaults)
        self.inflight[ref] = flight

    def _describe_nodes(self) -> str:
        return ", ".join(f"{node_label(n)}: {n['Resources'].get('CPU', 0):g} CPU, {n['Resources'].get('GPU', 0):g} GPU"
                         for n in self.nodes.values()) or "none alive"

    # -- what travels with a run ------------------------------------------------------------------------

    def _put(self, key: str, make):
        """An object in the object store, put once per key (the newest 32 are kept)."""
        if key not in self._refs:
            self._refs[key] = self.ray.put(make())
            while len(self._refs) > 32:
                self._refs.pop(next(iter(self._refs)))
        return self._refs[key]

    def _inputs(self, flight: Flight) -> dict:
        """The run's inputs for remote.arrive (ObjectRefs wrapped in lists, so Ray hands them to
        the task as references and the node takes each only once)."""
        config, home = flight.config, self.store.home
        cache = TeacherCache(home)
        if flight.run.get("force") and config.role != STUDENT:  # a forced teacher trains again
            cache.drop(config.hash)
        dataset = config.dataset
        out: dict = {"data": (dataset, [self._put("data:" + json.dumps(dataset, sort_keys=True), lambda: load_data(dataset))])}
        files = {}
        onnx_sources = _onnx_sources(config.to_dict())
        for path, sha in named_files(config.to_dict()):
            def read(path=path, sha=sha):
                blob = Path(path).read_bytes()
                if hashlib.sha256(blob).hexdigest() != sha:
                    raise ExecutorError(f"{path}: the file changed after the experiment was submitted; submit it again")
                tree = {Path(path).name: blob}
                if path in onnx_sources:  # an ONNX teacher's external data travels beside it
                    try:
                        tree.update({loc: p.read_bytes() for loc, p in onnx_files.external_data(path).items()})
                    except DistillError as exc:
                        raise ExecutorError(str(exc)) from None
                return tree
            try:
                files[sha] = (Path(path).name, [self._put("file:" + sha, read)])
            except OSError as exc:
                raise ExecutorError(f"{path}: cannot be read to send it to the cluster ({exc.strerror or exc})") from None
        out["files"] = files
        chain, c = [], (config if config.role != STUDENT else config.teacher)
        while c is not None:
            chain.append(c.hash)
            c = c.teacher
        for key in chain:  # the nearest teacher this home has cached: `obtain` on the node starts there
            if cache.has(key):
                stamp = (cache.folder(key) / paths.META).stat().st_mtime_ns
                out["teachers"] = {key: [self._put(f"teacher:{key}:{stamp}", lambda key=key: cache.files(key))]}
                break
        budgets = home / paths.BUDGETS
        out["home"] = {paths.BUDGETS: budgets.read_bytes()} if budgets.is_file() else {}
        return out

    # -- what comes back ------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Progress events from the hub into the store (one write per run), and the node of runs
        that started."""
        by_id = {f.run["id"]: f for f in self.inflight.values()}
        try:
            drained = self.ray.get(self.hub.drain.remote(), timeout=30)
        except self.ray.exceptions.RayActorError:  # the hub died: new runs get a new one (these report no more)
            if self.log:
                self.log(f"[ray {self.pid}] the progress hub died; starting another")
            self.hub = self._make_hub()
            return
        for run_id, events in drained.items():
            flight = by_id.get(run_id)
            if flight is None:  # a late event of a run already recorded
                continue
            for e in events:
                if e.get("phase") == "start" and e.get("node"):
                    flight.node, flight.node_id = e["node"], e.get("node_id")
                    self.store.set_node(run_id, e["node"])
            self.store.add_events(run_id, events)

    def _enforce_cancels(self) -> None:
        """Ask runs whose cancel was requested to stop; after CANCEL_GRACE seconds, stop their task."""
        if not self.inflight:
            return
        by_id = {f.run["id"]: (ref, f) for ref, f in self.inflight.items()}
        marks = ",".join("?" * len(by_id))
        asked = {r[0] for r in self.store.read(lambda con: con.execute(
            f"SELECT id FROM runs WHERE id IN ({marks}) AND cancel_requested IS NOT NULL", list(by_id)).fetchall())}
        gone = set(by_id) - {r[0] for r in self.store.read(lambda con: con.execute(
            f"SELECT id FROM runs WHERE id IN ({marks})", list(by_id)).fetchall())}
        now = time.monotonic()
        for run_id in asked | gone:
            ref, flight = by_id[run_id]
            if flight.cancel_sent is None:
                self.hub.stop.remote(run_id, "cancel")
                flight.cancel_sent = now
            elif now - flight.cancel_sent > CANCEL_GRACE and not flight.killed:
                self.ray.cancel(ref, force=True)
                flight.killed = True

    def _collect(self, timeout: float) -> None:
        """Record the runs whose tasks ended (waiting up to `timeout` for one)."""
        if not self.inflight:
            self._stopping.wait(timeout)
            return
        # the first task to end returns at once (asking for all of them would wait out the timeout
        # whenever one is still running), then every other that has ended too
        ready, rest = self.ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        if not ready:
            return
        if rest:
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        self._drain()  # the last events of a run reach the store before its end does
        exc_types = self.ray.exceptions
        for ref in ready:
            flight = self.inflight.pop(ref)
            try:
                out = self.ray.get(ref)
            except exc_types.TaskCancelledError:
                self._end(flight, CANCELLED if flight.cancel_sent else INTERRUPTED, "its task was stopped")
            except exc_types.RayTaskError as exc:  # an error outside the run itself (the node lacks a package...)
                cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
                self._end(flight, FAILED, f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1]}", str(exc))
            except exc_types.RayError as exc:  # the node or the worker process died
                self._lost(flight, exc)
            else:
                self._land(flight, out)

    def _end(self, flight: Flight, status: str, why: str, tb: str | None = None) -> None:
        run_id = flight.run["id"]
        self.hub.forget.remote(run_id)
        if status == CANCELLED:
            why = f"cancelled by request ({why})"
        elif status == INTERRUPTED:
            why = f"interrupted: the Ray executor shut down during the run ({why}); retry to run it again"
        queue.end(self.store, run_id, status, why, tb, only_if_running=True)
        self._say(flight, status)

    def _lost(self, flight: Flight, exc) -> None:
        """A task that died with its node or worker process: try it again or fail it, naming it."""
        if flight.cancel_sent is not None or self._stopping.is_set():
            self._end(flight, CANCELLED if flight.cancel_sent is not None else INTERRUPTED, "its task was stopped")
            return
        self.refresh()
        dead = isinstance(exc, self.ray.exceptions.NodeDiedError) or (flight.node_id is not None
                                                                      and flight.node_id not in self.nodes)
        where = flight.node or "its node"
        reason = f"node {where} died" if dead else f"its worker process on node {where} died ({type(exc).__name__})"
        if flight.tries > self.retries:
            tried = f" (tried {flight.tries} times)" if flight.tries > 1 else ""
            self._end(flight, FAILED, reason + tried)
            return
        if flight.node_id:
            flight.avoid.add(flight.node_id)
        queue.reattempt(self.store, flight.run["id"], f"{reason}; running it again")
        flight.tries += 1
        flight.node = flight.node_id = flight.cancel_sent = None
        try:
            self._submit(flight)
        except DistillError as err:
            self._end(flight, FAILED, f"{reason}; no node left to run it again ({err})")
            return
        if self.log:
            self.log(f"[ray {self.pid}] run #{flight.run['id']}: {reason}; running it again")

    def _land(self, flight: Flight, out: dict) -> None:
        """A finished task: its files into this home, then its end into the store."""
        run_id, home = flight.run["id"], self.store.home
        self.hub.forget.remote(run_id)
        if out.get("node") and out["node"] != flight.node:
            self.store.set_node(run_id, out["node"])
        status = out["status"]
        if status == CANCELLED and flight.cancel_sent is None:  # a cancel the hub kept from an older claim
            status = INTERRUPTED
        if status == DONE:
            folder = paths.run_folder(home, flight.config.hash)
            result = relocate(out["result"], out["folder"], str(folder))
            named = {sha: path for path, sha in named_files(flight.config.to_dict())}
            for sha, copy in out.get("copies", {}).items():  # the node's copy of a named file: the file here
                result = relocate(result, copy, named.get(sha, copy))
            if out.get("home"):  # anything else of the node's scratch home (a teacher's cache entry) is here too
                result = relocate(result, out["home"], str(home))
            cache = TeacherCache(home)
            for key, files in out.get("teachers", {}).items():  # before the run is done: its students need it
                cache.add_files(key, files)
            write_tree(folder, out["files"])
            write_json(folder / paths.RESULT, result)
            record(self.store, run_id, Outcome(DONE, result), self.log)
        else:
            record(self.store, run_id, Outcome(status, error=out.get("error"), traceback=out.get("traceback")))
        self._say(flight, status, out.get("result"))

    def _say(self, flight: Flight, status: str, result: dict | None = None) -> None:
        if self.log and not self.quiet:
            extra = f", accuracy {result['metrics']['accuracy']:.4f}" if result else ""
            self.log(f"[ray {self.pid}] run #{flight.run['id']} {flight.run['label']} on {flight.node or 'the cluster'}: "
                     f"{status}{extra}")
