"""The Learn page's background jobs and cached reads: it submits small experiments (a toy
playground, the omitted-class experiment, a quick teacher, a paper preset), polls the store
until they are done and reads what they saved, by inference only."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from distill_core import saved_runs
from distill_core.config import ExperimentSpec
from distill_core.constants import DONE, RETRYABLE, RUNNING, SCRATCH, STUDENT, TEACHER
from distill_core.errors import DistillError
from distill_core.labels import model_label
from distill_core.progress import progress_fraction, progress_text
from distill_core.run_config import RunConfig

from . import state


@st.cache_data(show_spinner="Loading the teacher's outputs…", max_entries=8)
def teacher_outputs(home: str, teacher_hash: str, _config: RunConfig) -> dict | None:
    """A cached teacher's test logits with the test inputs and labels (no model is run)."""
    return saved_runs.teacher_test_outputs(home, teacher_hash, _config)


@st.cache_data(show_spinner="Running the saved model on the test set…", max_entries=32)
def run_logits(home: str, run_hash: str, _config: RunConfig, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    return saved_runs.test_logits(_config, saved_runs.run_weights(home, _config), limit)


@st.cache_data(show_spinner="Drawing the decision boundary…", max_entries=16)
def surface(home: str, run_hash: str, _config: RunConfig, steps: int) -> dict:
    return saved_runs.decision_surface(_config, saved_runs.run_weights(home, _config), steps)


def experiments_named(name: str) -> list[dict]:
    return [e for e in state.store().experiments() if e["name"] == name]


def experiment_runs(exp_id: int) -> list[dict]:
    return state.store().list_runs(experiment=exp_id)


def launch(spec: ExperimentSpec, state_key: str) -> None:
    """Queue an experiment in the background (its id goes to session state), or say why not."""
    try:
        exp_id, run_ids = state.submit(spec)
    except DistillError as exc:
        st.error(str(exc), icon="⚠️")
        return
    st.session_state[state_key] = exp_id
    st.toast(f"Queued experiment #{exp_id} ({len(run_ids)} runs)")


def wait_for(exp_id: int, what: str) -> bool:
    """True when every run of the experiment is done. While some are queued or running, shows
    their progress and refreshes itself (polling the store, not training)."""
    runs = experiment_runs(exp_id)
    if not runs:
        st.warning(f"{what} has no runs left (deleted?).")
        return False
    failed = [r for r in runs if r["status"] in RETRYABLE]
    if failed:
        r = failed[0]
        st.error(f"{what}: run #{r['id']} {r['status']}: {r.get('error') or ''}", icon="⚠️")
        return False
    if all(r["status"] == DONE for r in runs):
        return True

    @st.fragment(run_every=state.settings()["refresh_seconds"])
    def poll():
        now = experiment_runs(exp_id)
        if all(r["status"] == DONE for r in now) or any(r["status"] in RETRYABLE for r in now):
            st.rerun()
        done = sum(r["status"] == DONE for r in now)
        st.progress(sum(progress_fraction(r["status"], r.get("progress")) for r in now) / max(1, len(now)),
                    text=f"{what}: {done}/{len(now)} runs done · " + "; ".join(
                        f"{r['label']}: {progress_text(r['status'], r.get('progress'))}" for r in now if r["status"] == RUNNING))
        if not state.pool_alive():
            st.caption("No worker pool is running: start one from the Runs page or with "
                       "`python -m distill_core.jobs.cli worker`.")

    poll()
    return False


def describe(spec: dict) -> str:
    s = (spec.get("students") or [{}])[0]
    bits = [f"student {s.get('hidden') if isinstance(s, dict) else s}", f"T={spec.get('temperatures', ['?'])[0]}"]
    if spec.get("transfer", {}).get("omit_class") is not None:
        bits.append(f"without class {spec['transfer']['omit_class']}")
    return " · ".join(bits)


def show_experiment(name: str, state_key: str, draw: Callable[[int, list[dict]], None]) -> None:
    """Pick one of the experiments of this kind (the latest by default) and draw it when done."""
    exps = experiments_named(name)
    if not exps:
        st.caption("Nothing trained here yet.")
        return
    ids = [e["id"] for e in exps]
    current = st.session_state.get(state_key)
    index = ids.index(current) if current in ids else 0
    labels = {e["id"]: f"#{e['id']} · {e['spec'].get('dataset')} · {describe(e['spec'])}" for e in exps}
    exp_id = st.selectbox("Experiment", ids, index=index, format_func=labels.get, key=f"{state_key}-pick")
    if wait_for(exp_id, f"experiment #{exp_id}"):
        draw(exp_id, [state.get_run(r["id"]) for r in experiment_runs(exp_id)])


def roles(runs: list[dict]) -> dict[str, dict]:
    """The teacher, scratch and distilled run of a small experiment."""
    out = {}
    for r in runs:
        if r["role"] == TEACHER:
            out["teacher"] = r
        elif r["role"] == STUDENT:
            out["scratch" if r["config"]["method"]["name"] == SCRATCH else "distilled"] = r
    return out


def measured_for(preset: str, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The store's runs of a preset's latest finished experiment, by role (teacher / scratch / kd)."""
    out = {}
    for e in experiments_named(preset):
        ids = {r["id"] for r in experiment_runs(e["id"]) if r["status"] == DONE}
        for _, r in frame[frame["run_id"].isin(ids)].iterrows():
            out.setdefault(TEACHER if r["role"] == TEACHER else r["method"], r)
        if out:
            return out
    return out


def short_model(spec: dict) -> str:
    """"MLP 128-128" for an MLP, else the store's short name."""
    if spec.get("arch") == "mlp":
        return "MLP " + "-".join(str(h) for h in spec.get("hidden", [])) if spec.get("hidden") else "MLP"
    return model_label(spec)
