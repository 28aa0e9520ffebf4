"""The Learn page's figures: plain functions from logits and saved models' outputs to Plotly figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from distill_core import teaching

CLASS_COLOURS = px.colors.qualitative.Set1
MARGIN = dict(l=10, r=10, t=40, b=10)


def sample_figure(out: dict, i: int) -> go.Figure:
    """Test sample `i` of a teacher's outputs (saved_runs.teacher_test_outputs), drawn by kind of input."""
    x = out["x"][i]
    if out["kind"] == "image":
        shape = out["shape"]
        img = x.reshape(shape[-2], shape[-1]) if shape[0] == 1 else np.moveaxis(x.reshape(shape), 0, -1).mean(-1)
        fig = px.imshow(img, color_continuous_scale="gray_r")
        fig.update_layout(coloraxis_showscale=False)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    elif out["kind"] == "signal":
        fig = go.Figure(go.Scatter(y=x.reshape(-1), mode="lines"))
    elif x.size == 2:
        fig = px.scatter(x=out["x"][:, 0], y=out["x"][:, 1], color=[str(c) for c in out["y"]], opacity=0.25)
        fig.add_trace(go.Scatter(x=[x[0]], y=[x[1]], mode="markers", marker=dict(size=16, symbol="x", color="black"),
                                 name="this sample"))
    else:
        fig = go.Figure(go.Bar(y=x.reshape(-1)))
    fig.update_layout(height=230, margin=dict(l=0, r=0, t=10, b=0), showlegend=False)
    return fig


def softened_figure(classes: list, z: np.ndarray, T: float, title: str) -> go.Figure:
    """One sample's softmax at T (bars) against T = 1 (markers)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=classes, y=teaching.soften(z, T).numpy(), name=f"T = {T:g}", marker_color="#1f77b4"))
    fig.add_trace(go.Scatter(x=classes, y=teaching.soften(z, 1.0).numpy(), mode="markers", name="T = 1",
                             marker=dict(symbol="line-ew-open", size=26, color="#d62728", line=dict(width=2, color="#d62728"))))
    fig.update_layout(height=330, margin=MARGIN, yaxis_title="probability", title=title,
                      xaxis=dict(type="category"), legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return fig


def temperatures_figure(classes: list, z: np.ndarray, temps: list[float]) -> go.Figure:
    """One sample's softmax at several temperatures side by side, each with its entropy."""
    fig = make_subplots(rows=1, cols=len(temps), shared_yaxes=True,
                        subplot_titles=[f"T = {t:g} · H = {teaching.entropy(teaching.soften(z, t)).item():.2f} bits" for t in temps])
    for k, t in enumerate(temps):
        fig.add_trace(go.Bar(x=classes, y=teaching.soften(z, t).numpy(), marker_color="#1f77b4", showlegend=False),
                      row=1, col=k + 1)
    fig.update_xaxes(type="category")
    fig.update_layout(height=260, margin=MARGIN)
    return fig


def dark_figure(m: np.ndarray, classes: list, hide_diagonal: bool) -> go.Figure:
    """The dark-knowledge matrix (teaching.dark_knowledge) as a heat map."""
    shown = m.copy()
    if hide_diagonal:
        np.fill_diagonal(shown, np.nan)
    names = [str(c) for c in classes]
    fig = px.imshow(shown, x=names, y=names, color_continuous_scale="Blues", aspect="auto",
                    labels=dict(x="predicted class", y="true class", color="mean p"))
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(type="category"), yaxis=dict(type="category"))
    return fig


def loss_figure(sweep: list[dict], temps: np.ndarray, T: float, parts: dict, alpha: float) -> go.Figure:
    """The KD loss's soft term against T (teaching.kd_anatomy at each T), and what each term adds."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("the soft term against T", f"what each term adds at α = {alpha:g}"))
    fig.add_trace(go.Scatter(x=temps, y=[p["kl"] for p in sweep], name="KL alone", line=dict(dash="dot")), 1, 1)
    fig.add_trace(go.Scatter(x=temps, y=[p["soft"] for p in sweep], name="T²·KL"), 1, 1)
    fig.add_vline(x=T, line=dict(color="#888", dash="dash"), row=1, col=1)
    fig.add_trace(go.Bar(x=["α·soft", "(1−α)·hard"], y=[parts["weighted_soft"], parts["weighted_hard"]],
                         marker_color=["#1f77b4", "#ff7f0e"], showlegend=False), 1, 2)
    fig.update_xaxes(type="log", title="temperature T", row=1, col=1)
    fig.update_layout(height=340, margin=MARGIN, legend=dict(x=0.3, y=1))
    return fig


def boundary_figure(panels: list[tuple[str, dict]]) -> go.Figure:
    """Side by side, each model's predicted class and confidence over a 2-D grid (saved_runs.decision_surface)."""
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{name}<br>test accuracy {s['test_accuracy']:.3f}" for name, s in panels])
    for k, (name, s) in enumerate(panels):
        probs = s["probs"]
        cls, conf = probs.argmax(-1), probs.max(-1)
        ncls = probs.shape[-1]
        scale = [[i / max(1, ncls - 1), CLASS_COLOURS[i % len(CLASS_COLOURS)]] for i in range(ncls)] if ncls > 1 else None
        fig.add_trace(go.Heatmap(x=s["xs"], y=s["ys"], z=cls, colorscale=scale, zmin=0, zmax=max(1, ncls - 1),
                                 showscale=False, opacity=0.35, hoverinfo="skip"), 1, k + 1)
        fig.add_trace(go.Contour(x=s["xs"], y=s["ys"], z=conf, showscale=False, showlegend=False, contours=dict(coloring="none", start=0.6,
                                 end=0.9, size=0.15), line=dict(width=0.6, color="rgba(0,0,0,0.35)"), hoverinfo="skip"),
                      1, k + 1)
        x, y = s["x_train"], s["y_train"]
        idx = np.random.default_rng(0).choice(len(y), size=min(400, len(y)), replace=False)
        fig.add_trace(go.Scatter(x=x[idx, 0], y=x[idx, 1], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(size=5, color=[CLASS_COLOURS[c % len(CLASS_COLOURS)] for c in y[idx]],
                                             line=dict(width=0.5, color="white"))), 1, k + 1)
    fig.update_layout(height=400, margin=dict(l=10, r=10, t=60, b=10))
    return fig


def omitted_figure(curves: dict[str, pd.DataFrame], k: int, bias: float) -> go.Figure:
    """Accuracy on the omitted class and on all classes as a bias is added to its logit
    (teaching.class_bias_sweep), for the distilled and the scratch student."""
    fig = go.Figure()
    for name, c in curves.items():
        dash = "solid" if name == "distilled" else "dot"
        fig.add_trace(go.Scatter(x=c["bias"], y=c["class_accuracy"], name=f"{name}: class {k}", line=dict(dash=dash, color="#d62728")))
        fig.add_trace(go.Scatter(x=c["bias"], y=c["accuracy"], name=f"{name}: all classes", line=dict(dash=dash, color="#1f77b4")))
    fig.add_vline(x=bias, line=dict(color="#888", dash="dash"))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=f"bias added to class {k}",
                      yaxis_title="test accuracy", yaxis_tickformat=".0%")
    return fig
