"""Experiment store and background jobs.

    from distill_core.jobs import Store, ensure_workers
    store = Store()                       # <DISTILL_HOME>/lab.sqlite
    ensure_workers()                      # a detached local worker pool, if none is alive
    exp_id, run_ids = store.submit({"dataset": "digits", "teacher": "mlp-medium", ...})
    store.list_runs(experiment=exp_id)    # status and latest progress per run
    store.results_frame()                 # every finished run, one row each, for the plots

Headless: `python -m distill_core.jobs.cli worker` (or LocalExecutor(home).serve()).
"""
from .executor import Executor, LocalExecutor, default_threads, default_workers
from .results import RESULT_COLUMNS
from .scheduler import ensure_workers
from .worker import run_inline
from .store import (CANCELLED, DONE, FAILED, INTERRUPTED, QUEUED, RUNNING, SCHEMA_VERSION, STATUSES, JobError,
                    Store)

__all__ = ["Store", "JobError", "Executor", "LocalExecutor", "ensure_workers", "run_inline", "default_workers", "default_threads",
           "RESULT_COLUMNS", "STATUSES", "QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "INTERRUPTED",
           "SCHEMA_VERSION"]
