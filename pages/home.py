"""Home: what distillation is, a one-click quick demo, the queue and the latest results."""
import streamlit as st

from distill_core.errors import DistillError
from distill_core.presets import PRESETS
from pages import common as c

DEMO = "digits-quick"

c.page_style()
st.title(":material/science: Distillation Lab")
st.markdown(
    "**Knowledge distillation** trains a small *student* network to imitate a large *teacher*: "
    "instead of learning only from the right answers, the student learns from the teacher's softened "
    "output probabilities, which carry what the teacher knows about how classes resemble each other. "
    "A good student keeps most of the teacher's accuracy at a fraction of its size, latency and energy. "
    "This lab trains teachers and students side by side, compares every student with the same network "
    "trained from scratch, and measures what each one costs."
)

s = c.store()
settings = c.load_settings()

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Quick demo")
    st.write(PRESETS[DEMO]["description"])
    if st.button("Run the quick demo", type="primary", icon=":material/play_arrow:", key="demo"):
        try:
            exp_id, run_ids = c.submit(PRESETS[DEMO]["spec"])
        except DistillError as exc:
            st.error(str(exc))
        else:
            st.session_state["demo_experiment"] = exp_id
            st.toast(f"Quick demo queued: {len(run_ids)} runs")

counts = s.queue_state()
active = bool(counts["queued"] or counts["running"])
poll = settings["refresh_seconds"] if active else None  # poll only while something is queued or runs


@st.fragment(run_every=poll)
def queue_panel():
    now = s.queue_state()
    if active and not (now["queued"] or now["running"]):
        st.rerun()  # the queue just emptied: redraw the whole page once, which stops the polling
    cols = st.columns(4)
    for col, status in zip(cols, ("queued", "running", "done", "failed")):
        col.metric(status, now.get(status, 0))
    if c.pool_alive():
        st.caption("Workers: running.")
    elif now["queued"] or now["running"]:
        st.warning("No worker pool is running, so queued runs wait.")
        if st.button("Start workers", key="start_workers"):
            c.start_workers({**settings, "autostart": True})
            st.rerun()
    else:
        st.caption("Workers: idle (they start when you launch runs).")


with right:
    st.subheader("Queue")
    queue_panel()
    st.page_link(c.PAGES["new"], label="Design your own experiment", icon=":material/science:")


def demo_experiment() -> int | None:
    """The demo this session launched, else the latest quick demo in the store."""
    if st.session_state.get("demo_experiment"):
        return st.session_state["demo_experiment"]
    for e in s.experiments():
        if e["name"] == DEMO:
            return e["id"]
    return None


exp_id = demo_experiment()
finished_at_render = exp_id is None or all(r["status"] not in c.ACTIVE for r in s.list_runs(experiment=exp_id))


@st.fragment(run_every=poll)
def demo_progress():
    if exp_id is None:
        return
    runs = s.list_runs(experiment=exp_id)
    if not runs:
        return
    done = sum(r["status"] == "done" for r in runs)
    finished = all(r["status"] not in c.ACTIVE for r in runs)
    st.subheader(f"Quick demo (experiment #{exp_id})")
    st.progress(done / len(runs), text=f"{done}/{len(runs)} runs done" + ("" if finished else " · training…"))
    c.show_runs_table(runs, key="demo_runs")
    if finished:
        student = next((r for r in runs if r["role"] == "student" and r["status"] == "done"
                        and "scratch" not in r["label"]), None)
        teacher = next((r for r in runs if r["role"] == "teacher" and r["status"] == "done"), None)
        scratch = next((r for r in runs if r["role"] == "student" and "scratch" in r["label"] and r["status"] == "done"), None)
        if student and teacher and scratch:
            st.markdown(f"The distilled student scored **{c.fmt_pct(student['accuracy'])}** on the test set, against "
                        f"{c.fmt_pct(scratch['accuracy'])} for the same network trained from scratch and "
                        f"{c.fmt_pct(teacher['accuracy'])} for the teacher.")
        if student:
            c.detail_link(student["id"], "Open the distilled student")
        if not finished_at_render:  # it finished while this page watched: redraw the page once
            st.rerun()
        failed = [r for r in runs if r["status"] != "done"]
        for r in failed:
            st.error(f"Run #{r['id']} {r['label']}: {r['status']}: {r.get('error') or ''}")


demo_progress()

st.subheader("Latest results")
latest = s.list_runs(status="done", role="student", newest_first=True, limit=8)
if latest:
    c.show_runs_table(latest, key="latest")
    st.page_link(c.PAGES["runs"], label="All runs", icon=":material/list_alt:")
else:
    st.caption("No finished runs yet: run the quick demo, or design an experiment.")
