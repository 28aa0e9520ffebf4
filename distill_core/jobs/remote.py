"""What runs on a Ray node: one run in a scratch home, fed only by what travelled with it.

The Ray executor (ray_executor.py, on the driver) sends each run as a task with its inputs:

    data       the loaded data set (a DataBundle), one object per data set of the sweep
    files      every file the run config names as {"path", "sha256"} (a teacher's weight file,
               ...), as bytes, checked against the sha256 on arrival
    teachers   the teacher's cache entry (weights, logits, meta) from the driver's home, so a
               teacher trained once serves every student on any node
    home       files of the home a run reads (the user's budgets.json)

`run_task` puts them in a temporary home on the node, runs `worker.attempt` (run_one with
cooperative cancel) there, and sends back the run folder's files and any teacher cache entry
the run made; nothing stays on the node. Progress and cancel requests go through the progress
hub, an actor beside the driver: events at most twice a second per run, a stop check four
times a second. Ray is imported inside the functions: this module imports without it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

import torch

from .. import paths
from ..constants import DONE, FAILED
from ..data.cache import provide
from ..errors import DataError, DistillError
from ..files import local_copies, read_tree, write_tree
from ..run_config import RunConfig
from ..teachers import TeacherCache
from .worker import STOP_POLL, EventWriter, attempt, warm_settings, warm_up_energy, warm_up_torch

# What a process of a node keeps between tasks: the data sets it was given, by their ObjectRef
# (receiving a data set again costs a copy out of the object store).
_data_seen: dict[str, object] = {}


def hub_class():
    """The progress hub's class. It is made inside a function so that Ray sends it by value:
    the actor starts without importing the lab (and torch), in a fraction of a second."""

    class ProgressHub:
        """Progress events from the nodes, drained by the driver; stop requests for the nodes."""

        def __init__(self):
            self.events: dict[int, list] = {}
            self.stops: dict[int, str] = {}

        def report(self, run_id: int, events: list) -> None:
            self.events.setdefault(run_id, []).extend(events)

        def drain(self) -> dict:
            out, self.events = self.events, {}
            return out

        def stop(self, run_id: int, reason: str) -> None:
            self.stops[run_id] = reason

        def forget(self, run_id: int) -> None:
            self.stops.pop(run_id, None)

        def stop_reason(self, run_id: int):
            return self.stops.get(run_id)

    return ProgressHub


class HubEvents(EventWriter):
    """on_progress callback on a node: events batched to the hub at most every half second."""

    def __init__(self, hub, run_id: int):
        super().__init__(None, run_id)
        self.hub = hub

    def flush(self) -> None:
        if self.buffer:
            self.hub.report.remote(self.run_id, self.buffer)
            self.buffer = []
        self.last = time.monotonic()


class HubStop:
    """should_stop callback on a node: asks the hub at most every STOP_POLL seconds whether the
    driver wants this run to stop; `reason` is "cancel" or "shutdown" once it does.

    It never waits for the answer: each check reads the reply to the previous question if it has
    come (`ray.wait` with no timeout) and asks again. Waiting for it (`ray.get`) would hold the
    training four times a second for as long as the hub's process takes to be scheduled beside
    the runs on busy cores."""

    def __init__(self, hub, run_id: int, interval: float = STOP_POLL):
        self.hub, self.run_id, self.interval = hub, run_id, interval
        self.last = 0.0
        self.reason: str | None = None
        self.asked = None  # the ObjectRef of the question not yet answered

    def __call__(self) -> bool:
        if self.reason:
            return True
        now = time.monotonic()
        if now - self.last >= self.interval:
            import ray

            self.last = now
            if self.asked is not None and ray.wait([self.asked], timeout=0)[0]:
                asked, self.asked = self.asked, None
                try:
                    self.reason = ray.get(asked)
                except ray.exceptions.RayActorError:  # a lost hub: no answer; go on and ask again
                    self.reason = None
            if self.asked is None and not self.reason:
                self.asked = self.hub.stop_reason.remote(self.run_id)
        return bool(self.reason)


def node_name() -> str:
    """This Ray node as the Runs page shows it: its IP address and the start of its node id."""
    import ray

    return f"{ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"


def warm_up(measure: dict | None = None) -> str:
    """A first task for each worker process: pay the imports, torch's lazy start-up and (in a
    background thread, where energy is measured) CodeCarbon's hardware probe now, not in the
    first run (as a local worker does when it starts). `measure`: the executor's settings."""
    warm_up_energy(warm_settings(measure))
    warm_up_torch()
    return node_name()


def arrive(inputs: dict, home: Path) -> dict[str, Path]:
    """Put a run's inputs in place on this node: the data set served from memory, each file
    checked against its sha256 and written under <home>/files/, the teachers into the home's
    cache, the home's own files. Returns sha256 -> local copy, for `files.local_copies`.
    DataError when a file arrived different from what the run config names."""
    import ray

    data = inputs.get("data")
    if data is not None:
        dataset, (ref,) = data
        key = ref.hex()
        if key not in _data_seen:
            _data_seen.clear()  # one data set kept per process: a sweep sends the same one again
            _data_seen[key] = ray.get(ref)
        provide(dataset, _data_seen[key])
    copies = {}
    for sha, (name, (ref,)) in inputs.get("files", {}).items():
        tree = ray.get(ref)  # the file by its name, and what must sit beside it (an ONNX file's external data)
        got = hashlib.sha256(tree[name]).hexdigest()
        if got != sha:
            raise DataError(f"{name}: arrived on this node with sha256 {got[:12]}..., the run names {sha[:12]}...; "
                            "submit it again")
        copies[sha] = write_tree(home / "files" / sha, tree) / name
    cache = TeacherCache(home)
    for key, (ref,) in inputs.get("teachers", {}).items():
        cache.add_files(key, ray.get(ref))
    write_tree(home, inputs.get("home", {}))
    return copies


def share_node_measures(home: Path) -> None:
    """Point a scratch home's shared-figures folder (measure/shared.py) at one folder of this
    node's, so the runs of one architecture that a node serves measure its latency once."""
    node = Path(tempfile.gettempdir()) / f"distill-shared-measures-{os.getuid()}"
    node.mkdir(mode=0o700, exist_ok=True)
    link = paths.shared_measures(home)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(node, target_is_directory=True)


def run_task(run: dict, inputs: dict, hub, threads: int, measure: dict | None) -> dict:
    """One attempt at a run on this node. `run`: {"id", "config" (dict), "attempt"}. Returns
    {"status", "error", "traceback", "node", "folder"} and, when done, "result", "files" (the
    run folder) and "teachers" (cache entries the run made, by key)."""
    torch.set_num_threads(max(1, threads))
    import ray

    node = node_name()
    events = HubEvents(hub, run["id"])
    events({"phase": "start", "worker_pid": os.getpid(), "attempt": run["attempt"], "node": node,
            "node_id": ray.get_runtime_context().get_node_id()})
    config = RunConfig.from_dict(run["config"])
    with tempfile.TemporaryDirectory(prefix="distill-node-") as scratch:
        home = Path(scratch)
        share_node_measures(home)
        folder = paths.run_folder(home, config.hash)
        out = {"node": node, "folder": str(folder), "home": str(home)}
        try:
            copies = arrive(inputs, home)
        except DistillError as exc:
            events.flush()
            return {**out, "status": FAILED, "error": str(exc), "traceback": None}
        brought = {p.name for p in paths.teachers_root(home).iterdir()}
        with local_copies(copies):
            outcome = attempt(config.with_threads(threads), home, events, HubStop(hub, run["id"]), measure,
                              folder=folder, server="the Ray executor")
        events.flush()
        out.update(status=outcome.status, error=outcome.error, traceback=outcome.traceback)
        if outcome.status == DONE:
            cache = TeacherCache(home)
            made = {p.name for p in paths.teachers_root(home).iterdir() if not p.name.startswith(".")} - brought
            out.update(result=outcome.result, files=read_tree(folder), copies={sha: str(p) for sha, p in copies.items()},
                       teachers={key: cache.files(key) for key in made if cache.has(key)})
        return out
