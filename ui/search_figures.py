"""The Search page's figures and tables: trials on accuracy against a cost with the front and
the budget drawn, the validation curves with the pruned trials, and the front as a table."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core.analysis import pareto_frontier
from distill_core.search.costs import OBJECTIVES, budget_limit
from distill_core.search.report import Report, fmt_cost

# outcome -> (legend name, marker)
STYLE = {
    "complete": ("trained, fits", dict(color="#1f77b4", symbol="circle", size=9)),
    "over": ("trained, over the budget by its own measurement", dict(color="#ff7f0e", symbol="x", size=9)),
    "pruned": ("pruned (best validation accuracy before it was stopped)", dict(color="#9e9e9e", symbol="circle-open", size=9)),
    "running": ("training", dict(color="#1f77b4", symbol="circle-open", size=9)),
}


def _hover(rows: pd.DataFrame, key: str) -> list[str]:
    out = []
    for _, t in rows.iterrows():
        acc = "" if pd.isna(t["val_accuracy"]) else f"<br>validation {100 * t['val_accuracy']:.1f} %"
        test = "" if pd.isna(t["test_accuracy"]) else f", test {100 * t['test_accuracy']:.1f} %"
        why = f"<br>{t['reason']}" if t["reason"] else ""
        out.append(f"trial {int(t['number'])}: {t['label']}{acc}{test}<br>{fmt_cost(key, t[key])}{why}")
    return out


def trials_figure(r: Report, key: str) -> go.Figure:
    """Validation accuracy against one cost: every trained trial by its outcome, the front of
    the trials that fit, the budget's limit as a line, and underneath, the candidates rejected
    before training at their cost (they have no accuracy, so none is drawn)."""
    t = r.trials
    curve_best = t["curve"].map(lambda c: max(c) if c else float("nan"))
    y = t["val_accuracy"].where(t["val_accuracy"].notna(), curve_best)
    t = t.assign(y=y)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.86, 0.14], vertical_spacing=0.03)
    groups = {"complete": t[(t["outcome"] == "complete") & t["fits"].eq(True)],
              "over": t[(t["outcome"] == "complete") & ~t["fits"].eq(True)],
              "pruned": t[t["outcome"] == "pruned"],
              "running": t[t["outcome"].isin(["running", "stopped"]) & t["y"].notna()]}
    for name, rows in groups.items():
        rows = rows[rows[key].notna() & rows["y"].notna()]
        if len(rows):
            legend, marker = STYLE[name]
            fig.add_trace(go.Scatter(x=rows[key], y=rows["y"], mode="markers", name=legend, marker=marker,
                                     hovertext=_hover(rows, key), hoverinfo="text"), 1, 1)
    fits = groups["complete"][groups["complete"][key].notna()]
    if len(fits):
        front = pareto_frontier(fits, key, "val_accuracy")
        fig.add_trace(go.Scatter(x=front[key], y=front["val_accuracy"], mode="lines", line=dict(shape="hv", dash="dot", color="#1f77b4"),
                                 name="Pareto front (fits the budget)", hoverinfo="skip"), 1, 1)
    if r.best is not None and pd.notna(r.best.get(key)):
        fig.add_trace(go.Scatter(x=[r.best[key]], y=[r.best["val_accuracy"]], mode="markers", name="best student that fits",
                                 marker=dict(symbol="star", size=18, color="#2ca02c", line=dict(color="#111", width=1)),
                                 hovertext=_hover(pd.DataFrame([r.best]), key), hoverinfo="text"), 1, 1)
    rejected = t[t["outcome"] == "rejected"]
    if len(rejected):
        fig.add_trace(go.Scatter(x=rejected[key], y=["rejected"] * len(rejected), mode="markers",
                                 name="rejected before training (over the budget)",
                                 marker=dict(color="#d62728", symbol="line-ns-open", size=14),
                                 hovertext=_hover(rejected, key), hoverinfo="text"), 2, 1)
    limit = budget_limit(key, r.budget)
    if limit is not None:
        for row in (1, 2):
            fig.add_vline(x=limit, line=dict(color="#d62728", width=1.5, dash="dash"), row=row, col=1)
        fig.add_annotation(x=limit, y=1, yref="y domain", text=f"{r.budget_name} limit {fmt_cost(key, limit)}",
                           showarrow=False, xanchor="left", font=dict(color="#d62728"))
    cost = OBJECTIVES[key]
    fig.update_xaxes(type="log" if cost.log else "linear", title_text=cost.title, row=2, col=1)
    fig.update_yaxes(title_text="validation accuracy", tickformat=".0%", row=1, col=1)
    fig.update_yaxes(showticklabels=True, row=2, col=1)
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.18))
    return fig


def curves_figure(r: Report) -> go.Figure | None:
    """Validation accuracy per epoch: finished trials in blue, pruned ones in grey, each ending
    where it was stopped (the pruning made visible)."""
    t = r.trials[r.trials["curve"].map(len) > 0]
    if t.empty:
        return None
    fig = go.Figure()
    shown = set()
    for _, row in t.iterrows():
        pruned = row["outcome"] == "pruned"
        kind = "pruned" if pruned else ("finished" if row["outcome"] == "complete" else "training")
        colour = {"pruned": "#9e9e9e", "finished": "#1f77b4", "training": "#aec7e8"}[kind]
        epochs = list(range(1, len(row["curve"]) + 1))
        fig.add_trace(go.Scatter(x=epochs, y=row["curve"], mode="lines", line=dict(color=colour, width=1.5),
                                 name=kind, legendgroup=kind, showlegend=kind not in shown,
                                 hovertext=f"trial {int(row['number'])}: {row['label']}", hoverinfo="text+y"))
        shown.add(kind)
        if pruned:
            fig.add_trace(go.Scatter(x=[epochs[-1]], y=[row["curve"][-1]], mode="markers", showlegend=False,
                                     marker=dict(symbol="x", color="#d62728", size=10), legendgroup=kind,
                                     hovertext=f"trial {int(row['number'])} pruned: {row['reason']}", hoverinfo="text"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="epoch",
                      yaxis=dict(title="validation accuracy", tickformat=".0%"), legend=dict(orientation="h", y=-0.25))
    return fig


def front_table(r: Report) -> pd.DataFrame:
    """The front's members: student, method, accuracies, the scratch twin's test accuracy on the
    search's seed (one seed: the best student's spread over seeds is in the answer), costs."""
    rows = []
    for _, t in r.front.iterrows():
        scratch = r.twins.get(int(t["number"]))
        rows.append({"trial": int(t["number"]), "student · method": t["label"], "validation": t["val_accuracy"],
                     "test": t["test_accuracy"], "scratch twin (test)": scratch,
                     "distillation gave (1 seed)": None if scratch is None else t["test_accuracy"] - scratch,
                     **{OBJECTIVES[k].title: t[k] for k in r.objectives},
                     "detail": f"run_detail?run={int(t['run_id'])}"})
    return pd.DataFrame(rows)


FRONT_COLUMNS = {
    "validation": st.column_config.NumberColumn(format="percent"),
    "test": st.column_config.NumberColumn(format="percent"),
    "scratch twin (test)": st.column_config.NumberColumn(format="percent"),
    "distillation gave (1 seed)": st.column_config.NumberColumn(format="percent"),
    "detail": st.column_config.LinkColumn("run", display_text="open", help="Run detail: curves, figures, exports"),
}


def trials_table(r: Report) -> pd.DataFrame:
    t = r.trials
    return pd.DataFrame({"trial": t["number"], "outcome": t["outcome"], "student · method": t["label"],
                         "validation": t["val_accuracy"], "epochs": t["epochs"],
                         **{OBJECTIVES[k].title: t[k] for k in r.objectives}, "why": t["reason"],
                         "run": t["run_id"].map(lambda i: "" if pd.isna(i) else f"#{int(i)}")})
