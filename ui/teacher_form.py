"""The New experiment page's teacher section: train one (a network, or a scikit-learn model on a
table), reuse a trained one, load uploaded weights, an ONNX model, a file of its outputs, or
several teachers as an ensemble. Every file is checked against the data set as soon as it is
given, and its message shows under it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from distill_core import teachers
from distill_core.config import ENSEMBLE, TEACHER_FILES, black_box
from distill_core.errors import DistillError
from distill_core.models import is_network
from distill_core.run_config import RunConfig
from distill_core.train_params import TRAIN_PARAMS

from . import forms, state
from .format import fmt_count, fmt_pct, fmt_time

NEW, REUSE, UPLOAD = "Train a new teacher", "Reuse a trained teacher", "Upload teacher weights"
ONNX, OUTPUTS, SEVERAL = "An ONNX model", "A file of its outputs", "Several teachers"
MODES = (NEW, REUSE, UPLOAD, ONNX, OUTPUTS, SEVERAL)
HIDDEN_TRAIN = ("threads", "device")  # from the Settings page
FILES = {"onnx": ("an ONNX model (.onnx)", ["onnx"]),
         "outputs": ("the teacher's outputs: an .npz (an array named logits or probabilities) or a .csv, one row per "
                     "sample in the data set's original order, one column per class", ["npz", "csv"])}
MEMBER_KINDS = {"train": "train a model", "onnx": "an ONNX model", "outputs": "a file of its outputs"}


@dataclass
class TeacherChoice:
    """What the section gives the page: the ExperimentSpec's teacher fields, and what the rest
    of the form needs to know about the teacher."""

    spec: dict | str | None = None  # ExperimentSpec.teacher
    members: list = field(default_factory=list)  # ExperimentSpec.teachers (an ensemble)
    ensemble: str = ENSEMBLE.default
    model: dict | None = None  # a lab network's spec, for the model table and the method checks
    without_network: str | None = None  # what the teacher is when it is not a lab network (see config.black_box)
    train: dict | None = None  # teacher training settings (None: the students')
    reuse: dict | None = None  # spec fields of a reused teacher


def keep_uploaded(file_key: str, path_key: str, error_key: str) -> None:
    """Upload callback: keep the file in <home>/uploads/ and put its path in the text box."""
    ss = st.session_state
    f = ss.get(file_key)
    if f is None:
        return
    try:
        ss[path_key] = str(forms.keep_upload(f, state.settings()["upload_mb"]))
        ss.pop(error_key, None)
    except DistillError as exc:
        ss[error_key] = str(exc)


def _file_teacher(prefix: str, key: str, dataset: str, knobs: dict, settings: dict, problem) -> dict | None:
    """Upload (or a path) of an ONNX or outputs file with its options; its teacher spec, checked
    against the data set, or None."""
    ss = st.session_state
    label, types = FILES[key]
    st.file_uploader(f"Upload {label} (at most {settings['upload_mb']} MB)", type=types, key=f"{prefix}_file",
                     on_change=keep_uploaded, args=(f"{prefix}_file", f"{prefix}_path", f"{prefix}_error"),
                     max_upload_size=int(settings["upload_mb"]))
    if ss.get(f"{prefix}_error"):
        problem(ss[f"{prefix}_error"])
    path = st.text_input("…or the path of the file on this machine", key=f"{prefix}_path")
    opts, errs = forms.param_form(TEACHER_FILES[key], f"{prefix}_opts", f"teacher {key}", skip=("max_mb",))
    for e in errs.values():
        problem(e, shown=False)
    if not path:
        problem(f"upload {label.split(':')[0]} or give its path", shown=False)
        return None
    if errs:
        return None
    spec = {key: path, **opts}
    p = Path(path)
    stamp = f"{p.stat().st_mtime_ns}-{p.stat().st_size}" if p.is_file() else ""
    got = state.cached_teacher_file(json.dumps(spec, sort_keys=True), dataset, json.dumps(knobs, sort_keys=True), stamp)
    if "error" in got:
        problem(got["error"])
        return None
    st.success(f"The file fits this data set: {got['note']}.", icon=":material/check_circle:")
    return spec


# An ensemble's members start as different models (the same teacher twice is refused).
MEMBER_DEFAULTS = {"vector": ("mlp-medium", forms.CUSTOM + "gradient-boosting", forms.CUSTOM + "random-forest"),
                   "other": ("cnn-large", "cnn-small", "mlp-medium")}


def _trained(prefix: str, kind: str | None, label: str, problem, default: str | None = None) -> dict | None:
    default = default or ("cnn-large" if kind in ("image", "signal") else "mlp-medium")
    model, errs = forms.model_picker(prefix, label, kind, default=default)
    for e in errs:
        problem(e, shown=False)
    return model


def teacher_section(mode: str, dataset: str, knobs: dict, kind: str | None, preview: dict | None, settings: dict,
                    problem) -> TeacherChoice:
    """Draw the chosen mode's widgets; `problem(message, shown=True)` records what blocks the
    launch (and shows it under the widget unless already shown)."""
    ss = st.session_state
    out = TeacherChoice()
    if mode == NEW:
        out.spec = _trained("ne_t", kind, "Teacher model", problem)
        if out.spec is not None and not is_network(out.spec):
            st.caption("A scikit-learn teacher is fitted on the training split; it is kept as an ONNX file (never a "
                       "pickle), and its log-probabilities are what the students learn from.")
    elif mode == REUSE:
        found = teachers.reusable(state.home(), dataset=dataset)
        if not found:
            st.info(f"No trained teacher for {dataset} yet: train a new one (it is cached and reused by later experiments).")
            problem("no trained teacher to reuse for this data set", shown=False)
        else:
            by_hash = {t["hash"]: t for t in found}
            pick = st.selectbox("Trained teacher", list(by_hash), key="ne_t_reuse",
                                format_func=lambda h: f"{by_hash[h]['model']} ({by_hash[h]['kind']}) · test accuracy "
                                                      f"{fmt_pct(by_hash[h]['test_accuracy'])} · {fmt_count(by_hash[h]['params'])} "
                                                      f"params · made {fmt_time(by_hash[h]['created'])}")
            out.reuse = by_hash[pick]["spec_fields"]
            out.spec = out.reuse.get("teacher")
            out.without_network = black_box(RunConfig.from_dict(by_hash[pick]["config"]))
            if out.reuse["dataset_knobs"] != knobs:
                st.caption("This teacher was made with other data set settings; the experiment uses its settings: "
                           + ", ".join(f"{k}={v}" for k, v in out.reuse["dataset_knobs"].items()))
    elif mode == UPLOAD:
        st.file_uploader(f"Teacher weights (.safetensors, or a .pt / .pth state dict; at most {settings['upload_mb']} MB)",
                         type=["safetensors", "pt", "pth"], key="ne_tw_file", on_change=keep_uploaded,
                         args=("ne_tw_file", "ne_tw_path", "ne_tw_error"), max_upload_size=int(settings["upload_mb"]))
        if ss.get("ne_tw_error"):
            problem(ss["ne_tw_error"])
        path = st.text_input("…or the path of a weight file on this machine", key="ne_tw_path")
        model, errs = forms.model_picker("ne_tu", "Architecture of these weights", kind, default="cnn-large")
        for e in errs:
            problem(e, shown=False)
        if not path:
            problem("upload the teacher's weights or give their path", shown=False)
        elif model is not None and preview is not None:
            try:
                teachers.check_weights(model, path, preview["input_shape"], preview["num_classes"])
                st.success("The weights fit this architecture.", icon=":material/check_circle:")
                out.spec = {"weights": path, "model": model}
            except DistillError as exc:
                problem(str(exc))
        out.model = model
    elif mode in (ONNX, OUTPUTS):
        out.spec = _file_teacher("ne_to" if mode == ONNX else "ne_tf", "onnx" if mode == ONNX else "outputs", dataset,
                                 knobs, settings, problem)
    else:
        _members(out, dataset, knobs, kind, settings, problem)
    out.without_network = _without(out, mode)
    if mode in (NEW, REUSE) and out.without_network is None:
        out.model = out.spec
    if mode in (NEW, SEVERAL):
        ss.setdefault("ne_t_same", True)
        if not st.checkbox("Train the teacher" + ("s" if mode == SEVERAL else "") + " with the students' settings (section 5)",
                           key="ne_t_same"):
            with st.container(border=True):
                st.caption("Teacher training (networks; a scikit-learn model has its own knobs above)")
                out.train, errs = forms.param_form(TRAIN_PARAMS, "ne_tt", "teacher training", skip=HIDDEN_TRAIN, columns=4)
                for e in errs.values():
                    problem(e, shown=False)
    return out


def _members(out: TeacherChoice, dataset: str, knobs: dict, kind: str | None, settings: dict, problem) -> None:
    """An ensemble: how many, each member's kind and its widgets, and how they combine."""
    ss = st.session_state
    ss.setdefault("ne_e_n", 3)
    a, b = st.columns(2)
    n = a.number_input("How many teachers", min_value=2, max_value=5, step=1, key="ne_e_n")
    out.ensemble = b.selectbox("Combined by", list(ENSEMBLE.choices), key="ne_e_rule", help=ENSEMBLE.help)
    st.caption("Each teacher is made and cached on its own and has a run of its own; the ensemble is a teacher "
               "like any other, shown with its members on Compare.")
    cols = st.columns(min(int(n), 3))
    for i in range(int(n)):
        with cols[i % len(cols)].container(border=True):
            how = st.selectbox(f"Teacher {i + 1}", list(MEMBER_KINDS), key=f"ne_e{i}_how", format_func=MEMBER_KINDS.get)
            if how == "train":
                defaults = MEMBER_DEFAULTS["vector" if kind == "vector" else "other"]
                spec = _trained(f"ne_e{i}", kind, "Model", problem, default=defaults[i % len(defaults)])
            else:
                spec = _file_teacher(f"ne_e{i}", how, dataset, knobs, settings, problem)
            if spec is None:
                problem(f"teacher {i + 1} of the ensemble is not complete", shown=False)
            out.members.append(spec)


def _without(out: TeacherChoice, mode: str) -> str | None:
    """What the teacher is when it is not a network of this lab (config.black_box's words)."""
    spec = out.spec
    if mode == SEVERAL:
        return "an ensemble"
    if mode == REUSE:
        return out.without_network
    if isinstance(spec, dict) and "onnx" in spec:
        return "an ONNX model"
    if isinstance(spec, dict) and "outputs" in spec:
        return "a file of outputs"
    if spec is None or isinstance(spec, dict) and "weights" in spec or is_network(spec):
        return None
    return "a scikit-learn model"
