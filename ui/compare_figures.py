"""The Compare page's figures: accuracy against each cost with the Pareto frontier, and the
temperature sweep. Plain functions from the results frame to Plotly figures."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from distill_core import analysis as A
from distill_core.constants import SCRATCH, STUDENT, TEACHER

MEMBER = "ensemble member"
LANDMARK_COLOURS = {TEACHER: "#222222", MEMBER: "#5d4037", SCRATCH: "#9e9e9e"}
PALETTE = px.colors.qualitative.Plotly
HOVER = ["label", "model", "method_label", "teacher", "teacher_kind", "member_of", "dataset", "train.epochs", "train.lr",
         "seeds", "run_ids"]


def kind_of(frame: pd.DataFrame) -> pd.Series:
    """What colours a point: the teacher, a member of an ensemble teacher, the scratch student,
    or the method."""
    kind = frame["method"].fillna("?").astype(str)
    kind = kind.mask(frame["role"] != STUDENT, frame["role"])
    if "member_of" in frame.columns:
        kind = kind.mask((frame["role"] != STUDENT) & frame["member_of"].notna(), MEMBER)
    return kind


def colour_map(kinds) -> dict:
    others = sorted(k for k in set(kinds) if k not in LANDMARK_COLOURS)
    return {**LANDMARK_COLOURS, **{k: PALETTE[i % len(PALETTE)] for i, k in enumerate(others)}}


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
        agg["label"] = np.where(agg["role"] == STUDENT, agg["model"].astype(str) + " · " + agg["method_label"].astype(str),
                                agg["role"].astype(str) + " " + agg["model"].astype(str))
    return agg


SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "triangle-down", "pentagon", "hexagon"]


def trade_off_figure(pts: pd.DataFrame, column: str, title: str, colours: dict, average: bool,
                     accuracy: str = "accuracy") -> tuple[go.Figure, pd.DataFrame]:
    """Accuracy (the `accuracy` column: the int8 model's for an int8 cost) against one cost: a
    point per run (or configuration), coloured by method, shaped by student architecture,
    landmarks labelled, the Pareto frontier as a staircase. Returns the figure and the frontier's
    rows. (Built from graph objects: plotly express costs ~10x more.)"""
    int8 = accuracy != "accuracy"
    d = pts[pts[column].notna() & pts[accuracy].notna()]
    d = d.assign(accuracy=d[accuracy], accuracy_std=d[f"{accuracy}_std"]) if int8 else d
    archs = sorted(d["arch"].fillna("?").unique())
    hover = [c for c in HOVER if c in d.columns and c != "label"]
    template = ("<b>%{hovertext}</b><br>" + title + ": %{x:.4g}<br>" + ("int8 accuracy" if int8 else "accuracy")
                + ": %{y:.4f}"
                + ("<br>± %{error_y.array:.4f} over seeds" if average else "")
                + "".join(f"<br>{c.replace('_', ' ')}: %{{customdata[{i}]}}" for i, c in enumerate(hover)) + "<extra></extra>")
    fig = go.Figure()
    for (kind, arch), g in d.groupby([d["kind"], d["arch"].fillna("?")], sort=False):
        marker = dict(size=11, color=colours.get(kind), symbol=SYMBOLS[archs.index(arch) % len(SYMBOLS)],
                      line=dict(width=1, color="white"))
        if kind == TEACHER:  # landmarks stand out: the teacher as a star, its members as open stars, scratch ringed
            marker.update(symbol="star", size=16)
        elif kind == MEMBER:
            marker.update(symbol="star-open", size=14, line=dict(width=2, color=colours.get(kind)))
        elif kind == SCRATCH:
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
    teachers = d[d["kind"].isin((TEACHER, MEMBER))].sort_values("accuracy", ascending=False).drop_duplicates("model")
    for _, r in teachers.iterrows():  # a log axis places annotations by log10(x)
        text = "member" if r["kind"] == MEMBER else "ensemble" if r.get("teacher_kind") == "ensemble" else "teacher"
        if r.get("costs_from_members") is True:
            text += " (sum of members)"
        fig.add_annotation(x=math.log10(r[column]) if log else r[column], y=r["accuracy"], text=text,
                           showarrow=True, arrowhead=0, ax=0, ay=-24, font=dict(size=11))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=40, b=10), legend=dict(font=dict(size=11), orientation="h", y=-0.22, yanchor="top"),
                      title=dict(text=f"{'int8 accuracy' if int8 else 'accuracy'} vs {title}", font=dict(size=15)),
                      xaxis=dict(type="log" if log else "linear", title=title),
                      yaxis=dict(title="test accuracy of the deployed int8 model" if int8 else "test accuracy"))
    return fig, front


def student_colours(models) -> dict:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(dict.fromkeys(models))}


def temperature_figure(sweep: pd.DataFrame, sel: pd.DataFrame) -> go.Figure:
    """Accuracy and agreement against T per student and method (analysis.temperature_sweep),
    with the teacher and each scratch student as horizontal lines."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("test accuracy", "agreement with the teacher"),
                        horizontal_spacing=0.08)
    dashes = ["solid", "dash", "dashdot", "longdash"]
    methods = list(dict.fromkeys(sweep["method"]))
    scratch = sel[(sel["role"] == STUDENT) & (sel["method"] == SCRATCH)]
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
    for _, t in sel[sel["role"] == TEACHER].drop_duplicates("hash").sort_values("accuracy", ascending=False).iterrows():
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
    return fig
