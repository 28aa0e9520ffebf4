"""The Run detail page's figures: confusion, accuracy per class, reliability, a sample's softened
predictions, energy per phase. Plain functions from a run's recorded figures to Plotly figures."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from distill_core.teaching import entropy

MARGIN = dict(l=10, r=10, t=40, b=10)
BLUE, ORANGE = "#3b6ea5", "#f0ad4e"


def confusion_figure(confusion: list[list[int]], names: list[str]) -> go.Figure:
    z = np.array(confusion)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=z, texttemplate="%{text}",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title="Confusion matrix (test)", xaxis_title="predicted", yaxis_title="true",
                      xaxis_type="category", yaxis_type="category",
                      yaxis_autorange="reversed", height=420, margin=MARGIN)
    return fig


def per_class_figure(names: list[str], per_class: list[float], scratch: list[float] | None) -> go.Figure:
    """Accuracy per class, with the scratch student's beside it when there is one."""
    fig = go.Figure(go.Bar(x=names, y=per_class, marker_color=BLUE, name="this model",
                           hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    if scratch is not None:
        fig.add_trace(go.Scatter(x=names, y=scratch, mode="markers", name="same student from scratch",
                                 marker=dict(size=22, symbol="line-ew", line=dict(width=3, color=ORANGE)),
                                 hovertemplate="scratch %{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(title="Accuracy per class", yaxis_tickformat=".0%", yaxis_range=[0, 1.02], height=420,
                      xaxis_type="category", margin=MARGIN, showlegend=scratch is not None,
                      legend=dict(orientation="h", y=-0.12))
    return fig


def reliability_figure(table: list[dict], ece: float) -> go.Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    mid = [(b["lo"] + b["hi"]) / 2 for b in table]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=mid, y=[b["accuracy"] for b in table], width=[b["hi"] - b["lo"] for b in table],
                         name="accuracy in bin", marker_color=BLUE, opacity=0.8,
                         customdata=[b["count"] for b in table],
                         hovertemplate="confidence %{x:.2f}: accuracy %{y:.1%} (%{customdata} samples)<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dash", color="grey")))
    fig.add_trace(go.Scatter(x=mid, y=[b["confidence"] for b in table], mode="markers", name="mean confidence",
                             marker=dict(color="#d9534f")))
    fig.update_layout(title=f"Reliability diagram (ECE {ece:.3f})", xaxis_title="confidence",
                      yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=420, bargap=0,
                      margin=MARGIN)
    return fig


def sample_figure(x: np.ndarray, kind: str, names: list[str], student: np.ndarray, teacher: np.ndarray | None,
                  truth: str) -> go.Figure:
    """One test sample beside the softened probabilities of the model (and of its teacher)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.08)
    if kind == "image":
        img = x.mean(0) if x.shape[0] != 1 else x[0]
        fig.add_trace(go.Heatmap(z=img, colorscale="gray_r", showscale=False, hoverinfo="skip"), 1, 1)
        fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False,
                         ticks="", row=1, col=1)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", row=1, col=1)
    elif kind == "signal":
        for ch in x:
            fig.add_trace(go.Scatter(y=ch, mode="lines", showlegend=False, line=dict(color="#555")), 1, 1)
    else:
        fig.add_trace(go.Bar(y=x.reshape(-1)[:32], showlegend=False, marker_color="#888"), 1, 1)
    if teacher is not None:
        fig.add_trace(go.Bar(x=names, y=teacher, name="teacher", marker_color=ORANGE), 1, 2)
    fig.add_trace(go.Bar(x=names, y=student, name="this model", marker_color=BLUE), 1, 2)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_xaxes(type="category", row=1, col=2)
    title = f"true {truth} · predicted {names[int(student.argmax())]} · entropy {entropy(student).item():.2f} bits"
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=230, barmode="group", showlegend=False,
                      margin=dict(l=5, r=5, t=35, b=5))
    return fig


def energy_figure(phases: list[str], kwh: list[float], reused: list[bool]) -> go.Figure:
    """Energy per measured phase; phases reused from the teacher cache in grey."""
    fig = go.Figure(go.Bar(x=phases, y=[k * 1e6 for k in kwh], marker_color=["#bbb" if r else "#5cb85c" for r in reused],
                           hovertemplate="%{x}: %{y:.3g} mWh<extra></extra>"))
    fig.update_layout(title="Energy per phase", yaxis_title="mWh", height=280, margin=MARGIN)
    return fig
