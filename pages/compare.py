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
from plotly.subplots import make_subplots

from distill_core import analysis as A
from distill_core.measure.budgets import LATENCY_OF, SIZE_OF, load_profiles
from pages import common as C

LANDMARK_COLOURS = {"teacher": "#222222", "scratch": "#9e9e9e"}
PALETTE = px.colors.qualitative.Plotly
HOVER = ["label", "model", "method_label", "teacher", "dataset", "train.epochs", "train.lr", "seeds", "run_ids"]
MAX_ENERGY_RUNS = 40  # bars per energy chart; more are summed in the metrics, not drawn


def kind_of(frame: pd.DataFrame) -> pd.Series:
    """What colours a point: the teacher, the scratch student, or the method."""
    kind = frame["method"].fillna("?").astype(str)
    kind = kind.mask(frame["role"] != "student", frame["role"])
    return kind


def colour_map(kinds) -> dict:
    others = sorted(k for k in set(kinds) if k not in LANDMARK_COLOURS)
    return {**LANDMARK_COLOURS, **{k: PALETTE[i % len(PALETTE)] for i, k in enumerate(others)}}


def html_download(fig: go.Figure, name: str, key: str) -> None:
    """The figure as a standalone HTML file (made only when clicked; Plotly's own toolbar
    gives a PNG)."""
    st.download_button("Download figure (HTML)", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True),
                       file_name=f"{name}.html", mime="text/html", key=f"dl-{key}", type="tertiary",
                       icon=":material/download:")


def points(frame: pd.DataFrame, values: list[str], average: bool) -> pd.DataFrame:
    """What a trade-off plot draws: one row per run, or per configuration averaged over seeds
    (columns `<v>` hold the mean then, `<v>_std` the spread)."""
    if not average:
        out = frame.copy()
        out["seeds"] = out["seed"].map(lambda s: "" if pd.isna(s) else f"{s:g}")
        out["run_ids"] = out["run_id"].astype(str)
        out["n_seeds"] = 1
        for v in values:
            out[f"{v}_std"] = np.nan
        return out
    agg = A.aggregate_seeds(frame, values)
    for v in values:
        agg[v] = agg[f"{v}_mean"]
    if len(agg):  # a configuration's name, without the seed of its first run
        agg["label"] = np.where(agg["role"] == "student", agg["model"].astype(str) + " · " + agg["method_label"].astype(str),
                                agg["role"].astype(str) + " " + agg["model"].astype(str))
    return agg


SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "triangle-down", "pentagon", "hexagon"]


def trade_off_figure(pts: pd.DataFrame, column: str, title: str, colours: dict, average: bool) -> tuple[go.Figure, pd.DataFrame]:
    """Accuracy against one cost: a point per run (or configuration), coloured by method, shaped
    by student architecture, landmarks labelled, the Pareto frontier as a staircase. Returns the
    figure and the frontier's rows. (Built from graph objects: plotly express costs ~10x more.)"""
    d = pts[pts[column].notna() & pts["accuracy"].notna()]
    archs = sorted(d["arch"].fillna("?").unique())
    hover = [c for c in HOVER if c in d.columns and c != "label"]
    template = ("<b>%{hovertext}</b><br>" + title + ": %{x:.4g}<br>accuracy: %{y:.4f}"
                + ("<br>± %{error_y.array:.4f} over seeds" if average else "")
                + "".join(f"<br>{c.replace('_', ' ')}: %{{customdata[{i}]}}" for i, c in enumerate(hover)) + "<extra></extra>")
    fig = go.Figure()
    for (kind, arch), g in d.groupby([d["kind"], d["arch"].fillna("?")], sort=False):
        marker = dict(size=11, color=colours.get(kind), symbol=SYMBOLS[archs.index(arch) % len(SYMBOLS)],
                      line=dict(width=1, color="white"))
        if kind == "teacher":  # landmarks stand out: the teacher as a star, scratch students ringed
            marker.update(symbol="star", size=16)
        elif kind == "scratch":
            marker["line"] = dict(width=2, color="#616161")
        fig.add_trace(go.Scatter(
            x=g[column], y=g["accuracy"], mode="markers", name=f"{kind}, {arch}", legendgroup=f"{kind}, {arch}",
            marker=marker, hovertext=g["label"], customdata=g[hover].astype(str).to_numpy(), hovertemplate=template,
            error_y=dict(type="data", array=g["accuracy_std"], visible=True, thickness=1.2) if average else None))
    front = d[A.pareto_mask(d[column], d["accuracy"])].sort_values([column, "accuracy"], ascending=[True, False])
    if len(front):
        fig.add_trace(go.Scatter(x=front[column], y=front["accuracy"], mode="lines", line_shape="hv",
                                 line=dict(color="rgba(40,40,40,0.55)", dash="dot", width=2), name="Pareto frontier",
                                 hoverinfo="skip"))
    log = len(d) > 0 and bool((d[column] > 0).all()) and d[column].max() / d[column].min() > 20
    teachers = d[d["kind"] == "teacher"].sort_values("accuracy", ascending=False).drop_duplicates("model")
    for _, r in teachers.iterrows():  # a log axis places annotations by log10(x)
        fig.add_annotation(x=math.log10(r[column]) if log else r[column], y=r["accuracy"], text="teacher",
                           showarrow=True, arrowhead=0, ax=0, ay=-24, font=dict(size=11))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10), legend=dict(font=dict(size=11), orientation="h", y=-0.22, yanchor="top"),
                      title=dict(text=f"accuracy vs {title}", font=dict(size=15)),
                      xaxis=dict(type="log" if log else "linear", title=title), yaxis=dict(title="test accuracy"))
    return fig, front


def filters(frame: pd.DataFrame) -> pd.DataFrame:
    """Data set (one at a time: accuracies of different data sets do not share an axis),
    teacher, method and student."""
    c1, c2, c3, c4 = st.columns([1, 1.3, 1.3, 1.6])
    sets = frame["dataset"].dropna().value_counts().index.tolist()
    ds = c1.selectbox("Data set", sets, key="cmp-dataset")
    f = frame[frame["dataset"] == ds]
    teacher_name = f["teacher"].where(f["role"] == "student", f["model"])
    teachers = sorted(teacher_name.dropna().unique())
    pick_t = c2.multiselect("Teacher", teachers, default=teachers, key=f"cmp-teacher-{ds}")
    students = f[f["role"] == "student"]
    methods = sorted(students["method"].dropna().unique())
    pick_m = c3.multiselect("Method", methods, default=methods, key=f"cmp-method-{ds}",
                            help="scratch is the student trained without a teacher: the baseline")
    models = sorted(students["model"].dropna().unique())
    pick_s = c4.multiselect("Student", models, default=models, key=f"cmp-student-{ds}")
    keep = teacher_name.isin(pick_t) & ((f["role"] != "student") | (f["method"].isin(pick_m) & f["model"].isin(pick_s)))
    return f[keep]


def section_tradeoffs(sel: pd.DataFrame, colours: dict, average: bool) -> None:
    costs = A.cost_columns(sel)
    values = ["accuracy"] + [c["column"] for c in costs.values() if c["column"]]
    pts = points(sel, values, average)
    pts["kind"] = kind_of(pts)
    st.caption("Each point is " + ("a configuration, averaged over its seeds (bars: one standard deviation)"
                                   if average else "one run") +
               ". The teacher (star) and the scratch students (grey) are the landmarks; the dotted staircase is "
               "the Pareto frontier: no other run is both cheaper and more accurate.")
    cols = st.columns(2)
    for i, (key, c) in enumerate(costs.items()):
        cost = c["cost"]
        with cols[i % 2]:
            if c["column"] is None:
                st.markdown(f"**accuracy vs {cost.title}**")
                st.info(f"{cost.title}: unavailable. {c['reason']}", icon=":material/block:")
                continue
            fig, front = trade_off_figure(pts, c["column"], cost.title, colours, average)
            missing = int(pts[c["column"]].isna().sum())
            st.plotly_chart(fig, key=f"tradeoff-{key}", width="stretch")
            note = f"On the frontier: {'; '.join(front['label'].astype(str).head(4))}" + (" ..." if len(front) > 4 else "")
            if missing:
                note += f" · {missing} point(s) without this figure are left out (not drawn as 0)"
            st.caption(note)
            html_download(fig, f"tradeoff-{key}", key)


def student_colours(models) -> dict:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(models))}


def section_temperature(sel: pd.DataFrame) -> None:
    sweep = A.temperature_sweep(sel)
    if sweep.empty:
        st.info("No distilled student with a temperature in this selection. Run a temperature sweep "
                "(several temperatures on the New experiment page) to see how T changes what a student learns.")
        return
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", "agreement with the teacher"),
                        horizontal_spacing=0.08)
    dashes = ["solid", "dash", "dashdot", "longdash"]
    methods = list(dict.fromkeys(sweep["method"]))
    scratch = sel[(sel["role"] == "student") & (sel["method"] == "scratch")]
    colours = student_colours(list(sweep["model"]) + list(scratch["model"]))
    for (model, method), g in sweep.groupby(["model", "method"], sort=False):
        g = g.sort_values("temperature")
        name = f"{model} · {method}"
        style = dict(color=colours[model], dash=dashes[methods.index(method) % len(dashes)])
        for col, metric in ((1, "accuracy"), (2, "teacher_agreement")):
            fig.add_trace(go.Scatter(x=g["temperature"], y=g[f"{metric}_mean"], error_y=dict(array=g[f"{metric}_std"]),
                                     mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1, line=style,
                                     customdata=g[["n_seeds"]], hovertemplate="T=%{x}<br>%{y:.4f} (seeds: %{customdata[0]})"),
                          row=1, col=col)
    labelled = set()
    for _, t in sel[sel["role"] == "teacher"].drop_duplicates("hash").sort_values("accuracy", ascending=False).iterrows():
        label = {} if t["model"] in labelled else dict(annotation_text=f"teacher {t['model']}", annotation_position="top left")
        labelled.add(t["model"])
        fig.add_hline(y=t["accuracy"], line=dict(color="#222", width=1.5), row=1, col=1, **label)
    for model, g in scratch.groupby("model"):  # the scratch student: the same colour as its distilled curves, dotted
        for col, metric in ((1, "accuracy"), (2, "teacher_agreement")):
            if g[metric].notna().any():
                fig.add_hline(y=g[metric].mean(), line=dict(color=colours[model], dash="dot", width=1.5), row=1, col=col,
                              annotation_text=f"scratch {model}", annotation_position="bottom right",
                              annotation_font=dict(size=10, color=colours[model]))
    fig.update_xaxes(title="temperature T", type="log" if sweep["temperature"].max() / sweep["temperature"].min() > 8 else "linear")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
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
                     color_discrete_map=student_colours(gaps["model"]),
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
    start = C.load_settings()["country"]
    c1, c2 = st.columns([1, 3])
    country = c1.selectbox("Country for CO2eq", countries or [start], index=(countries.index(start) if start in countries else 0),
                           key="cmp-country", help="grid carbon intensity from CodeCarbon's offline energy-mix table")
    intensity, note = A.carbon_intensity(country)
    spent = long[~long["reused"]]
    saved = A.reuse_savings(sel, long)
    m1, m2, m3 = st.columns(3)
    m1.metric(f"Energy spent ({label})", C.fmt_energy(spent["kwh"].sum()))
    m2.metric(f"CO2eq in {country} ({label})",
              C.fmt_co2(spent["kwh"].sum() * intensity / 1000) if intensity is not None else "unavailable", help=note)
    if math.isnan(saved["saved_kwh"]):
        m3.metric("Saved by teacher and logit reuse", "none", help="no run reused a cached teacher")
    else:
        m3.metric("Saved by teacher and logit reuse", C.fmt_energy(saved["saved_kwh"]),
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
    table = A.budget_table(cands, p, name)
    best = A.best_that_fits(cands, p, table=table)
    if best is not None:
        st.success(f"Best that fits **{name}**: **{best['label']}**, accuracy {best['accuracy']:.4f} "
                   f"({int(best['params']):,} parameters).", icon=":material/check_circle:")
    else:
        st.warning(f"No selected run fits **{name}**.", icon=":material/block:")
    fits = table["fits"].map({True: "fits", False: "does not fit", None: "not measured"}).fillna("not measured")
    d = cands.assign(fits=fits.values, reason=table["reason"].values)
    size_col = {"fp32": "measure.size.fp32_bytes", "int8": "measure.size.int8_bytes", "onnx": "measure.size.onnx_bytes"}[p["size_of"]]
    x = size_col if size_col in d.columns and d[size_col].notna().any() else "params"
    d = d[d[x].notna()]
    fig = px.scatter(d, x=x, y="accuracy", color="fits", hover_name="label",
                     color_discrete_map={"fits": "#2e7d32", "does not fit": "#c62828", "not measured": "#9e9e9e"},
                     hover_data={"reason": True, x: True}, labels={x: {"params": "parameters"}.get(x, SIZE_OF[p["size_of"]] + " (bytes)")})
    fig.update_traces(marker=dict(size=10, line=dict(width=1, color="white")))
    if p.get("max_bytes") and x == size_col:
        fig.add_vline(x=p["max_bytes"], line=dict(color="#c62828", dash="dash"), annotation_text="size limit")
    if best is not None and best["run_id"] in set(d["run_id"]):
        fig.add_trace(go.Scatter(x=[best[x]], y=[best["accuracy"]], mode="markers", name="best that fits",
                                 marker=dict(size=22, symbol="circle-open", color="#2e7d32", line=dict(width=3))))
    fig.update_xaxes(type="log" if (d[x] > 0).all() and len(d) else "linear")
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key="budget", width="stretch")
    html_download(fig, "budget", "budget")


TABLE_COLUMNS = ["run_id", "label", "role", "model", "method", "temperature", "alpha", "seed", "accuracy",
                 "teacher_agreement", "teacher_accuracy", "params", "measure.size.fp32_bytes", "measure.size.int8_bytes",
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
    st.title("Compare")
    st.caption("What does a student give up, and what does it get? Accuracy against size, speed and energy, "
               "with the teacher and the scratch student as landmarks.")
    C.page_style()
    store = C.store()
    frame = A.add_training_energy(C.results_frame())
    state = store.queue_state()
    if frame.empty:
        st.info("No finished runs yet. Start the quick demo on the Home page or design an experiment; "
                "results appear here as runs finish.")
        return
    busy = state.get("running", 0) + state.get("queued", 0)
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
    colours = colour_map(kind_of(sel))
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
