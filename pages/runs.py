"""Runs: the queue and history, live curves of running runs, cancel / retry / delete, errors."""
import streamlit as st

from distill_core.constants import ACTIVE, FAILED, RETRYABLE, RUNNING, STATUSES
from distill_core.errors import DistillError
from distill_core.jobs import queue
from distill_core.progress import curves_from_events, progress_fraction, progress_text
from ui import figures, nav, state
from ui.format import status_label

nav.page_setup()
st.title("Runs")
s = state.store()
settings = state.settings()

# -- filters ----------------------------------------------------------------------------------
experiments = s.experiments()
f1, f2, f3 = st.columns([2, 2, 1])
exp_names = {e["id"]: f"#{e['id']} {e['name'] or 'experiment'} ({e['runs']} runs)" for e in experiments}
exp_choice = f1.selectbox("Experiment", [None, *exp_names], format_func=lambda i: "all experiments" if i is None else exp_names[i],
                          key="runs_experiment")
statuses = f2.multiselect("Status", list(STATUSES), key="runs_status",
                          placeholder="any status")
limit = f3.number_input("Show at most", min_value=10, max_value=5000, value=200, step=50, key="runs_limit")

runs = s.list_runs(status=statuses or None, experiment=exp_choice, newest_first=True, limit=int(limit))
active = {r["id"]: r["status"] for r in s.list_runs(status=list(ACTIVE))}
poll = settings["refresh_seconds"] if active else None  # poll only while something is queued or runs

if active and not state.pool_alive():
    st.warning("No worker pool is running, so queued runs wait.")
    if st.button("Start workers", key="runs_start_workers"):
        state.start_workers({**settings, "autostart": True})
        st.rerun()


# -- the table and live curves: redrawn every few seconds while runs are active -----------------
@st.fragment(run_every=poll)
def board():
    now = {r["id"]: r for r in s.list_runs(status=list(ACTIVE))}
    if {i: r["status"] for i, r in now.items()} != active:
        st.rerun()  # a run started or ended: redraw the whole page (and stop polling when idle)
    shown = s.list_runs(status=statuses or None, experiment=exp_choice, newest_first=True, limit=int(limit)) if poll else runs
    st.caption(" · ".join(f"{status_label(k)}: {v}" for k, v in s.queue_state().items() if v) or "The store is empty.")
    if not shown:
        st.info("No runs match. Launch some from **New experiment** or the quick demo on **Home**.")
    else:
        figures.show_runs_table(shown, key="runs_table", height=min(600, 38 + 35 * len(shown)))
    running = [r for r in now.values() if r["status"] == RUNNING]
    if not running:
        return
    st.subheader(f"Training now ({len(running)})")
    for r in running:
        with st.container(border=True):
            top = st.columns([4, 1])
            top[0].markdown(f"**#{r['id']} {r['label']}** · {progress_text(RUNNING, r.get('progress'))}")
            if top[1].button("Cancel", key=f"live_cancel_{r['id']}"):
                st.toast(f"run #{r['id']}: {queue.cancel(s, r['id'])}")
            st.progress(progress_fraction(RUNNING, r.get("progress")))
            curves = curves_from_events(s.progress(r["id"]))
            if curves:
                figures.plot(figures.curves_figure(live=curves), key=f"live_curves_{r['id']}")
            else:
                st.caption("Waiting for the first progress report…")


board()

# -- actions ------------------------------------------------------------------------------------


def act(action: str) -> None:
    """Button callback: runs before the page redraws, so the table shows the outcome."""
    notes = []
    for rid in st.session_state.get("runs_selected", []):
        try:
            if action == "cancel":
                notes.append(("info", f"run #{rid}: {queue.cancel(s, rid)}"))
            elif action == "retry":
                ids = queue.retry(s, rid)
                notes.append(("success", f"queued again: {', '.join(f'#{i}' for i in ids)}"))
            elif action == "delete":
                queue.delete(s, rid)
                notes.append(("info", f"run #{rid} deleted with its files"))
        except DistillError as exc:
            notes.append(("error", str(exc)))
    if action == "retry" and any(kind == "success" for kind, _ in notes):
        state.start_workers(settings)
    if action == "delete":
        st.session_state["runs_selected"] = []
    st.session_state["runs_notes"] = notes


st.subheader("Act on runs")
labels = {r["id"]: f"#{r['id']} {r['label']} ({r['status']})" for r in runs}
if any(i not in labels for i in st.session_state.get("runs_selected", [])):
    st.session_state["runs_selected"] = [i for i in st.session_state["runs_selected"] if i in labels]
chosen = st.multiselect("Runs", list(labels), format_func=labels.get, key="runs_selected",
                        placeholder="choose runs to cancel, retry, delete or open")
b1, b2, b3, b4 = st.columns(4)
b1.button("Cancel", disabled=not chosen, key="act_cancel", width="stretch", on_click=act, args=("cancel",))
b2.button("Retry", disabled=not chosen, key="act_retry", width="stretch", on_click=act, args=("retry",))
b3.button("Delete", disabled=not chosen, key="act_delete", width="stretch", on_click=act, args=("delete",),
          help="removes the runs, their progress and their files (weights, exports)")
if len(chosen) == 1:
    with b4:
        nav.detail_link(chosen[0])
for kind, note in st.session_state.pop("runs_notes", []):
    getattr(st, kind)(note)

# -- errors ---------------------------------------------------------------------------------------


def retry_one(run_id: int) -> None:
    try:
        ids = queue.retry(s, run_id)
        state.start_workers(settings)
        st.session_state["runs_notes"] = [("success", f"queued again: {', '.join(f'#{i}' for i in ids)}")]
    except DistillError as exc:
        st.session_state["runs_notes"] = [("error", str(exc))]


problems = [r for r in runs if r["status"] in RETRYABLE]
if problems:
    st.subheader("What went wrong")
    for r in problems[:20]:
        with st.expander(f"{status_label(r['status'])} #{r['id']} {r['label']}", expanded=r["status"] == FAILED and len(problems) <= 3):
            st.error(r.get("error") or "no message recorded")
            full = state.get_run(r["id"]) or {}
            if full.get("traceback"):
                st.code(full["traceback"], language="text")
            st.button("Retry", key=f"retry_{r['id']}", on_click=retry_one, args=(r["id"],))
