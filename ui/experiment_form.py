"""The New experiment page's form state: filling it from a preset or a file, the upload
callbacks, and the figures of its data and model sections."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core.config import ExperimentSpec
from distill_core.constants import SCRATCH
from distill_core.data import DATASETS
from distill_core.errors import DistillError
from distill_core.estimates import compare_to_teacher, spec_key
from distill_core.methods import METHODS
from distill_core.presets import PRESETS
from distill_core.train_params import TRAIN_PARAMS

from distill_core.config import TEACHER_FILES

from . import figures, forms, state
from .format import fmt_bytes, fmt_count, fmt_ratio
from .teacher_form import NEW, ONNX, OUTPUTS, SEVERAL, UPLOAD

MAIN_TRAIN = ("epochs", "batch_size", "lr")
USER_DATA = {".csv": "csv", ".npz": "npz", ".zip": "images"}
DEFAULTS = {"ne_temps": "4", "ne_alphas": "0.9", "ne_seeds": "0", "ne_t_mode": "list", "ne_t_from": 1.0, "ne_t_to": 8.0,
            "ne_t_count": 4, "ne_t_log": True, "ne_name": ""}
MARGIN = dict(l=10, r=10, t=40, b=10)


# -- loading a preset or a file into the form (callbacks: they run before the widgets) -------


def load_spec(d: dict) -> None:
    """Put an experiment into the form's session state; a ConfigError names what does not fit."""
    ss = st.session_state
    spec = ExperimentSpec.from_dict(d)
    DATASETS.get(spec.dataset)  # an unknown data set or method: ConfigError naming the known ones
    methods = [m if isinstance(m, dict) else {"name": m} for m in spec.methods]
    for m in methods:
        METHODS.get(m.get("name"))
    ss["ne_dataset"] = spec.dataset
    forms.set_param_values(DATASETS.get(spec.dataset).params, f"ne_ds_{spec.dataset}", spec.dataset_knobs or {})
    teacher = spec.teacher
    if spec.teachers:
        ss["ne_teacher_mode"], ss["ne_e_n"], ss["ne_e_rule"] = SEVERAL, len(spec.teachers), spec.ensemble
        for i, member in enumerate(spec.teachers):
            key = _file_key(member)
            ss[f"ne_e{i}_how"] = key or "train"
            _set_teacher(f"ne_e{i}", key, member)
    elif isinstance(teacher, dict) and "weights" in teacher:
        ss["ne_teacher_mode"] = UPLOAD
        ss["ne_tw_path"] = str(teacher["weights"])
        forms.set_model_state("ne_tu", teacher.get("model"))
    else:
        key = _file_key(teacher)
        ss["ne_teacher_mode"] = {"onnx": ONNX, "outputs": OUTPUTS}.get(key, NEW)
        _set_teacher({"onnx": "ne_to", "outputs": "ne_tf"}.get(key, "ne_t"), key, teacher)
    ss["ne_t_same"] = spec.teacher_train is None
    if spec.teacher_train is not None:
        forms.set_param_values(TRAIN_PARAMS, "ne_tt", spec.teacher_train)
    ss["ne_n_students"] = max(1, len(spec.students))
    for i, student in enumerate(spec.students):
        forms.set_model_state(f"ne_s{i}", student)
    ss["ne_methods"] = [m["name"] for m in methods if m["name"] != SCRATCH]
    for m in methods:
        forms.set_param_values(METHODS.get(m["name"]).params, f"ne_m_{m['name']}", m)
    ss["ne_baseline"] = bool(spec.baseline or any(m["name"] == SCRATCH for m in methods))
    ss["ne_t_mode"] = "list"
    ss["ne_temps"] = ", ".join(f"{float(t):g}" for t in spec.temperatures)
    ss["ne_alphas"] = ", ".join(f"{float(a):g}" for a in spec.alphas)
    ss["ne_seeds"] = ", ".join(str(x) for x in spec.seeds)
    forms.set_param_values(TRAIN_PARAMS, "ne_tr", spec.train or {})
    ss["ne_name"] = spec.name or ""
    ss.pop("ne_launched", None)


def _file_key(teacher) -> str | None:
    """"onnx" or "outputs" for a teacher given as a file, else None."""
    return next((k for k in TEACHER_FILES if isinstance(teacher, dict) and k in teacher), None)


def _set_teacher(prefix: str, key: str | None, teacher) -> None:
    """A teacher's widgets: its file and options, or its model picker."""
    if key:
        st.session_state[f"{prefix}_path"] = str(teacher[key])
        forms.set_param_values(TEACHER_FILES[key], f"{prefix}_opts", teacher)
    else:
        forms.set_model_state(prefix, teacher)


def load_preset() -> None:
    name = st.session_state.get("ne_preset")
    try:
        load_spec(PRESETS[name]["spec"])
        st.session_state["ne_note"] = ("success", f"Loaded the preset {name}.")
    except DistillError as exc:
        st.session_state["ne_note"] = ("error", f"preset {name}: {exc}")


def load_file() -> None:
    f = st.session_state.get("ne_json_file")
    if f is None:
        return
    try:
        load_spec(json.loads(f.getvalue().decode("utf-8")))
        st.session_state["ne_note"] = ("success", f"Loaded {f.name}.")
    except (ValueError, UnicodeDecodeError) as exc:
        st.session_state["ne_note"] = ("error", f"{f.name}: not valid JSON ({exc})")
    except DistillError as exc:
        st.session_state["ne_note"] = ("error", f"{f.name}: {exc}")


def data_uploaded() -> None:
    ss = st.session_state
    f = ss.get("ne_data_file")
    if f is None:
        return
    ext = "." + f.name.lower().rsplit(".", 1)[-1] if "." in f.name else ""
    if ext not in USER_DATA:
        ss["ne_data_error"] = f"{f.name}: use a .csv table, a .npz file or a .zip of image folders"
        return
    try:
        path = forms.keep_upload(f, state.settings()["upload_mb"])
    except DistillError as exc:
        ss["ne_data_error"] = str(exc)
        return
    name = USER_DATA[ext]
    ss["ne_dataset"] = name
    ss[forms.widget_key(f"ne_ds_{name}", "path")] = str(path)
    ss.pop("ne_data_error", None)


# -- what the sections show -----------------------------------------------------------------------


def _samples_figure(p: dict) -> go.Figure | None:
    """A few training samples drawn by kind of input (a table when they are plain vectors)."""
    x, labels, names = p["samples"], p["sample_labels"], p["class_names"]
    if p.get("points") is not None:
        pts, y = p["points"], np.array(p["point_labels"])
        fig = go.Figure([go.Scatter(x=pts[y == k, 0], y=pts[y == k, 1], mode="markers", name=names[k], marker=dict(size=4))
                         for k in range(p["num_classes"])])
        fig.update_layout(title="Training points", height=300, margin=MARGIN)
        return fig
    if p["kind"] == "image" and len(x):
        n = min(len(x), 20)
        cols = 10 if n > 10 else n
        rows = -(-n // cols)
        fig = make_subplots(rows=rows, cols=cols, subplot_titles=[names[labels[i]] for i in range(n)],
                            horizontal_spacing=0.01, vertical_spacing=0.08)
        for i in range(n):
            img = x[i].mean(0) if x[i].shape[0] != 1 else x[i][0]
            fig.add_trace(go.Heatmap(z=img, colorscale="gray_r", showscale=False, hoverinfo="skip"), i // cols + 1, i % cols + 1)
            fig.update_yaxes(scaleanchor="x" if i == 0 else f"x{i + 1}", row=i // cols + 1, col=i % cols + 1)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
        fig.update_layout(title="Samples", height=70 + 70 * rows, margin=dict(l=10, r=10, t=50, b=10))
        fig.update_annotations(font_size=10)
        return fig
    if p["kind"] == "signal" and len(x):
        fig = go.Figure([go.Scatter(y=x[i][0], mode="lines", name=names[labels[i]], opacity=0.8) for i in range(min(len(x), 10))])
        fig.update_layout(title="Sample signals", height=300, margin=MARGIN)
        return fig
    return None


def draw_preview(p: dict) -> None:
    """A data set's sizes, samples per class and split, and a few samples (previews.data_preview)."""
    sizes = p["sizes"]
    st.caption(f"{p['kind']} inputs of shape {tuple(p['input_shape'])}, {p['num_classes']} classes; "
               f"{sizes['train']:,} training, {sizes['val']:,} validation and {sizes['test']:,} test samples"
               + (f". Source: {p['source']}" if p.get("source") else ""))
    left, right = st.columns(2)
    with left:
        fig = go.Figure([go.Bar(name=split, x=p["class_names"], y=p["counts"][split]) for split in ("train", "val", "test")])
        fig.update_layout(barmode="stack", title="Samples per class", height=300, margin=MARGIN,
                          legend=dict(orientation="h", y=-0.2), xaxis_type="category")
        figures.plot(fig, key="ne_counts")
    with right:
        fig = _samples_figure(p)
        if fig is not None:
            figures.plot(fig, key="ne_samples")
        else:
            st.markdown("**Samples**")
            x, labels, names = p["samples"], p["sample_labels"], p["class_names"]
            flat = x.reshape(len(x), -1)[:10, :20]
            table = pd.DataFrame(flat, columns=[f"x{j}" for j in range(flat.shape[1])]).assign(label=[names[k] for k in labels[:10]])
            st.dataframe(table, hide_index=True)


def model_table(models: list[tuple[str, dict | None]], shape: tuple, k: int, problems: dict) -> dict[str, dict]:
    """Parameters, FLOPs and compression of the teacher and students before training, as a table;
    returns their summaries by spec key (for the time estimate). A model that cannot be built
    for this data set is a problem of its section."""
    summaries, rows, t_sum = {}, [], None
    for who, m in models:
        if m is None:
            continue
        try:
            summ = state.cached_model_summary(json.dumps(m, sort_keys=True), shape, k)
        except DistillError as exc:
            st.error(f"{who}: {exc}", icon=":material/error:")
            problems.setdefault("students" if who != "teacher" else "teacher", []).append(f"{who}: {exc}")
            continue
        summaries[spec_key(m)] = summ
        if who == "teacher":
            t_sum = summ
        ratio = compare_to_teacher(summ, t_sum) if t_sum is not None and who != "teacher" else {}
        rows.append({"model": who, "architecture": summ["label"], "parameters": fmt_count(summ["params"]),
                     "FLOPs / sample": fmt_count(summ["flops"]), "fp32 weights (about)": fmt_bytes(summ["fp32_bytes_estimate"]),
                     "smaller than teacher": fmt_ratio(ratio.get("compression")) if who != "teacher" else "",
                     "fewer FLOPs": fmt_ratio(ratio.get("flops_reduction")) if who != "teacher" else ""})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.caption("Before training: parameters and FLOPs of the models as built for this data set; bytes are 4 per parameter.")
    return summaries
