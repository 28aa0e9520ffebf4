"""Search: the most accurate student of a teacher that fits a device budget, found by Optuna.

The page only starts, stops and resumes searches and draws what their study and the store
hold. A search's driver runs as a background process (closing the tab does not stop it), and
its trials are ordinary runs that the worker pool trains.
"""
import time

import streamlit as st
import yaml

from distill_core.errors import DistillError
from distill_core.search import study as studies
from distill_core.search.driver import start_detached
from distill_core.search.report import answer, report
from ui import nav, state
from ui import search_figures as F
from ui.format import fmt_seconds, plural
from ui.search_form import form

nav.page_setup()
st.title("Search")
st.markdown(
    "Find **the most accurate student that fits a device**. A search proposes students (families, sizes, methods, "
    "temperatures, learning rates) with Optuna's multi-objective sampler, measures each one's size, FLOPs, latency and "
    "energy *before* training it, rejects what cannot fit the budget, trains the rest as ordinary runs, stops the "
    "hopeless ones early, and compares the best with the same network trained without the teacher."
)
home = state.home()
settings = state.settings()
ss = st.session_state


def start(spec) -> None:
    try:
        name = studies.create(home, spec)
    except DistillError as exc:
        ss["sr_note"] = ("error", str(exc))
        return
    state.start_workers(settings)
    start_detached(home, name)
    ss["sr_selected"] = name
    ss["sr_note"] = ("success", f"Search {name} started: its driver runs in the background.")


searches = studies.summaries(home)
with st.expander("Start a search", expanded=not searches, icon=":material/travel_explore:"):
    spec, problems, checked = form()
    if checked:
        st.caption(f"It searches {checked['summary']}.")
        with st.popover("What will be searched"):
            st.code(yaml.safe_dump(checked["space"], sort_keys=False), language="yaml")
            for note in checked["notes"]:
                st.caption(note)
    st.button("Start the search", type="primary", icon=":material/play_arrow:", key="sr_start", disabled=spec is None,
              on_click=start, args=(spec,))
note = ss.pop("sr_note", None)
if note:
    getattr(st, note[0])(note[1])
    searches = studies.summaries(home)

if not searches:
    st.info("No search yet: start one above. A small one (the moons toy set, 8 trials, 5 epochs) takes about a minute.")
    st.stop()

names = [s["name"] for s in searches]
if ss.get("sr_selected") in names:
    ss["sr_pick"] = ss.pop("sr_selected")
by_name = {s["name"]: s for s in searches}
picked = st.selectbox("Search", names, key="sr_pick",
                      format_func=lambda n: f"{n} · {by_name[n]['dataset']} · {by_name[n]['state']} · {by_name[n]['trials']} trials")
first = report(home, picked, state.store())
# Poll while a driver runs it, or is starting (just created, or resumed a moment ago).
active = first.state in (studies.CREATED, *studies.ACTIVE_STATES) or time.time() - ss.get("sr_waking", 0) < 30


def stop(name: str) -> None:
    asked = studies.request_stop(home, name)
    ss["sr_note2"] = ("info", f"Asked search {name} to stop." if asked else f"Search {name} has no driver running.")


def resume(name: str) -> None:
    try:
        state.start_workers(settings)
        start_detached(home, name)
        ss["sr_waking"] = time.time()
        ss["sr_note2"] = ("success", f"Search {name} resumed.")
    except DistillError as exc:
        ss["sr_note2"] = ("error", str(exc))


b1, b2, _ = st.columns([1, 1, 4])
if first.driver_alive:
    b1.button("Stop", key="sr_stop", icon=":material/stop:", on_click=stop, args=(picked,),
              help="cancels its queued and running trials; resume later to go on")
elif first.state != studies.FINISHED:
    if first.state in studies.ACTIVE_STATES:
        st.warning("Its driver is not running (the machine restarted, or it was killed): resume it to go on.")
    b2.button("Resume", key="sr_resume", icon=":material/play_arrow:", on_click=resume, args=(picked,))
note2 = ss.pop("sr_note2", None)
if note2:
    getattr(st, note2[0])(note2[1])


@st.fragment(run_every=settings["refresh_seconds"] if active else None)
def watch() -> None:
    r = report(home, picked, state.store())
    if (r.state, r.driver_alive) != (first.state, first.driver_alive):
        st.rerun()  # started, ended or changed phase: redraw the page (its buttons, and whether it polls)
    target = int(r.spec.get("trials") or 0)
    trained = sum(r.counts.get(k, 0) for k in ("complete", "pruned", "failed"))
    cols = st.columns(6)
    cols[0].metric("state", r.state)
    cols[1].metric("trained", f"{trained}/{target}")
    cols[2].metric("pruned", r.counts.get("pruned", 0), help="stopped early: their validation curve trailed the "
                   "finished trials that cost no more")
    cols[3].metric("rejected", r.counts.get("rejected", 0), help="over the budget by their architecture: never trained")
    cols[4].metric("training", r.counts.get("running", 0))
    cols[5].metric("time", fmt_seconds(r.elapsed))
    if r.message:
        (st.error if r.state == studies.FAILED else st.caption)(r.message)
    if r.counts.get("running") and not state.pool_alive():
        st.warning("No worker pool is running, so its trials wait.")
        if st.button("Start workers", key="sr_workers"):
            state.start_workers({**settings, "autostart": True})
    for line in answer(r):
        st.success(line, icon=":material/emoji_events:")
    if r.best is not None:
        nav.detail_link(int(r.best["run_id"]), "Open the best student (curves, figures, ONNX and int8 exports)")
    if r.trials.empty:
        st.caption("No trial yet: the driver is checking the budget against the smallest model of each family.")
        return
    key = st.radio("Cost", r.objectives, horizontal=True, key=f"sr_cost_{picked}", format_func=lambda k: F.OBJECTIVES[k].title)
    st.plotly_chart(F.trials_figure(r, key), key="sr_trials", width="stretch")
    st.caption("Each point is a trial at its validation accuracy (the search never looks at the test set). Its costs are "
               "the architecture's, measured before training; the dotted staircase is the Pareto front of the trials that "
               f"fit {r.budget_name} by their own run's measurement, the dashed line the budget's limit.")
    if len(r.front):
        st.subheader(f"Front ({plural(len(r.front), 'student')})")
        st.dataframe(F.front_table(r), hide_index=True, column_config=F.FRONT_COLUMNS, key="sr_front")
    curves = F.curves_figure(r)
    if curves is not None:
        st.subheader("Validation curves and pruning")
        st.plotly_chart(curves, key="sr_curves", width="stretch")
        pruned = r.trials[r.trials["outcome"] == "pruned"]
        st.caption(f"{plural(len(pruned), 'trial')} pruned (red crosses): a trial stops when, after a quarter of its "
                   "epochs, its best validation accuracy trails the finished trials that cost no more.")
    with st.expander(f"Every trial ({len(r.trials)})"):
        st.dataframe(F.trials_table(r), hide_index=True, key="sr_all")
    if r.precheck or r.notes:
        with st.expander("Before training: the smallest model of each family against the budget"):
            for c in r.precheck:
                st.markdown(f"- **{c['family']}** ({c['label'].split(' · ')[0]}): "
                            + ("fits" if c["fits"] else f"does not fit: {c['reason']}"))
            for n in r.notes:
                st.caption(n)


watch()
