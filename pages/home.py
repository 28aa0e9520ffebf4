"""Home: what distillation is, a one-click quick demo, the queue and the latest results."""
import streamlit as st

from distill_core import analysis
from distill_core.constants import ACTIVE, DONE, FAILED, QUEUED, RUNNING, SCRATCH, STUDENT
from distill_core.errors import DistillError
from distill_core.presets import PRESETS, preset_spec
from ui import figures, nav, state

DEMO = "digits-quick"

nav.page_setup()
st.title(":material/science: Distillation Lab")
st.markdown(
    "**Knowledge distillation** trains a small *student* network to imitate a large *teacher*: "
    "instead of learning only from the right answers, the student learns from the teacher's softened "
    "output probabilities, which carry what the teacher knows about how classes resemble each other. "
    "A good student keeps most of the teacher's accuracy at a fraction of its size, latency and energy. "
    "This lab trains teachers and students side by side, compares every student with the same network "
    "trained from scratch, and measures what each one costs."
)

s = state.store()
settings = state.settings()

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Quick demo")
    st.write(PRESETS[DEMO]["description"])
    if st.button("Run the quick demo", type="primary", icon=":material/play_arrow:", key="demo"):
        try:
            exp_id, run_ids = state.submit(preset_spec(DEMO))
        except DistillError as exc:
            st.error(str(exc))
        else:
            st.session_state["demo_experiment"] = exp_id
            st.toast(f"Quick demo queued: {len(run_ids)} runs")

counts = s.queue_state()
active = bool(counts[QUEUED] or counts[RUNNING])
poll = settings["refresh_seconds"] if active else None  # poll only while something is queued or runs


@st.fragment(run_every=poll)
def queue_panel():
    now = s.queue_state()
    if active and not (now[QUEUED] or now[RUNNING]):
        st.rerun()  # the queue just emptied: redraw the whole page once, which stops the polling
    cols = st.columns(4)
    for col, status in zip(cols, (QUEUED, RUNNING, DONE, FAILED)):
        col.metric(status, now.get(status, 0))
    if state.pool_alive():
        st.caption("Workers: running.")
    elif now[QUEUED] or now[RUNNING]:
        st.warning("No worker pool is running, so queued runs wait.")
        if st.button("Start workers", key="start_workers"):
            state.start_workers({**settings, "autostart": True})
            st.rerun()
    else:
        st.caption("Workers: idle (they start when you launch runs).")


with right:
    st.subheader("Queue")
    queue_panel()
    st.page_link(nav.PAGES["new"], label="Design your own experiment", icon=":material/science:")


def demo_experiment() -> int | None:
    """The demo this session launched, else the latest quick demo in the store."""
    if st.session_state.get("demo_experiment"):
        return st.session_state["demo_experiment"]
    for e in s.experiments():
        if e["name"] == DEMO:
            return e["id"]
    return None


exp_id = demo_experiment()
finished_at_render = exp_id is None or all(r["status"] not in ACTIVE for r in s.list_runs(experiment=exp_id))


@st.fragment(run_every=poll)
def demo_progress():
    if exp_id is None:
        return
    runs = s.list_runs(experiment=exp_id)
    if not runs:
        return
    done = sum(r["status"] == DONE for r in runs)
    finished = all(r["status"] not in ACTIVE for r in runs)
    st.subheader(f"Quick demo (experiment #{exp_id})")
    st.progress(done / len(runs), text=f"{done}/{len(runs)} runs done" + ("" if finished else " · training…"))
    figures.show_runs_table(runs, key="demo_runs")
    if finished:
        student = next((r for r in runs if r["role"] == STUDENT and r["status"] == DONE
                        and SCRATCH not in r["label"]), None)
        for line in analysis.seeds_summary(s.results_frame(experiment=exp_id)):
            st.markdown(line)
        if student:
            nav.detail_link(student["id"], "Open the distilled student")
        if not finished_at_render:  # it finished while this page watched: redraw the page once
            st.rerun()
        failed = [r for r in runs if r["status"] != DONE]
        for r in failed:
            st.error(f"Run #{r['id']} {r['label']}: {r['status']}: {r.get('error') or ''}")


demo_progress()

st.subheader("Latest results")
latest = s.list_runs(status=DONE, role=STUDENT, newest_first=True, limit=8)
if latest:
    figures.show_runs_table(latest, key="latest")
    st.page_link(nav.PAGES["runs"], label="All runs", icon=":material/list_alt:")
else:
    st.caption("No finished runs yet: run the quick demo, or design an experiment.")
