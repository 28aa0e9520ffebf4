"""The Learn page's "What int8 does" tab: a student's weights on the int8 grid, and fp32, dynamic
int8, static int8 and QAD side by side, from a finished QAD run (its result holds all four). With
no QAD run in the store, a small one is offered as a background job."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core import saved_runs, teaching
from distill_core.config import ExperimentSpec
from distill_core.run_config import RunConfig

from . import state
from .format import fmt_bytes, fmt_ms
from .learn_jobs import launch, wait_for

DEMO = "int8-demo"
COLOURS = {"fp32": "#424242", "dynamic": "#90a4ae", "static": "#1e88e5", "qad": "#43a047"}
NAMES = {"fp32": "fp32", "dynamic": "dynamic int8", "static": "static int8 (PTQ)", "qad": "QAD int8"}


@st.cache_data(show_spinner="Reading the student's weights…", max_entries=16)
def layers(home: str, run_hash: str, _config: RunConfig) -> dict[str, np.ndarray]:
    return saved_runs.quantised_layers(_config, saved_runs.run_weights(home, _config))


def demo_spec(dataset: str, student: str) -> ExperimentSpec:
    """A CNN teacher, a KD student, and QAD from that student: a minute or two on digits."""
    return ExperimentSpec.from_dict(dict(
        name=DEMO, dataset=dataset, teacher={"arch": "cnn", "channels": [32, 64], "kernel": 3}, students=[student],
        methods=[{"name": "qad", "start": "kd"}], temperatures=[4.0], alphas=[0.9], seeds=[0], baseline=False,
        train={"epochs": 30 if dataset == "digits" else 10, "batch_size": 64, "lr": 0.003}))


def offer_demo() -> None:
    st.info("No QAD run in the store yet. QAD fine-tunes a trained student as the int8 model it deploys as; its run "
            "measures the student in fp32, in dynamic and static int8, and after QAD.")
    with st.form("int8-demo"):
        c1, c2 = st.columns(2)
        dataset = c1.selectbox("Data set", ["digits", "mnist-5k"], key="int8-demo-ds")
        student = c2.selectbox("Student", ["cnn-small", "mobile-0.5", "mlp-small"], key="int8-demo-student")
        if st.form_submit_button("Train a student and quantise it", icon=":material/play_arrow:"):
            launch(demo_spec(dataset, student), "int8-demo-exp")
    if st.session_state.get("int8-demo-exp") and wait_for(st.session_state["int8-demo-exp"], "int8 demo"):
        st.rerun()


def grid_figure(w: np.ndarray, grid: dict, channel: int, zoom: bool) -> go.Figure:
    """One output channel's weights (histogram) and the int8 values it can take (ticks)."""
    row, step = w[channel].reshape(-1), grid["step"][channel]
    fig = go.Figure(go.Histogram(x=row, nbinsx=min(200, max(20, row.size // 4)), marker_color="#1e88e5",
                                 name="fp32 weights", opacity=0.8))
    lo, hi = (-12 * step, 12 * step) if zoom else (-127 * step, 127 * step)
    ticks = np.arange(np.ceil(lo / step), np.floor(hi / step) + 1) * step
    fig.add_trace(go.Scatter(x=ticks, y=np.zeros_like(ticks), mode="markers", name="int8 grid",
                             marker=dict(symbol="line-ns-open", size=14, color="#c62828", line=dict(width=1)),
                             hovertemplate="%{x:.4g}<extra>int8 value</extra>"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), bargap=0.02, legend=dict(orientation="h", y=1.12),
                      xaxis=dict(title="weight", range=[lo * 1.05, hi * 1.05]), yaxis=dict(title="weights"))
    return fig


def variants_figure(table: pd.DataFrame) -> go.Figure:
    fig = make_subplots(rows=1, cols=3, subplot_titles=("test accuracy", "file (bytes)", "batch-1 latency (ms)"),
                        horizontal_spacing=0.09)
    names = [NAMES[v] for v in table["variant"]]
    colours = [COLOURS[v] for v in table["variant"]]
    for col, key in ((1, "accuracy"), (2, "bytes"), (3, "batch1_ms")):
        fig.add_trace(go.Bar(x=names, y=table[key], marker_color=colours, showlegend=False,
                             hovertemplate="%{x}: %{y:.4g}<extra></extra>"), row=1, col=col)
    lo = np.nanmin(table["accuracy"]) if table["accuracy"].notna().any() else 0.0
    fig.update_yaxes(range=[max(0.0, lo - 0.05), 1.0], row=1, col=1)
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def section_int8(frame: pd.DataFrame) -> None:
    st.markdown("A device runs a network in **int8**: each weight is rounded to one of 255 values, and each "
                "activation too. **Dynamic** int8 rounds the weights and measures each activation's range as it "
                "runs; **static** int8 (what phones and microcontrollers run) fixes every range beforehand from "
                "training samples; **QAD** fine-tunes the student with that rounding in the loop, distilled from the "
                "fp32 model, so it learns weights and ranges that survive it.")
    runs = frame[(frame["method"] == "qad")] if "method" in frame.columns else frame.iloc[:0]
    if runs.empty:
        offer_demo()
        return
    labels = {int(r["run_id"]): f"#{r['run_id']} · {r['dataset']} · {r['model']} · {r['method_label']}"
              for _, r in runs.sort_values("run_id", ascending=False).iterrows()}
    rid = st.selectbox("QAD run", list(labels), format_func=labels.get, key="int8-run")
    run = state.get_run(rid)
    result = (run or {}).get("result") or {}
    table = teaching.int8_variants(result)
    st.plotly_chart(variants_figure(table), key="int8-variants")
    shown = table.assign(variant=table["variant"].map(NAMES), bytes=table["bytes"].map(fmt_bytes),
                         batch1_ms=table["batch1_ms"].map(fmt_ms))
    st.dataframe(shown.rename(columns={"change_pts": "change (points)", "batch1_ms": "batch 1",
                                       "samples_per_s": "samples/s (batch)"}), hide_index=True,
                 column_config={"accuracy": st.column_config.NumberColumn(format="%.4f"),
                                "change (points)": st.column_config.NumberColumn(format="%+.2f"),
                                "samples/s (batch)": st.column_config.NumberColumn(format="%.0f")})
    st.caption("One seed: a difference of a point or two on a small test set is within its noise. Latency: ONNX "
               f"Runtime on this machine, {(result.get('measure') or {}).get('threads')} thread(s). The fp32, dynamic "
               "and static figures are those of the fp32 student the QAD run started from.")
    start = RunConfig.from_dict(run["config"]).start if run else None
    if start is None:
        return
    try:
        weights = layers(str(state.home()), start.hash, start)
    except FileNotFoundError as exc:
        st.warning(f"The student's weights are gone: {exc}")
        return
    st.markdown("**The int8 grid.** Per output channel, static int8 keeps 255 evenly spaced values, a step of "
                "max |w| / 127 apart; every weight is stored as the nearest one.")
    c1, c2, c3 = st.columns([2, 1, 1])
    name = c1.selectbox("Layer", list(weights), key="int8-layer")
    w = weights[name]
    grid = teaching.int8_grid(w)
    channel = c2.number_input("Output channel", 0, len(w) - 1, int(np.argmax(grid["step"])), key="int8-channel",
                              help="the default is the channel with the coarsest step")
    zoom = c3.toggle("Zoom on ±12 steps", value=True, key="int8-zoom")
    st.plotly_chart(grid_figure(w, grid, int(channel), zoom), key="int8-grid")
    st.caption(f"Step {grid['step'][int(channel)]:.3g}; this channel's {w[int(channel)].size} weights use "
               f"{grid['levels_used'][int(channel)]} of the 255 values; the largest rounding error in this layer is "
               f"{grid['max_error_steps']:.2f} step (never more than half).")
