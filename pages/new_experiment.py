"""New experiment: design a distillation experiment without code, check it, launch it.

Every form here is generated from the registries (data sets, architectures, methods, training
settings), so a new method or data set appears without a change to this page. Each widget's
value is checked by its own Param and a bad one shows its message underneath; nothing is
queued until the whole experiment validates.
"""
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core.config import ExperimentSpec
from distill_core.data import DATASETS
from distill_core.engine.train import TRAIN_PARAMS
from distill_core.errors import ConfigError, DistillError
from distill_core.methods import METHODS
from distill_core.methods.base import ALPHA, TEMPERATURE
from distill_core.presets import PRESETS
from distill_core.report import calibration, compare_to_teacher, estimate_runs, estimate_train_seconds, spec_key
from pages import common as c

NEW, REUSE, UPLOAD = "Train a new teacher", "Reuse a trained teacher", "Upload teacher weights"
MAIN_TRAIN = ("epochs", "batch_size", "lr")
HIDDEN_TRAIN = ("threads", "device")  # from the Settings page
USER_DATA = {".csv": "csv", ".npz": "npz", ".zip": "images"}

c.page_style()
s = c.store()
DEFAULTS = {"ne_temps": "4", "ne_alphas": "0.9", "ne_seeds": "0", "ne_t_mode": "list", "ne_t_from": 1.0, "ne_t_to": 8.0,
            "ne_t_count": 4, "ne_t_log": True, "ne_name": ""}
for key, value in DEFAULTS.items():  # defaults through session state, so a loaded file can replace them
    st.session_state.setdefault(key, value)
settings = c.load_settings()
ss = st.session_state
st.title("New experiment")


def swept(p) -> bool:
    """Knobs shared by the temperature and alpha sweeps below (same meaning in every method)."""
    return p == TEMPERATURE or p == ALPHA


# -- loading a preset or a file into the form (callbacks: they run before the widgets) -------
def load_spec(d: dict) -> None:
    spec = ExperimentSpec.from_dict(d)
    if spec.dataset not in DATASETS:
        raise ConfigError(f"unknown data set {spec.dataset!r}; available: {', '.join(DATASETS.names())}")
    methods = [m if isinstance(m, dict) else {"name": m} for m in spec.methods]
    for m in methods:
        METHODS.get(m.get("name"))  # an unknown method: ConfigError naming the known ones
    ss["ne_dataset"] = spec.dataset
    c.set_param_values(DATASETS.get(spec.dataset).params, f"ne_ds_{spec.dataset}", spec.dataset_knobs or {})
    teacher = spec.teacher
    if isinstance(teacher, dict) and "weights" in teacher:
        ss["ne_teacher_mode"] = UPLOAD
        ss["ne_tw_path"] = str(teacher["weights"])
        c.set_model_state("ne_tu", teacher.get("model"))
    else:
        ss["ne_teacher_mode"] = NEW
        c.set_model_state("ne_t", teacher)
    ss["ne_t_same"] = spec.teacher_train is None
    if spec.teacher_train is not None:
        c.set_param_values(TRAIN_PARAMS, "ne_tt", spec.teacher_train)
    ss["ne_n_students"] = max(1, len(spec.students))
    for i, student in enumerate(spec.students):
        c.set_model_state(f"ne_s{i}", student)
    ss["ne_methods"] = [m["name"] for m in methods if m["name"] != "scratch"]
    for m in methods:
        c.set_param_values(METHODS.get(m["name"]).params, f"ne_m_{m['name']}", m)
    ss["ne_baseline"] = bool(spec.baseline or any(m["name"] == "scratch" for m in methods))
    ss["ne_t_mode"] = "list"
    ss["ne_temps"] = ", ".join(f"{float(t):g}" for t in spec.temperatures)
    ss["ne_alphas"] = ", ".join(f"{float(a):g}" for a in spec.alphas)
    ss["ne_seeds"] = ", ".join(str(x) for x in spec.seeds)
    c.set_param_values(TRAIN_PARAMS, "ne_tr", spec.train or {})
    ss["ne_name"] = spec.name or ""
    ss.pop("ne_launched", None)


def load_preset() -> None:
    name = ss.get("ne_preset")
    try:
        load_spec(PRESETS[name]["spec"])
        ss["ne_note"] = ("success", f"Loaded the preset {name}.")
    except DistillError as exc:
        ss["ne_note"] = ("error", f"preset {name}: {exc}")


def load_file() -> None:
    f = ss.get("ne_json_file")
    if f is None:
        return
    try:
        data = json.loads(f.getvalue().decode("utf-8"))
        load_spec(data)
        ss["ne_note"] = ("success", f"Loaded {f.name}.")
    except (ValueError, UnicodeDecodeError) as exc:
        ss["ne_note"] = ("error", f"{f.name}: not valid JSON ({exc})")
    except DistillError as exc:
        ss["ne_note"] = ("error", f"{f.name}: {exc}")


def data_uploaded() -> None:
    f = ss.get("ne_data_file")
    if f is None:
        return
    ext = "." + f.name.lower().rsplit(".", 1)[-1] if "." in f.name else ""
    if ext not in USER_DATA:
        ss["ne_data_error"] = f"{f.name}: use a .csv table, a .npz file or a .zip of image folders"
        return
    try:
        path = c.save_upload(f, c.load_settings()["upload_mb"])
    except DistillError as exc:
        ss["ne_data_error"] = str(exc)
        return
    name = USER_DATA[ext]
    ss["ne_dataset"] = name
    ss[c.widget_key(f"ne_ds_{name}", "path")] = str(path)
    ss.pop("ne_data_error", None)


def weights_uploaded() -> None:
    f = ss.get("ne_tw_file")
    if f is None:
        return
    try:
        ss["ne_tw_path"] = str(c.save_upload(f, c.load_settings()["upload_mb"]))
        ss.pop("ne_tw_error", None)
    except DistillError as exc:
        ss["ne_tw_error"] = str(exc)


with st.expander("Start from a preset or an experiment file", expanded=False):
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.selectbox("Preset", list(PRESETS), key="ne_preset", format_func=lambda n: f"{n}: {PRESETS[n]['description']}")
    b.button("Load preset", on_click=load_preset, key="ne_load_preset")
    st.file_uploader("…or load an experiment saved as JSON", type=["json"], key="ne_json_file", on_change=load_file)
note = ss.pop("ne_note", None)
if note:
    getattr(st, note[0])(note[1])

problems: dict[str, list[str]] = {}  # section -> messages (each also shown under its widget)

# -- 1. data -------------------------------------------------------------------------------------
st.header("1 · Data")
names = DATASETS.names()
if ss.get("ne_dataset") not in names:
    ss["ne_dataset"] = "digits"
dataset = st.selectbox("Data set", names, key="ne_dataset", format_func=lambda n: f"{n}: {DATASETS.get(n).description}")
entry = DATASETS.get(dataset)
user_file = entry.extra.get("user_file", False)
st.file_uploader(f"Upload your own data: a CSV table, an NPZ file or a zipped folder of images (at most {settings['upload_mb']} MB)",
                 type=["csv", "npz", "zip"], key="ne_data_file", on_change=data_uploaded,
                 max_upload_size=int(settings["upload_mb"]))
if ss.get("ne_data_error"):
    st.error(ss["ne_data_error"], icon=":material/error:")
    problems.setdefault("data", []).append(ss["ne_data_error"])
with st.expander("Data set settings", expanded=user_file):
    ds_knobs, ds_errors = c.param_form(entry.params, f"ne_ds_{dataset}", f"data set {dataset}")
problems.setdefault("data", []).extend(ds_errors.values())

preview = None
if not ds_errors:
    try:
        preview = c.cached_preview(dataset, json.dumps(ds_knobs, sort_keys=True))
    except DistillError as exc:
        st.error(str(exc), icon=":material/error:")
        problems.setdefault("data", []).append(str(exc))


def draw_preview(p: dict) -> None:
    sizes = p["sizes"]
    st.caption(f"{p['kind']} inputs of shape {tuple(p['input_shape'])}, {p['num_classes']} classes; "
               f"{sizes['train']:,} training, {sizes['val']:,} validation and {sizes['test']:,} test samples"
               + (f". Source: {p['source']}" if p.get("source") else ""))
    left, right = st.columns(2)
    with left:
        fig = go.Figure([go.Bar(name=split, x=p["class_names"], y=p["counts"][split]) for split in ("train", "val", "test")])
        fig.update_layout(barmode="stack", title="Samples per class", height=300, margin=dict(l=10, r=10, t=40, b=10),
                          legend=dict(orientation="h", y=-0.2), xaxis_type="category")
        c.plot(fig, key="ne_counts")
    with right:
        x, labels = p["samples"], p["sample_labels"]
        names_ = p["class_names"]
        if p.get("points") is not None:
            pts, y = p["points"], np.array(p["point_labels"])
            fig = go.Figure([go.Scatter(x=pts[y == k, 0], y=pts[y == k, 1], mode="markers", name=names_[k], marker=dict(size=4))
                             for k in range(p["num_classes"])])
            fig.update_layout(title="Training points", height=300, margin=dict(l=10, r=10, t=40, b=10))
        elif p["kind"] == "image" and len(x):
            n = min(len(x), 20)
            cols = 10 if n > 10 else n
            rows = -(-n // cols)
            fig = make_subplots(rows=rows, cols=cols, subplot_titles=[names_[labels[i]] for i in range(n)],
                                horizontal_spacing=0.01, vertical_spacing=0.08)
            for i in range(n):
                img = x[i].mean(0) if x[i].shape[0] != 1 else x[i][0]
                fig.add_trace(go.Heatmap(z=img, colorscale="gray_r", showscale=False, hoverinfo="skip"), i // cols + 1, i % cols + 1)
                fig.update_yaxes(scaleanchor="x" if i == 0 else f"x{i + 1}", row=i // cols + 1, col=i % cols + 1)
            fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
            fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, autorange="reversed")
            fig.update_layout(title="Samples", height=70 + 70 * rows, margin=dict(l=10, r=10, t=50, b=10))
            fig.update_annotations(font_size=10)
        elif p["kind"] == "signal" and len(x):
            fig = go.Figure([go.Scatter(y=x[i][0], mode="lines", name=names_[labels[i]], opacity=0.8) for i in range(min(len(x), 10))])
            fig.update_layout(title="Sample signals", height=300, margin=dict(l=10, r=10, t=40, b=10))
        else:
            st.markdown("**Samples**")
            flat = x.reshape(len(x), -1)[:10, :20]
            table = pd.DataFrame(flat, columns=[f"x{j}" for j in range(flat.shape[1])]).assign(label=[names_[k] for k in labels[:10]])
            st.dataframe(table, hide_index=True)
            fig = None
        if fig is not None:
            c.plot(fig, key="ne_samples")


if preview is not None:
    draw_preview(preview)
kind = preview["kind"] if preview else entry.extra.get("kind")

# -- 2. teacher ----------------------------------------------------------------------------------
st.header("2 · Teacher")
mode = st.radio("Teacher", [NEW, REUSE, UPLOAD], key="ne_teacher_mode", horizontal=True, label_visibility="collapsed")
teacher_spec, teacher_model, teacher_train, reuse_fields = None, None, None, None
if mode == NEW:
    teacher_model, errs = c.model_picker("ne_t", "Teacher model", kind, default="cnn-large" if kind in ("image", "signal") else "mlp-medium")
    problems.setdefault("teacher", []).extend(errs)
    teacher_spec = teacher_model
elif mode == REUSE:
    teachers = s.teachers(dataset=dataset)
    if not teachers:
        st.info(f"No trained teacher for {dataset} yet: train a new one (it is cached and reused by later experiments).")
        problems.setdefault("teacher", []).append("no trained teacher to reuse for this data set")
    else:
        by_hash = {t["hash"]: t for t in teachers}
        pick = st.selectbox("Trained teacher", list(by_hash), key="ne_t_reuse",
                            format_func=lambda h: f"{by_hash[h]['model']} · test accuracy {c.fmt_pct(by_hash[h]['test_accuracy'])} · "
                                                  f"{c.fmt_count(by_hash[h]['params'])} params · trained {c.fmt_time(by_hash[h]['created'])}")
        t = by_hash[pick]
        reuse_fields = t["spec_fields"]
        teacher_model = reuse_fields["teacher"]
        teacher_spec = teacher_model
        if reuse_fields["dataset_knobs"] != ds_knobs:
            st.caption("This teacher was trained with other data set settings; the experiment uses its settings: "
                       + ", ".join(f"{k}={v}" for k, v in reuse_fields["dataset_knobs"].items()))
else:
    st.file_uploader(f"Teacher weights (.safetensors, or a .pt / .pth state dict; at most {settings['upload_mb']} MB)",
                     type=["safetensors", "pt", "pth"], key="ne_tw_file", on_change=weights_uploaded,
                     max_upload_size=int(settings["upload_mb"]))
    if ss.get("ne_tw_error"):
        st.error(ss["ne_tw_error"], icon=":material/error:")
        problems.setdefault("teacher", []).append(ss["ne_tw_error"])
    path = st.text_input("…or the path of a weight file on this machine", key="ne_tw_path")
    teacher_model, errs = c.model_picker("ne_tu", "Architecture of these weights", kind, default="cnn-large")
    problems.setdefault("teacher", []).extend(errs)
    if not path:
        problems.setdefault("teacher", []).append("upload the teacher's weights or give their path")
    elif teacher_model is not None and preview is not None:
        try:
            from distill_core.models import build_model, load_weights

            load_weights(build_model(teacher_model, preview["input_shape"], preview["num_classes"]), path)
            st.success("The weights fit this architecture.", icon=":material/check_circle:")
            teacher_spec = {"weights": path, "model": teacher_model}
        except DistillError as exc:
            st.error(str(exc), icon=":material/error:")
            problems.setdefault("teacher", []).append(str(exc))
if mode == NEW:
    ss.setdefault("ne_t_same", True)
    same = st.checkbox("Train the teacher with the students' settings (section 5)", key="ne_t_same")
    if not same:
        with st.container(border=True):
            st.caption("Teacher training")
            tt, errs = c.param_form(TRAIN_PARAMS, "ne_tt", "teacher training", skip=HIDDEN_TRAIN, columns=4)
            problems.setdefault("teacher", []).extend(errs.values())
            teacher_train = tt

# -- 3. students ---------------------------------------------------------------------------------
st.header("3 · Students")
ss.setdefault("ne_n_students", 1)
n_students = st.number_input("How many students", min_value=1, max_value=6, step=1, key="ne_n_students")
students = []
cols = st.columns(min(int(n_students), 3))
for i in range(int(n_students)):
    with cols[i % len(cols)].container(border=True):
        spec_i, errs = c.model_picker(f"ne_s{i}", f"Student {i + 1}", kind, default="mlp-small")
        problems.setdefault("students", []).extend(errs)
        students.append(spec_i)

summaries: dict[str, dict] = {}
if preview is not None:
    shape, k = tuple(preview["input_shape"]), preview["num_classes"]
    rows = []
    models = [("teacher", teacher_model)] + [(f"student {i + 1}", m) for i, m in enumerate(students)]
    t_sum = None
    for who, m in models:
        if m is None:
            continue
        try:
            summ = c.model_summary(json.dumps(m, sort_keys=True), shape, k)
        except DistillError as exc:
            st.error(f"{who}: {exc}", icon=":material/error:")
            problems.setdefault("students" if who != "teacher" else "teacher", []).append(f"{who}: {exc}")
            continue
        summaries[spec_key(m)] = summ
        if who == "teacher":
            t_sum = summ
        ratio = compare_to_teacher(summ, t_sum) if t_sum is not None and who != "teacher" else {}
        rows.append({"model": who, "architecture": summ["label"], "parameters": c.fmt_count(summ["params"]),
                     "FLOPs / sample": c.fmt_count(summ["flops"]), "fp32 weights (about)": c.fmt_bytes(summ["fp32_bytes_estimate"]),
                     "smaller than teacher": c.fmt_ratio(ratio.get("compression")) if who != "teacher" else "",
                     "fewer FLOPs": c.fmt_ratio(ratio.get("flops_reduction")) if who != "teacher" else ""})
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.caption("Before training: parameters and FLOPs of the models as built for this data set; bytes are 4 per parameter.")

# -- 4. methods ---------------------------------------------------------------------------------
st.header("4 · Methods")
choices = [m.name for m in METHODS if m.name != "scratch"]
if "ne_methods" not in ss:
    ss["ne_methods"] = ["kd"]
chosen = st.multiselect("Distillation methods", choices, key="ne_methods",
                        format_func=lambda n: f"{n}: {METHODS.get(n).description}")
ss.setdefault("ne_baseline", True)
baseline = st.checkbox("Also train each student from scratch: the baseline every figure compares with", key="ne_baseline")
if not chosen and not baseline:
    st.error("Choose at least one method (or keep the scratch baseline).", icon=":material/error:")
    problems.setdefault("methods", []).append("choose at least one method")
methods, uses_t, uses_a = [], False, False
built = {}
if preview is not None and teacher_model is not None:
    from distill_core.models import build_model

    try:
        built["teacher"] = build_model(teacher_model, preview["input_shape"], preview["num_classes"])
        for i, m in enumerate(students):
            if m is not None:
                built[i] = build_model(m, preview["input_shape"], preview["num_classes"])
    except DistillError:
        built = {}
for name in chosen:
    cls = METHODS.get(name)
    with st.expander(f"**{name}**: {cls.description}", expanded=True):
        if cls.paper:
            st.caption(cls.paper)
        if cls.equation:
            st.latex(cls.equation)
        shared = [p for p in cls.params if swept(p)]
        uses_t |= any(p.name == "temperature" for p in shared)
        uses_a |= any(p.name == "alpha" for p in shared)
        if shared:
            st.caption("Its " + " and ".join(p.name for p in shared) + " come from the sweep in section 5.")
        knobs, errs = c.param_form([p for p in cls.params if not swept(p)], f"ne_m_{name}", f"method {name}")
        problems.setdefault("methods", []).extend(errs.values())
        if "teacher" in built:
            for i, m in enumerate(students):
                if i in built:
                    why = cls.incompatibility(built[i], built["teacher"])
                    if why:
                        msg = f"{name} cannot distil into student {i + 1}: {why}"
                        st.error(msg, icon=":material/error:")
                        problems.setdefault("methods", []).append(msg)
        methods.append({"name": name, **knobs})
if baseline and not chosen:
    methods = [{"name": "scratch"}]

# -- 5. sweep and training -----------------------------------------------------------------------
st.header("5 · Sweep and training")
sweep = st.columns(3)
temperatures, alphas, seeds = [4.0], [0.9], [0]
with sweep[0]:
    if uses_t:
        t_mode = st.radio("Temperatures", ["list", "range"], key="ne_t_mode", horizontal=True)
        try:
            if t_mode == "list":
                temperatures = c.parse_numbers(st.text_input("Temperatures T (comma-separated)", key="ne_temps"), "temperatures")
            else:
                r = st.columns(3)
                lo = r[0].number_input("from", key="ne_t_from", format="%g")
                hi = r[1].number_input("to", key="ne_t_to", format="%g")
                count = r[2].number_input("values", step=1, key="ne_t_count")
                log = st.checkbox("log-spaced", key="ne_t_log")
                if count < 1 or count > 50:
                    raise ConfigError("temperatures: between 1 and 50 values")
                if lo <= 0 or hi <= 0:
                    raise ConfigError("temperatures: must be above 0")
                grid = np.geomspace(lo, hi, int(count)) if log else np.linspace(lo, hi, int(count))
                temperatures = [float(f"{v:.3g}") for v in grid]
                st.caption("T = " + ", ".join(f"{v:g}" for v in temperatures))
            bad = [t for t in temperatures if not 0.1 <= t <= 100]
            if bad:
                raise ConfigError(f"temperatures: {bad[0]:g} is outside [0.1, 100]")
        except ConfigError as exc:
            st.error(str(exc), icon=":material/error:")
            problems.setdefault("sweep", []).append(str(exc))
    else:
        st.caption("No chosen method uses a temperature.")
with sweep[1]:
    if uses_a:
        try:
            alphas = c.parse_numbers(st.text_input("Alpha: weight of the distillation term (comma-separated)", key="ne_alphas"), "alphas")
            bad = [a for a in alphas if not 0 <= a <= 1]
            if bad:
                raise ConfigError(f"alphas: {bad[0]:g} is outside [0, 1]")
        except ConfigError as exc:
            st.error(str(exc), icon=":material/error:")
            problems.setdefault("sweep", []).append(str(exc))
    else:
        st.caption("No chosen method uses alpha.")
with sweep[2]:
    try:
        seeds = c.parse_numbers(st.text_input("Seeds (comma-separated)", key="ne_seeds",
                                              help="each run is repeated per seed, so figures show a mean and a spread"), "seeds", int)
        if any(x < 0 for x in seeds):
            raise ConfigError("seeds: must be 0 or more")
    except ConfigError as exc:
        st.error(str(exc), icon=":material/error:")
        problems.setdefault("sweep", []).append(str(exc))

train, errs = c.param_form([p for p in TRAIN_PARAMS if p.name in MAIN_TRAIN], "ne_tr", "training")
problems.setdefault("training", []).extend(errs.values())
with st.expander("More training settings"):
    more, errs = c.param_form([p for p in TRAIN_PARAMS if p.name not in MAIN_TRAIN + HIDDEN_TRAIN], "ne_tr", "training", columns=4)
    problems.setdefault("training", []).extend(errs.values())
    st.caption(f"Device ({settings['device']}) and threads come from the Settings page.")
train.update(more)
name = st.text_input("Experiment name", key="ne_name", placeholder="e.g. digits temperature sweep")

# -- 6. summary and launch -------------------------------------------------------------------------
st.header("6 · Launch")
spec = {"name": name, "dataset": dataset, "dataset_knobs": ds_knobs, "teacher": teacher_spec, "students": students,
        "methods": methods, "temperatures": temperatures, "alphas": alphas, "seeds": seeds, "train": train,
        "teacher_train": teacher_train, "baseline": bool(baseline)}
if reuse_fields is not None:
    spec.update(dataset_knobs=reuse_fields["dataset_knobs"], teacher=reuse_fields["teacher"],
                teacher_train=reuse_fields["teacher_train"])
open_problems = [m for msgs in problems.values() for m in msgs]
configs = None
if open_problems:
    st.error(f"Fix {len(open_problems)} problem(s) above before launching:\n\n" + "\n".join(f"- {m}" for m in open_problems))
else:
    got = c.expand_spec(json.dumps(spec, sort_keys=True, default=str))
    if "error" in got:
        st.error(got["error"], icon=":material/error:")
        open_problems.append(got["error"])
    else:
        configs = got["runs"]

if configs is not None:
    from distill_core.config import run_hash

    done = {r["hash"] for r in s.list_runs(status="done")} | {t["hash"] for t in s.teachers()}
    hashes = [run_hash(cfg) for cfg in configs]
    reused = sum(h in done for h in hashes)
    n_base = sum(cfg["method"]["name"] == "scratch" and cfg["role"] == "student" for cfg in configs)
    n_teach = sum(cfg["role"] != "student" for cfg in configs)
    n_dist = len(configs) - n_base - n_teach
    # calibrate the default speeds on finished runs of this data set, when there are any
    frame = c.results_frame()
    pairs = []
    if not frame.empty and "measure.compute.flops" in frame:
        same = frame[(frame.dataset == dataset) & frame["measure.compute.flops"].notna() & frame.train_seconds.notna()]
        n_train = preview["sizes"]["train"]
        for _, row in same.tail(50).iterrows():
            pred = estimate_train_seconds(row["measure.compute.flops"], n_train, int(row.epochs_run or 1),
                                          int(row.get("train.batch_size", 64) or 64))
            pairs.append((pred, row.train_seconds))
    factor, used = calibration(pairs)
    est = estimate_runs(configs, preview["sizes"]["train"], summaries, skip=done, factor=factor,
                        workers=settings["workers"], threads=max(1, settings["threads"] or 1))
    st.markdown(f"### This launches {len(configs)} run{'s' if len(configs) != 1 else ''}")
    st.markdown(f"{n_teach} teacher{'s' if n_teach != 1 else ''}, {n_base} scratch baseline{'s' if n_base != 1 else ''} and "
                f"{n_dist} distilled student{'s' if n_dist != 1 else ''}"
                + (f"; {reused} of them already finished and will be reused, not repeated" if reused else "") + ".")
    st.markdown(f"Rough time: **about {c.fmt_seconds(est['wall_seconds'])}** with {settings['workers']} worker(s) side by side "
                f"({c.fmt_seconds(est['serial_seconds'])} one after another). "
                + (f"Calibrated on {used} finished run(s) of this data set." if used else
                   "From default speeds for a laptop CPU; later estimates calibrate on your finished runs."))
    if st.button(f"Launch {len(configs)} run{'s' if len(configs) != 1 else ''}", type="primary", key="ne_launch"):
        try:
            exp_id, run_ids = c.submit(spec)
        except DistillError as exc:
            st.error(str(exc), icon=":material/error:")
        else:
            ss["ne_launched"] = (exp_id, run_ids)
if ss.get("ne_launched"):
    exp_id, run_ids = ss["ne_launched"]
    st.success(f"Experiment #{exp_id} queued: runs {', '.join(f'#{i}' for i in run_ids)}.")
    st.page_link(c.PAGES["runs"], label="Watch them on the Runs page", icon=":material/list_alt:")

st.download_button("Download this experiment as JSON", json.dumps(spec, indent=1, default=str), file_name=f"{name or 'experiment'}.json",
                   mime="application/json", on_click="ignore", key="ne_download", icon=":material/download:")
