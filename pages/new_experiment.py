"""New experiment: design a distillation experiment without code, check it, launch it.

Every form here is generated from the registries (data sets, architectures, methods, training
settings), so a new method or data set appears without a change to this page. Each widget's
value is checked by its own Param and a bad one shows its message underneath; nothing is
queued until the whole experiment validates. The experiment is expanded once: the summary
and the launch share its runs.
"""
import dataclasses
import json

import streamlit as st

from distill_core import grids, teachers
from distill_core.config import SEED, ExperimentSpec, incompatibilities
from distill_core.constants import DONE, SCRATCH
from distill_core.data import DATASETS
from distill_core.errors import DistillError
from distill_core.estimates import launch_estimate
from distill_core.methods import ALPHA, METHODS, TEMPERATURE
from distill_core.presets import PRESETS
from distill_core.train_params import TRAIN_PARAMS
from ui import forms, state
from ui.experiment_form import DEFAULTS, MAIN_TRAIN, data_uploaded, draw_preview, load_file, load_preset, model_table
from ui.teacher_form import HIDDEN_TRAIN, MODES, teacher_section
from ui.format import fmt_seconds, plural
from ui.nav import PAGES, page_setup

page_setup()
s = state.store()
for key, value in DEFAULTS.items():  # defaults through session state, so a loaded file can replace them
    st.session_state.setdefault(key, value)
settings = state.settings()
ss = st.session_state
st.title("New experiment")

with st.expander("Start from a preset or an experiment file", expanded=False):
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.selectbox("Preset", list(PRESETS), key="ne_preset", format_func=lambda n: f"{n}: {PRESETS[n]['description']}")
    b.button("Load preset", on_click=load_preset, key="ne_load_preset")
    st.file_uploader("…or load an experiment saved as JSON", type=["json"], key="ne_json_file", on_change=load_file)
note = ss.pop("ne_note", None)
if note:
    getattr(st, note[0])(note[1])

problems: dict[str, list[str]] = {}  # section -> messages (each also shown under its widget)


def problem(section: str, message: str) -> None:
    st.error(message, icon=":material/error:")
    problems.setdefault(section, []).append(message)


# -- 1. data -------------------------------------------------------------------------------------
st.header("1 · Data")
names = DATASETS.names()
if ss.get("ne_dataset") not in names:
    ss["ne_dataset"] = "digits"
dataset = st.selectbox("Data set", names, key="ne_dataset", format_func=lambda n: f"{n}: {DATASETS.get(n).description}")
entry = DATASETS.get(dataset)
st.file_uploader(f"Upload your own data: a CSV table, an NPZ file or a zipped folder of images (at most {settings['upload_mb']} MB)",
                 type=["csv", "npz", "zip"], key="ne_data_file", on_change=data_uploaded,
                 max_upload_size=int(settings["upload_mb"]))
if ss.get("ne_data_error"):
    problem("data", ss["ne_data_error"])
with st.expander("Data set settings", expanded=entry.extra.get("user_file", False)):
    ds_knobs, ds_errors = forms.param_form(entry.params, f"ne_ds_{dataset}", f"data set {dataset}")
problems.setdefault("data", []).extend(ds_errors.values())

preview = None
if not ds_errors:
    try:
        preview = state.cached_preview(dataset, json.dumps(ds_knobs, sort_keys=True))
    except DistillError as exc:
        problem("data", str(exc))
if preview is not None:
    draw_preview(preview)
kind = preview["kind"] if preview else entry.extra.get("kind")

# -- 2. teacher ----------------------------------------------------------------------------------
st.header("2 · Teacher")
mode = st.radio("Teacher", MODES, key="ne_teacher_mode", horizontal=True, label_visibility="collapsed")


def teacher_problem(message: str, shown: bool = True) -> None:
    if shown:
        st.error(message, icon=":material/error:")
    problems.setdefault("teacher", []).append(message)


teacher = teacher_section(mode, dataset, ds_knobs, kind, preview, settings, teacher_problem)
teacher_model = teacher.model

# -- 3. students ---------------------------------------------------------------------------------
st.header("3 · Students")
ss.setdefault("ne_n_students", 1)
n_students = st.number_input("How many students", min_value=1, max_value=6, step=1, key="ne_n_students")
students = []
cols = st.columns(min(int(n_students), 3))
for i in range(int(n_students)):
    with cols[i % len(cols)].container(border=True):
        spec_i, errs = forms.model_picker(f"ne_s{i}", f"Student {i + 1}", kind, default="mlp-small", networks_only=True)
        problems.setdefault("students", []).extend(errs)
        students.append(spec_i)

summaries: dict[str, dict] = {}
if preview is not None:
    models = [("teacher", teacher_model)] + [(f"student {i + 1}", m) for i, m in enumerate(students)]
    if teacher.without_network:
        st.caption(f"The teacher is {teacher.without_network}: its size and latency are measured when its run "
                   "finishes (through its ONNX file, where it has one), not before.")
    summaries = model_table(models, tuple(preview["input_shape"]), preview["num_classes"], problems)

# -- 4. methods ---------------------------------------------------------------------------------
st.header("4 · Methods")
choices = [m.name for m in METHODS if m.name != SCRATCH]
ss.setdefault("ne_methods", ["kd"])
chosen = st.multiselect("Distillation methods", choices, key="ne_methods",
                        format_func=lambda n: f"{n}: {METHODS.get(n).description}")
ss.setdefault("ne_baseline", True)
baseline = st.checkbox("Also train each student from scratch: the baseline every figure compares with", key="ne_baseline")
if not chosen and not baseline:
    problem("methods", "choose at least one method")
methods, uses_t, uses_a = [], False, False
pairable = preview is not None and (teacher_model is not None or teacher.without_network is not None)
for name in chosen:
    cls = METHODS.get(name)
    with st.expander(f"**{name}**: {cls.description}", expanded=True):
        if cls.paper:
            st.caption(cls.paper)
        if cls.equation:
            st.latex(cls.equation)
        shared = [p for p in cls.params if p in (TEMPERATURE, ALPHA)]  # knobs the sweep in section 5 sets
        uses_t |= TEMPERATURE in shared
        uses_a |= ALPHA in shared
        if shared:
            st.caption("Its " + " and ".join(p.name for p in shared) + " come from the sweep in section 5.")
        knobs, errs = forms.param_form([p for p in cls.params if p not in shared], f"ne_m_{name}", f"method {name}")
        problems.setdefault("methods", []).extend(errs.values())
        if pairable:
            try:
                for i, why in incompatibilities(name, students, teacher_model, preview["input_shape"], preview["num_classes"],
                                                teacher.without_network).items():
                    problem("methods", f"{name} cannot distil into student {i + 1}: {why}")
            except DistillError:  # a model that cannot be built: its own section says why
                pass
        methods.append({"name": name, **knobs})
if baseline and not chosen:
    methods = [{"name": SCRATCH}]

# -- 5. sweep and training -----------------------------------------------------------------------
st.header("5 · Sweep and training")
sweep = st.columns(3)
temperatures, alphas, seeds = [TEMPERATURE.default], [ALPHA.default], [SEED.default]
with sweep[0]:
    if uses_t:
        t_mode = st.radio("Temperatures", ["list", "range"], key="ne_t_mode", horizontal=True)
        try:
            if t_mode == "list":
                temperatures = grids.parse_values(st.text_input("Temperatures T (comma-separated)", key="ne_temps"),
                                                  TEMPERATURE, "temperatures")
            else:
                r = st.columns(3)
                lo = r[0].number_input("from", key="ne_t_from", format="%g")
                hi = r[1].number_input("to", key="ne_t_to", format="%g")
                count = r[2].number_input("values", step=1, key="ne_t_count")
                log = st.checkbox("log-spaced", key="ne_t_log")
                temperatures = grids.value_range(lo, hi, int(count), log, TEMPERATURE, "temperatures")
                st.caption("T = " + ", ".join(f"{v:g}" for v in temperatures))
        except DistillError as exc:
            problem("sweep", str(exc))
    else:
        st.caption("No chosen method uses a temperature.")
with sweep[1]:
    if uses_a:
        try:
            alphas = grids.parse_values(st.text_input("Alpha: weight of the distillation term (comma-separated)", key="ne_alphas"),
                                        ALPHA, "alphas")
        except DistillError as exc:
            problem("sweep", str(exc))
    else:
        st.caption("No chosen method uses alpha.")
with sweep[2]:
    try:
        seeds = grids.parse_values(st.text_input("Seeds (comma-separated)", key="ne_seeds",
                                                 help="each run is repeated per seed, so figures show a mean and a spread"),
                                   SEED, "seeds")
    except DistillError as exc:
        problem("sweep", str(exc))

train, errs = forms.param_form([p for p in TRAIN_PARAMS if p.name in MAIN_TRAIN], "ne_tr", "training")
problems.setdefault("training", []).extend(errs.values())
with st.expander("More training settings"):
    more, errs = forms.param_form([p for p in TRAIN_PARAMS if p.name not in MAIN_TRAIN + HIDDEN_TRAIN], "ne_tr", "training", columns=4)
    problems.setdefault("training", []).extend(errs.values())
    st.caption(f"Device ({settings['device']}) and threads come from the Settings page.")
train.update(more)
name = st.text_input("Experiment name", key="ne_name", placeholder="e.g. digits temperature sweep")

# -- 6. summary and launch -------------------------------------------------------------------------
st.header("6 · Launch")
spec = ExperimentSpec(name=name, dataset=dataset, dataset_knobs=ds_knobs, teacher=teacher.spec, teachers=teacher.members,
                      ensemble=teacher.ensemble, students=students, methods=methods, temperatures=temperatures,
                      alphas=alphas, seeds=seeds, train=train, teacher_train=teacher.train, baseline=bool(baseline))
if teacher.reuse is not None:
    spec = dataclasses.replace(spec, **{k: v for k, v in teacher.reuse.items() if k != "dataset"})
open_problems = [m for msgs in problems.values() for m in msgs]
runs, launched = None, state.with_settings(spec, settings)
if open_problems:
    st.error(f"Fix {len(open_problems)} problem(s) above before launching:\n\n" + "\n".join(f"- {m}" for m in open_problems))
else:
    try:
        runs = state.expand_cached(launched)
    except DistillError as exc:
        st.error(str(exc), icon=":material/error:")

if runs is not None:
    done = {r["hash"] for r in s.list_runs(status=DONE)} | {t["hash"] for t in teachers.reusable(s.home)}
    est = launch_estimate(runs, done, state.results_frame(), preview["sizes"]["train"], summaries,
                          workers=settings["workers"], threads=max(1, settings["threads"] or 1))
    st.markdown(f"### This launches {plural(est['runs'], 'run')}")
    st.markdown(f"{plural(est['teachers'], 'teacher')}, {plural(est['baselines'], 'scratch baseline')} and "
                f"{plural(est['distilled'], 'distilled student')}"
                + (f"; {est['reused']} of them already finished and will be reused, not repeated" if est["reused"] else "") + ".")
    st.markdown(f"Rough time: **about {fmt_seconds(est['wall_seconds'])}** with {settings['workers']} worker(s) side by side "
                f"({fmt_seconds(est['serial_seconds'])} one after another). "
                + (f"Calibrated on {est['calibrated_on']} finished run(s) of this data set." if est["calibrated_on"] else
                   "From default speeds for a laptop CPU; later estimates calibrate on your finished runs."))
    if st.button(f"Launch {plural(est['runs'], 'run')}", type="primary", key="ne_launch"):
        try:
            ss["ne_launched"] = state.submit(launched, runs)
        except DistillError as exc:
            st.error(str(exc), icon=":material/error:")
if ss.get("ne_launched"):
    exp_id, run_ids = ss["ne_launched"]
    st.success(f"Experiment #{exp_id} queued: runs {', '.join(f'#{i}' for i in run_ids)}.")
    st.page_link(PAGES["runs"], label="Watch them on the Runs page", icon=":material/list_alt:")

st.download_button("Download this experiment as JSON", json.dumps(spec.to_dict(), indent=1, default=str),
                   file_name=f"{name or 'experiment'}.json", mime="application/json", on_click="ignore", key="ne_download",
                   icon=":material/download:")
