"""This browser session's home folder, its store and settings, cached reads, and submitting.

Reads are cached until the store changes (its change counter keys the caches), so a page that
redraws every few seconds costs a counter read when nothing happened.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from distill_core import paths, saved_runs, settings as lab_settings
from distill_core.config import ExperimentSpec, check_teacher_file, expand
from distill_core.data.cache import name_and_knobs
from distill_core.errors import DistillError
from distill_core.estimates import model_summary
from distill_core.jobs import Store, ensure_workers, queue
from distill_core.jobs.workers import live_pools
from distill_core.previews import data_preview
from distill_core.run_config import RunConfig


def home() -> Path:
    """The home folder of this browser session: chosen on Settings, else DISTILL_HOME."""
    return paths.home_dir(st.session_state.get("home_override") or None)


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


def store() -> Store:
    """The store of the current home folder (one object per folder, shared by sessions)."""
    return _store(str(home()))


def store_version(s: Store | None = None) -> int:
    """The store's change counter: it grows on every write, so it keys page caches. Asking for
    the changes after a cursor far in the future returns only the current cursor (cheap)."""
    s = s or store()
    return int(s.changes_since(2**62)["cursor"])


@st.cache_data(show_spinner=False, max_entries=4)
def _results_frame(path: str, version: int) -> pd.DataFrame:
    return _store(path).results_frame()


def results_frame() -> pd.DataFrame:
    """All finished runs, one row each (cached until the store changes)."""
    s = store()
    return _results_frame(str(s.home), store_version(s))


@st.cache_data(show_spinner=False, max_entries=64)
def _get_run(path: str, run_id: int, version: int) -> dict | None:
    return _store(path).get_run(run_id)


def get_run(run_id: int) -> dict | None:
    s = store()
    return _get_run(str(s.home), int(run_id), store_version(s))


def run_config(run: dict) -> RunConfig:
    """The typed config of a run the store returned."""
    return RunConfig.from_dict(run["config"])


def pool_alive() -> bool:
    try:
        return bool(live_pools(store()))
    except Exception:  # a store being created or migrated: say no pool rather than fail the page
        return False


# -- settings ------------------------------------------------------------------------------------------


def settings() -> dict:
    """This home's settings (a broken settings.json gives the defaults, with a warning)."""
    values, problem = lab_settings.load_settings(home())
    if problem:
        st.warning(problem)
    return values


def start_workers(values: dict | None = None) -> dict | None:
    """Make sure a worker pool serves this home (when autostart is on), started with these
    settings as its arguments. Returns what `ensure_workers` said, or None when autostart is off."""
    values = values or settings()
    if not values["autostart"]:
        return None
    return ensure_workers(str(home()), **lab_settings.pool_arguments(values))


# -- experiments ------------------------------------------------------------------------------------------


def with_settings(spec: ExperimentSpec, values: dict | None = None) -> ExperimentSpec:
    """The experiment as this session launches it: with the device and threads of Settings."""
    return lab_settings.with_run_settings(spec, values or settings())


@st.cache_data(show_spinner="Checking the experiment…", max_entries=32)
def _expand(spec_json: str) -> dict:
    try:
        return {"runs": expand(ExperimentSpec.from_dict(json.loads(spec_json)))}
    except DistillError as exc:
        return {"error": str(exc)}


def expand_cached(spec: ExperimentSpec) -> list[RunConfig]:
    """config.expand, once per experiment (it loads the data set): the preview and the launch
    share its runs. Raises its ConfigError."""
    got = _expand(json.dumps(spec.to_dict(), sort_keys=True, default=str))
    if "error" in got:
        raise DistillError(got["error"])
    return got["runs"]


def submit(spec: ExperimentSpec, runs: list[RunConfig] | None = None, force: bool = False) -> tuple[int, list[int]]:
    """Queue an experiment (made `with_settings`) and start workers if asked to. `runs`: what
    `expand_cached(spec)` gave the page's preview. Raises a ConfigError (a message for the page)
    before anything is queued."""
    values = settings()
    if runs is None:
        spec = with_settings(spec, values)
        runs = expand_cached(spec)
    exp_id, run_ids = queue.submit(store(), spec, runs, force=force)
    start_workers(values)
    return exp_id, run_ids


# -- cached library reads ------------------------------------------------------------------------------------


@st.cache_data(show_spinner="Loading the data set…", max_entries=16)
def cached_preview(name: str, knobs_json: str, per_class: int = 2) -> dict:
    """previews.data_preview, cached per data set and knobs (raises its DistillError)."""
    return data_preview(name, json.loads(knobs_json), per_class=per_class)


def cached_data_info(dataset: dict) -> dict:
    """Shape, classes and split sizes of a run config's data set."""
    name, knobs = name_and_knobs(dataset)
    return cached_preview(name, json.dumps(knobs, sort_keys=True), 0)


@st.cache_data(show_spinner="Checking the teacher's file…", max_entries=32)
def cached_teacher_file(teacher_json: str, dataset: str, knobs_json: str, stamp: str) -> dict:
    """config.check_teacher_file, cached per file (`stamp`: its modification time and size) and
    data set: {"note": what it was found to be} or {"error": why it does not fit}."""
    try:
        return {"note": check_teacher_file(json.loads(teacher_json), dataset, json.loads(knobs_json))}
    except DistillError as exc:
        return {"error": str(exc)}


@st.cache_data(show_spinner=False, max_entries=256)
def cached_model_summary(spec_json: str, input_shape: tuple, num_classes: int) -> dict:
    """estimates.model_summary, cached per spec and input."""
    return model_summary(json.loads(spec_json), tuple(input_shape), num_classes)


@st.cache_data(show_spinner="Running the models on a few samples…", max_entries=32)
def _sample_logits(path: str, run_hash: str, _config: RunConfig, n: int, seed: int) -> dict:
    return saved_runs.sample_logits(_config, path, n=n, seed=seed)


def cached_sample_logits(config: RunConfig, n: int, seed: int) -> dict:
    """Logits of a run's saved model and of its teacher on n test samples (inference only)."""
    return _sample_logits(str(home()), config.hash, config, n, seed)
