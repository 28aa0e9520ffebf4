"""Run detail: one run in full. Curves, errors, calibration, the teacher's and the student's
softened predictions on real samples, every measurement, budgets, and every file to take away.

The run is chosen by the `run` query parameter (…/run_detail?run=12), so a link opens it directly.
"""
import streamlit as st

from distill_core import analysis, teachers
from distill_core.constants import ACTIVE, DONE, QUEUED, RUNNING, STUDENT, TEACHER
from distill_core.errors import DistillError
from distill_core.jobs import queue
from distill_core.labels import method_label, model_label
from distill_core.models import describe_spec
from distill_core.progress import curves_from_events, progress_fraction, progress_text
from ui import figures, run_files, run_tabs, state
from ui.format import fmt_count, fmt_pct, status_label
from ui.nav import page_setup

page_setup()
s = state.store()
settings = state.settings()


# -- which run --------------------------------------------------------------------------------
def choose_run() -> int | None:
    raw = st.query_params.get("run")
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            st.error(f"run={raw!r} is not a run id (a whole number such as run=12)")
    runs = s.list_runs(newest_first=True, limit=500)
    if not runs:
        st.title("Run detail")
        st.info("No runs yet. Launch the quick demo on **Home** or design an experiment.")
        return None
    runs.sort(key=lambda r: (r["status"] != DONE, r["role"] != STUDENT, -r["id"]))
    labels = {r["id"]: f"#{r['id']} {r['label']} ({r['status']})" for r in runs}
    picked = st.selectbox("Run", list(labels), format_func=labels.get, index=None, placeholder="choose a run")
    if picked is not None:
        st.query_params["run"] = str(picked)
        st.rerun()
    return None


run_id = choose_run()
if run_id is None:
    st.stop()
run = state.get_run(run_id)
if run is None:
    st.title("Run detail")
    st.error(f"There is no run #{run_id} in {s.home} (deleted, or another home folder).")
    if st.button("Choose another run"):
        del st.query_params["run"]
        st.rerun()
    st.stop()

cfg = run["config"] or {}
result = run["result"] or {}
metrics = result.get("metrics") or {}
method = cfg.get("method") or {}

try:
    short = describe_spec(cfg["model"]) + ("" if run["role"] != STUDENT else f" · {method_label(method)} · seed {cfg.get('seed')}")
except (DistillError, KeyError):
    short = run["label"]
st.title(f"#{run_id} {short}" if run["role"] == STUDENT else f"#{run_id} {run['role']} {short}")
bits = [status_label(run["status"]), run["role"], f"model **{model_label(cfg.get('model'))}**", f"data set **{(cfg.get('dataset') or {}).get('name')}**",
        f"method **{method.get('name')}**", f"seed {cfg.get('seed')}"]
kind = teachers.teacher_kind(state.run_config(run))
if cfg.get("teacher"):
    bits.append(f"teacher **{model_label(cfg['teacher'].get('model'))}** ({kind})")
else:
    bits.append(f"kind **{kind}**")
if run.get("node"):
    bits.append(f"node {run['node']}")
st.markdown(" · ".join(bits))
if run["role"] != STUDENT:
    run_tabs.teacher_source(result)
if st.button("Choose another run", key="other_run", type="tertiary"):
    del st.query_params["run"]
    st.rerun()


# -- not finished ------------------------------------------------------------------------------
if run["status"] in ACTIVE:
    @st.fragment(run_every=settings["refresh_seconds"])
    def live():
        now = s.list_runs(status=list(ACTIVE))
        me = next((r for r in now if r["id"] == run_id), None)
        if me is None:
            st.rerun()  # it finished: draw the full page
        if me["status"] == QUEUED:
            st.info("Queued: waiting for a worker" + (" and for its teacher run" if run.get("depends_on") else "") + ".")
            return
        st.progress(progress_fraction(RUNNING, me.get("progress")), text=progress_text(RUNNING, me.get("progress")))
        curves = curves_from_events(s.progress(run_id))
        if curves:
            figures.plot(figures.curves_figure(live=curves), key="detail_live")
        if st.button("Cancel this run", key="detail_cancel"):
            st.toast(queue.cancel(s, run_id))

    live()
    st.stop()

if run["status"] != DONE:
    st.error(run.get("error") or f"the run is {run['status']}")
    if run.get("traceback"):
        with st.expander("Traceback"):
            st.code(run["traceback"], language="text")

    def retry():
        try:
            queue.retry(s, run_id)
            state.start_workers(settings)
        except DistillError as exc:
            st.session_state["detail_note"] = str(exc)

    st.button("Retry", on_click=retry, key="detail_retry")
    if st.session_state.get("detail_note"):
        st.error(st.session_state.pop("detail_note"))
    st.stop()


# -- headline figures ---------------------------------------------------------------------------
frame = state.results_frame()
base = analysis.scratch_baseline(frame, run_id) if not frame.empty else None
diff = analysis.run_delta(frame, run_id) if not frame.empty else None
acc = metrics.get("accuracy")
cols = st.columns(6)
cols[0].metric("test accuracy", fmt_pct(acc),
               delta=None if diff is None else f"{100 * diff['this']:+.1f} pts vs scratch (seed {cfg.get('seed')})",
               help="minus the same student trained from scratch on the same seed" if diff is not None else None)
cols[1].metric("teacher accuracy", fmt_pct(result.get("teacher_accuracy")) if run["role"] != TEACHER else "(this run)")
cols[2].metric("agreement", fmt_pct(metrics.get("teacher_agreement")),
               help="share of test samples where this model and its teacher predict the same class")
kl = metrics.get("teacher_kl")
cols[3].metric("KL to teacher", "unavailable" if kl is None else f"{kl:.3f}", help="KL(teacher ‖ student) on the test set at T = 1, in nats")
cols[4].metric("ECE", "unavailable" if metrics.get("ece") is None else f"{metrics['ece']:.3f}",
               help="expected calibration error (15 bins): how far confidence is from accuracy")
cols[5].metric("parameters", fmt_count(result.get("params")))
if run["role"] == TEACHER:
    st.caption("Agreement and KL compare a student with its teacher; this run is the teacher.")
if diff is not None:
    over = analysis.delta_words(diff["mean"], diff["std"], diff["n"])
    st.caption(f"Against scratch, this configuration: {over}." + ("" if diff["n"] >= analysis.MIN_SEEDS else
               f" Run it on {analysis.MIN_SEEDS} or more seeds to see whether the difference is larger than "
               "seed-to-seed noise."))

tabs = st.tabs(["Training", "Errors", "Calibration", "Predictions", "Cost", "Budgets", "Files"])
with tabs[0]:
    run_tabs.training(cfg, result)
with tabs[1]:
    run_tabs.errors(cfg, metrics, base)
with tabs[2]:
    run_tabs.calibration(metrics)
with tabs[3]:
    run_tabs.predictions(run, method)
with tabs[4]:
    run_tabs.cost(run, result, frame)
with tabs[5]:
    run_tabs.budgets(result, s.home)
with tabs[6]:
    run_files.files(run, result, s.home)
