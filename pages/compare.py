"""Compare: what each student gives up and what it gets, from the store's finished runs.

Thin page: every number comes from `Store.results_frame()` and `distill_core.analysis`.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from distill_core import analysis as A
from distill_core.constants import QUEUED, RUNNING, STUDENT
from distill_core.measure.budgets import LATENCY_OF, SIZE_OF, load_profiles
from ui import compare_figures as F
from ui import state
from ui.format import fmt_co2, fmt_energy
from ui.nav import page_setup

MAX_ENERGY_RUNS = 40  # bars per energy chart; more are summed in the metrics, not drawn


def html_download(fig: go.Figure, name: str, key: str) -> None:
    """The figure as a standalone HTML file (made only when clicked; Plotly's own toolbar
    gives a PNG)."""
    st.download_button("Download figure (HTML)", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                       file_name=f"{name}.html", mime="text/html", key=f"dl-{key}", type="tertiary",
                       icon=":material/download:")


def filters(frame: pd.DataFrame) -> pd.DataFrame:
    """Data set (one at a time: accuracies of different data sets do not share an axis),
    teacher, method and student."""
    c1, c2, c3, c4 = st.columns([1, 1.3, 1.3, 1.6])
    sets = frame["dataset"].dropna().value_counts().index.tolist()
    ds = c1.selectbox("Data set", sets, key="cmp-dataset")
    f = frame[frame["dataset"] == ds]
    teacher_name = f["teacher"].where(f["role"] == STUDENT, f["model"])
    teacher_name = teacher_name.where(f["member_of"].isna(), f["member_of"])  # an ensemble's members come with it
    teachers = sorted(teacher_name.dropna().unique())
    pick_t = c2.multiselect("Teacher", teachers, default=teachers, key=f"cmp-teacher-{ds}")
    students = f[f["role"] == STUDENT]
    methods = sorted(students["method"].dropna().unique())
    pick_m = c3.multiselect("Method", methods, default=methods, key=f"cmp-method-{ds}",
                            help="scratch is the student trained without a teacher: the baseline")
    models = sorted(students["model"].dropna().unique())
    pick_s = c4.multiselect("Student", models, default=models, key=f"cmp-student-{ds}")
    keep = teacher_name.isin(pick_t) & ((f["role"] != STUDENT) | (f["method"].isin(pick_m) & f["model"].isin(pick_s)))
    return f[keep]


def section_tradeoffs(sel: pd.DataFrame, colours: dict, average: bool) -> None:
    costs = A.cost_columns(sel)
    values = list(dict.fromkeys(["accuracy"] + [v for c in costs.values() if c["column"] for v in (c["accuracy"], c["column"])]))
    pts = F.points(sel, values, average)
    pts["kind"] = F.kind_of(pts)
    st.caption("Each point is " + ("a configuration, averaged over its seeds (bars: one standard deviation)"
                                   if average else "one run") +
               ". The teacher (star), an ensemble teacher's members (open stars; the ensemble's costs are the sum of "
               "theirs) and the scratch students (grey) are the landmarks; the dotted staircase is "
               "the Pareto frontier: no other run is both cheaper and more accurate. The int8 costs are drawn "
               "against the accuracy of the int8 model that deploys (static by default, or the variant its run chose).")
    cols = st.columns(2)
    for i, (key, c) in enumerate(costs.items()):
        cost = c["cost"]
        with cols[i % 2]:
            if c["column"] is None:
                st.markdown(f"**{'int8 accuracy' if c['accuracy'] != 'accuracy' else 'accuracy'} vs {cost.title}**")
                st.info(f"{cost.title}: unavailable. {c['reason']}", icon=":material/block:")
                continue
            fig, front = F.trade_off_figure(pts, c["column"], cost.title, colours, average, c["accuracy"])
            missing = int(pts[c["column"]].isna().sum())
            st.plotly_chart(fig, key=f"tradeoff-{key}", width="stretch")
            note = f"On the frontier: {'; '.join(front['label'].astype(str).head(4))}" + (" ..." if len(front) > 4 else "")
            if missing:
                note += f" · {missing} point(s) without this figure are left out (not drawn as 0)"
            st.caption(note)
            html_download(fig, f"tradeoff-{key}", key)


def section_temperature(sel: pd.DataFrame) -> None:
    sweep = A.temperature_sweep(sel)
    if sweep.empty:
        st.info("No distilled student with a temperature in this selection. Run a temperature sweep "
                "(several temperatures on the New experiment page) to see how T changes what a student learns.")
        return
    fig = F.temperature_figure(sweep, sel)
    st.plotly_chart(fig, key="temperature-sweep", width="stretch")
    st.caption("Mean over seeds, bars one standard deviation. Horizontal lines: the teacher (black) and each scratch "
               "student (dotted, in its student's colour), trained on the same seeds.")
    if sweep["temperature"].nunique() < 2:
        st.caption("Only one temperature so far: submit several to draw a curve.")
    html_download(fig, "temperature-sweep", "temperature")


def section_gap(sel: pd.DataFrame) -> None:
    gaps = A.gap_closed_table(sel)
    if gaps.empty:
        st.info("No distilled student in this selection.")
        return
    gaps["name"] = gaps["model"].astype(str) + " · " + gaps["method_label"].astype(str)
    ok = gaps[gaps["gap_mean"].notna()]
    if len(ok):
        fig = px.bar(ok, y="name", x="gap_mean", error_x="gap_std", color="model", orientation="h",
                     color_discrete_map=F.student_colours(gaps["model"]),
                     hover_data={"n_seeds": True, "accuracy_mean": ":.4f", "scratch_accuracy": ":.4f",
                                 "teacher_accuracy": ":.4f", "name": False},
                     labels={"gap_mean": "gap closed", "name": "", "model": "student"})
        fig.add_vline(x=1, line=dict(color="#222", width=1), annotation_text="matches the teacher")
        fig.add_vline(x=0, line=dict(color="#9e9e9e", width=1), annotation_text="scratch")
        fig.update_layout(height=160 + 32 * len(ok), margin=dict(l=10, r=10, t=50, b=10), xaxis_tickformat=".0%",
                          yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=1.0, yanchor="bottom"))
        st.plotly_chart(fig, key="gap-closed", width="stretch")
        html_download(fig, "gap-closed", "gap")
    st.caption(r"Gap closed = (accuracy − scratch) / (teacher − scratch), per seed against the scratch student of the "
               "same seed, then mean and standard deviation over seeds. 100 %: as good as the teacher; 0 %: "
               "distillation did not help; below 0: it hurt.")
    bad = gaps[gaps["gap_mean"].isna()]
    for _, r in bad.iterrows():
        st.warning(f"{r['name']}: gap closed undefined. {r['reason']}", icon=":material/help:")


def section_energy(sel: pd.DataFrame) -> None:
    long = A.energy_phases(sel)
    if long.empty:
        reasons = sel.get("energy.reason", pd.Series(dtype=object)).dropna()
        st.info("Energy: unavailable for every selected run. " + (str(reasons.iloc[0]) if len(reasons) else
                "No phase was measured (energy measurement may be turned off)."))
        return
    hows = sorted(set(long["how"]))
    label = "measured" if hows == ["measured"] else "estimated"
    method = sel.get("energy.method", pd.Series(dtype=object)).dropna()
    countries = A.countries()
    start = state.settings()["country"]
    c1, c2 = st.columns([1, 3])
    country = c1.selectbox("Country for CO2eq", countries or [start], index=(countries.index(start) if start in countries else 0),
                           key="cmp-country", help="grid carbon intensity from CodeCarbon's offline energy-mix table")
    intensity, note = A.carbon_intensity(country)
    spent = long[~long["reused"]]
    saved = A.reuse_savings(sel, long)
    m1, m2, m3 = st.columns(3)
    m1.metric(f"Energy spent ({label})", fmt_energy(spent["kwh"].sum()))
    m2.metric(f"CO2eq in {country} ({label})",
              fmt_co2(spent["kwh"].sum() * intensity / 1000) if intensity is not None else "unavailable", help=note)
    if math.isnan(saved["saved_kwh"]):
        m3.metric("Saved by teacher and logit reuse", "none", help="no run reused a cached teacher")
    else:
        m3.metric("Saved by teacher and logit reuse", fmt_energy(saved["saved_kwh"]),
                  help=f"{saved['runs_reusing']} run(s) took the teacher's weights and logits from the cache instead "
                       "of training it and running it over the data again")
    c2.caption(f"Energy is **{label}**: {method.iloc[0] if len(method) else 'CodeCarbon'}. "
               f"Carbon intensity: {f'{intensity:.0f} g/kWh' if intensity is not None else 'unavailable'} ({note}).")
    reused = st.toggle("Show the teacher phases each run reused (hatched)", value=False, key="cmp-energy-reused",
                       help="what each run would have spent training its teacher and computing its logits itself")
    long = (long if reused else spent).copy()
    shown = sorted(long["run_id"].unique())[-MAX_ENERGY_RUNS:]
    if len(shown) < long["run_id"].nunique():
        st.caption(f"Drawing the {MAX_ENERGY_RUNS} newest of {long['run_id'].nunique()} runs (the totals above count "
                   "them all); narrow the filters to see others.")
        long = long[long["run_id"].isin(shown)]
    long["Wh"] = long["kwh"] * 1000
    long["phase"] = long["phase"].str.replace("_", " ")
    long["source"] = np.where(long["reused"], "reused from cache (not spent)", "spent by this run")
    long["run"] = "#" + long["run_id"].astype(str) + " " + long["label"].astype(str)  # two runs may share a label
    pattern = dict(pattern_shape="source", pattern_shape_map={"spent by this run": "", "reused from cache (not spent)": "/"}) if reused else {}
    fig = px.bar(long, y="run", x="Wh", color="phase", orientation="h", **pattern,
                 hover_data={"how": True, "run": False}, labels={"run": "", "Wh": f"energy (Wh, {label})"})
    fig.update_layout(barmode="stack", height=200 + 22 * long["run_id"].nunique(), margin=dict(l=10, r=10, t=50, b=10),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=1.0, yanchor="bottom", title=None))
    st.plotly_chart(fig, key="energy-phases", width="stretch")
    st.caption("Phases with no reading are left out, not drawn as zero. "
               + ("Hatched: phases a cached teacher did once (training and its logits), reused by this run and not "
                  "counted in what it spent." if reused else ""))
    html_download(fig, "energy-phases", "energy")


def section_budgets(sel: pd.DataFrame, home: str) -> None:
    try:
        profiles = load_profiles(home)
    except Exception as exc:  # a broken budgets.json: say which and use none
        st.error(str(exc))
        return
    c1, c2 = st.columns([1, 2])
    name = c1.selectbox("Deployment profile", list(profiles), key="cmp-profile")
    p = profiles[name]
    limits = []
    if p.get("max_bytes"):
        limits.append(f"{SIZE_OF[p['size_of']]} ≤ {p['max_bytes'] / 1024:,.0f} KiB")
    if p.get("max_latency_ms"):
        limits.append(f"{LATENCY_OF[p['latency_of']]} batch-1 median ≤ {p['max_latency_ms']:g} ms (measured on this machine)")
    c2.caption(f"**{name}**: {p.get('description', '')}. Limits: {'; '.join(limits) or 'none'}. "
               "Profiles come from the defaults and `budgets.json` in the home folder.")
    cands = sel
    acc = A.profile_accuracy(p)  # an int8 profile judges the int8 model that deploys
    acc_name = "int8 accuracy" if acc != "accuracy" else "accuracy"
    table = A.budget_table(cands, p, name)
    best = A.best_that_fits(cands, p, table=table)
    if best is not None:
        st.success(f"Best that fits **{name}**: **{best['label']}**, {acc_name} {best[acc]:.4f} "
                   f"({int(best['params']):,} parameters).", icon=":material/check_circle:")
    else:
        st.warning(f"No selected run fits **{name}**.", icon=":material/block:")
    fits = table["fits"].map({True: "fits", False: "does not fit", None: "not measured"}).fillna("not measured")
    d = cands.assign(fits=fits.values, reason=table["reason"].values)
    size_col = {"fp32": "measure.size.fp32_bytes", "int8": "measure.size.int8_bytes", "onnx": "measure.size.onnx_bytes"}[p["size_of"]]
    x = size_col if size_col in d.columns and d[size_col].notna().any() else "params"
    d = d[d[x].notna() & d[acc].notna()] if acc in d.columns else d.iloc[:0]
    fig = px.scatter(d, x=x, y=acc, color="fits", hover_name="label",
                     color_discrete_map={"fits": "#2e7d32", "does not fit": "#c62828", "not measured": "#9e9e9e"},
                     hover_data={"reason": True, x: True},
                     labels={x: {"params": "parameters"}.get(x, SIZE_OF[p["size_of"]] + " (bytes)"), acc: acc_name})
    fig.update_traces(marker=dict(size=10, line=dict(width=1, color="white")))
    if p.get("max_bytes") and x == size_col:
        fig.add_vline(x=p["max_bytes"], line=dict(color="#c62828", dash="dash"), annotation_text="size limit")
    if best is not None and best["run_id"] in set(d["run_id"]):
        fig.add_trace(go.Scatter(x=[best[x]], y=[best[acc]], mode="markers", name="best that fits",
                                 marker=dict(size=22, symbol="circle-open", color="#2e7d32", line=dict(width=3))))
    fig.update_xaxes(type="log" if (d[x] > 0).all() and len(d) else "linear")
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="budget", width="stretch")
    html_download(fig, "budget", "budget")


TABLE_COLUMNS = ["run_id", "label", "role", "teacher_kind", "member_of", "model", "method", "temperature", "alpha", "seed", "accuracy",
                 "teacher_agreement", "teacher_accuracy", "params", "measure.size.fp32_bytes", "measure.size.int8_bytes",
                 "measure.int8.variant", "measure.int8.accuracy", "measure.latency.onnx_int8.median_ms",
                 "measure.compute.flops", "measure.latency.torch.median_ms", "measure.latency.onnx.median_ms",
                 "training_kwh", "energy.inference_kwh_per_1000", "energy.label"]


def section_table(sel: pd.DataFrame) -> None:
    cols = [c for c in TABLE_COLUMNS if c in sel.columns]
    st.dataframe(sel[cols], hide_index=True, width="stretch",
                 column_config={"accuracy": st.column_config.NumberColumn(format="%.4f"),
                                "teacher_agreement": st.column_config.NumberColumn("agreement", format="%.4f")})
    st.download_button("Download the selected runs (CSV, every column)", data=sel.to_csv(index=False).encode(),
                       file_name="distill-runs.csv", mime="text/csv", key="dl-csv", icon=":material/download:")


def main() -> None:
    page_setup()
    st.title("Compare")
    st.caption("What does a student give up, and what does it get? Accuracy against size, speed and energy, "
               "with the teacher and the scratch student as landmarks.")
    store = state.store()
    frame = A.with_ensembles(A.add_training_energy(state.results_frame()))
    counts = store.queue_state()
    if frame.empty:
        st.info("No finished runs yet. Start the quick demo on the Home page or design an experiment; "
                "results appear here as runs finish.")
        return
    busy = counts.get(RUNNING, 0) + counts.get(QUEUED, 0)
    top = st.columns([3, 1])
    if busy:
        top[0].caption(f"{busy} run(s) still queued or running: their results appear here as they finish.")
    if top[1].button("Refresh", icon=":material/refresh:", key="cmp-refresh"):
        st.rerun()
    sel = filters(frame)
    if sel.empty:
        st.warning("Nothing matches these filters.")
        return
    average = st.toggle("Average over seeds", value=True, key="cmp-average",
                        help="on: one point per configuration, mean and spread over seeds; off: one point per run")
    colours = F.colour_map(F.kind_of(sel))
    tabs = st.tabs(["Trade-offs", "Temperature", "Gap closed", "Energy", "Budgets", "Runs"])
    with tabs[0]:
        section_tradeoffs(sel, colours, average)
    with tabs[1]:
        section_temperature(sel)
    with tabs[2]:
        section_gap(sel)
    with tabs[3]:
        section_energy(sel)
    with tabs[4]:
        section_budgets(sel, str(store.home))
    with tabs[5]:
        section_table(sel)


main()
