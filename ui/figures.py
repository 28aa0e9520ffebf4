"""Figures and tables more than one page draws."""
from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core.constants import RUNNING
from distill_core.progress import progress_fraction, progress_text

from .format import fmt_seconds, status_label


def curves_figure(history: list[dict] | None = None, live: dict | None = None, title: str = ""):
    """Loss and validation accuracy side by side: from a finished run's per-epoch history, or
    from live curves (progress.curves_from_events)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation accuracy"))
    if history:
        epochs = [h["epoch"] for h in history]
        skip = {"epoch", "val_accuracy", "lr", "elapsed"}
        names = [k for k in history[0] if k not in skip]
        for k in names:
            fig.add_trace(go.Scatter(x=epochs, y=[h.get(k) for h in history], mode="lines", name=k,
                                     line=dict(width=3 if k == "loss" else 1.5)), 1, 1)
        fig.add_trace(go.Scatter(x=epochs, y=[h["val_accuracy"] for h in history], mode="lines+markers",
                                 name="val accuracy", marker=dict(size=4)), 1, 2)
        fig.update_xaxes(title_text="epoch")
    for phase, c in (live or {}).items():
        fig.add_trace(go.Scatter(x=c["step"], y=c["loss"], mode="lines", name=f"{phase} loss"), 1, 1)
        fig.add_trace(go.Scatter(x=c["epoch"], y=c["val_accuracy"], mode="lines+markers", name=f"{phase} val accuracy"), 1, 2)
        fig.update_xaxes(title_text="step", row=1, col=1)
        fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), title=title or None,
                      legend=dict(orientation="h", y=-0.25))
    return fig


def plot(fig, key: str | None = None) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def runs_table(runs: list[dict]):
    """Run summaries as a display frame (status, progress, accuracy, timing, error)."""
    now = time.time()
    rows = []
    for r in runs:
        started, finished = r.get("started"), r.get("finished")
        took = (finished or now) - started if started else None
        rows.append({
            "id": r["id"], "run": r["label"], "status": status_label(r["status"]),
            "progress": progress_fraction(r["status"], r.get("progress")),
            "now": progress_text(r["status"], r.get("progress")) if r["status"] == RUNNING else "",
            "accuracy": r.get("accuracy"), "time": fmt_seconds(took) if took is not None else "",
            "node": r.get("node") or "",
            "error": (r.get("error") or "").splitlines()[0][:160] if r.get("error") else "",
            "detail": f"run?run={r['id']}",
        })
    frame = pd.DataFrame(rows, columns=["id", "run", "status", "progress", "now", "accuracy", "time", "node", "error",
                                        "detail"])
    for col in ("now", "node", "error"):  # only when some run has one
        if not frame[col].astype(bool).any():
            frame = frame.drop(columns=col)
    return frame


RUNS_COLUMNS = {
    "id": st.column_config.NumberColumn("id", format="%d", width="small"),
    "status": st.column_config.TextColumn("status", width=95),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent", width=110),
    "accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
    "run": st.column_config.TextColumn("run", width="large"),
    "time": st.column_config.TextColumn("time", help="training time so far, or the whole run's"),
    "node": st.column_config.TextColumn("node", help="the machine that trains or trained the run (a Ray node, or this host)"),
    "detail": st.column_config.LinkColumn("detail", display_text="open", width="small"),
}


def show_runs_table(runs: list[dict], key: str | None = None, height: int | str = "auto") -> None:
    if not runs:
        st.caption("No runs yet.")
        return
    st.dataframe(runs_table(runs), hide_index=True, column_config=RUNS_COLUMNS, key=key, height=height, placeholder="")
