"""Experiment store and background jobs.

    from distill_core.jobs import Store, ensure_workers, queue
    store = Store()                                   # <DISTILL_HOME>/lab.sqlite
    ensure_workers()                                  # a detached local worker pool, if none is alive
    exp_id, run_ids = queue.submit(store, spec, runs) # runs: config.expand(spec), shared with a preview
    store.list_runs(experiment=exp_id)                # status and latest progress per run
    store.results_frame()                             # every finished run, one row each, for the plots

Modules: `store` (the database), `queue` (submit, claim, dependencies, cancel / retry / delete),
`workers` (the worker registry and heartbeats), `executor` (the local pool and the interface
other executors implement), `worker` (one worker process), `ray_executor` and `remote` (the
queue served by a Ray cluster, docs/cluster.md), `results` (the results frame).
Headless: `python -m distill_core.jobs.cli worker [--executor ray]` (or LocalExecutor(home).serve(),
RayExecutor(home, address).serve()).
"""
from . import queue
from .executor import Executor, LocalExecutor, default_threads, default_workers, ensure_workers
from .ray_executor import RayExecutor
from .results import RESULT_COLUMNS
from .store import SCHEMA_VERSION, JobError, Store
from .worker import run_inline

__all__ = ["Store", "JobError", "queue", "Executor", "LocalExecutor", "RayExecutor", "ensure_workers", "run_inline", "default_workers",
           "default_threads", "RESULT_COLUMNS", "SCHEMA_VERSION"]
