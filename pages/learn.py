"""Learn: distillation seen rather than told.

Every figure comes from the store: a trained teacher's cached outputs, or saved models run on a
few inputs (inference only). What needs training (the decision-boundary playground, the
omitted-class experiment, a quick teacher, a paper preset) is submitted as a background job;
the page polls the store and draws when the runs are done.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from distill_core import teaching, teachers
from distill_core.config import ExperimentSpec
from distill_core.constants import STUDENT, TEACHER
from distill_core.presets import PRESETS, preset_spec, published_beside_measured
from distill_core.run_config import RunConfig
from ui import learn_figures as F
from ui import state
from ui.learn_int8 import section_int8
from ui.learn_jobs import (launch, measured_for, roles, run_logits, short_model, show_experiment, surface,
                           teacher_outputs, wait_for)
from ui.nav import page_setup

TOY_SETS = ("moons", "circles", "spirals", "blobs")
PLAYGROUND, OMITTED = "playground", "omitted-class"
QUICK_TEACHER = "digits-quick"


# ------------------------------------------------------------------------------- 1. temperature


def section_temperature(out: dict, teacher_label: str) -> None:
    st.markdown("A teacher's output is a probability for every class. Dividing its logits by a **temperature** "
                "T > 1 before the softmax lifts the small probabilities: how much it thinks this *2* looks like a "
                "*3* or a *7*. That is the *dark knowledge* a student learns from.")
    n = len(out["y"])
    c1, c2 = st.columns([1, 2.2])
    with c1:
        i = st.number_input("Test sample", 0, n - 1, 0, key="learn-sample", help=f"0 to {n - 1}")
        st.plotly_chart(F.sample_figure(out, i), key="learn-sample-fig", config={"displayModeBar": False})
        st.caption(f"true class: **{out['classes'][out['y'][i]]}**")
        T = st.slider("Temperature T", 0.5, 30.0, 4.0, 0.5, key="learn-T")
    z = out["logits"][i]
    p = teaching.soften(z, T).numpy()
    h, hmax = teaching.entropy(p).item(), math.log2(len(p))
    with c2:
        title = f"{teacher_label} at T = {T:g}: entropy {h:.2f} bits (max {hmax:.2f})"
        st.plotly_chart(F.softened_figure(out["classes"], z, T, title), key="learn-soft")
    temps = st.multiselect("Several temperatures side by side", [0.5, 1.0, 2.0, 4.0, 8.0, 20.0, 50.0],
                           default=[1.0, 4.0, 20.0], key="learn-temps")
    if temps:
        st.plotly_chart(F.temperatures_figure(out["classes"], z, sorted(temps)), key="learn-soft-many")
    st.caption("Entropy in bits: 0 when the teacher is certain, log2(classes) when it cannot tell the classes apart. "
               "The ranking of the classes never changes with T; only how much of the mass the runners-up get.")


# ------------------------------------------------------------------------------- 2. dark knowledge


def section_dark(out: dict) -> None:
    st.markdown("Row *i* is the teacher's **average softened prediction over every test sample of class i**. The "
                "diagonal is what it gets right; the rest shows which classes it thinks alike.")
    c1, c2 = st.columns([1, 1])
    T = c1.slider("Temperature", 0.5, 30.0, 4.0, 0.5, key="learn-dark-T")
    hide = c2.toggle("Hide the diagonal", value=True, key="learn-dark-diag",
                     help="the diagonal dwarfs the rest; hiding it shows the similarities")
    classes = out["classes"]
    m = teaching.dark_knowledge(out["logits"], out["y"], T, len(classes))
    st.plotly_chart(F.dark_figure(m, classes, hide), key="learn-dark")
    pairs = [f"{classes[a]} and {classes[b]}" for a, b in teaching.most_alike(m)]
    if pairs:
        st.caption(f"At T = {T:g} the teacher finds these most alike: {'; '.join(pairs)}.")


# ------------------------------------------------------------------------------- 3. the KD loss


def section_loss(out: dict, teacher: dict, frame: pd.DataFrame) -> None:
    st.latex(r"\mathcal{L} \;=\; \alpha\,T^2\,\mathrm{KL}\big(p_t^{T}\,\|\,p_s^{T}\big) \;+\; (1-\alpha)\,"
             r"\mathrm{CE}\big(y,\,p_s\big), \qquad p^{T} = \mathrm{softmax}(z/T)")
    st.markdown(
        "- **Soft term**: the student matches the teacher's softened outputs (the dark knowledge).\n"
        "- **Hard term**: ordinary cross-entropy with the true labels, at T = 1.\n"
        "- **α** shares the weight between them.\n"
        "- **T²**: softening by T shrinks the soft term's gradients by about 1/T² (Hinton et al. 2015, section 2); "
        "multiplying by T² keeps its weight the same whatever T you pick, so α means the same at every T.")
    students = frame[(frame["role"] == STUDENT) & (frame["teacher_hash"] == teacher["hash"])] if len(frame) else frame
    options = {int(r["run_id"]): r["label"] for _, r in students.iterrows()}
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    NONE = -1
    pick = c1.selectbox("Student", [*options, NONE], format_func=lambda k: options.get(k, "an untrained student (uniform output)"),
                        key="learn-loss-student")
    T = c2.slider("T", 0.5, 30.0, 4.0, 0.5, key="learn-loss-T")
    alpha = c3.slider("α", 0.0, 1.0, 0.9, 0.05, key="learn-loss-alpha")
    batch = c4.select_slider("Batch", [32, 64, 128, 256, 512], 128, key="learn-loss-batch")
    n = min(batch, len(out["y"]))
    t_logits, y = out["logits"][:n], out["y"][:n]
    if pick == NONE:
        s_logits = np.zeros_like(t_logits)
        who = "an untrained student that gives every class the same probability"
    else:
        run = state.get_run(pick)
        s_logits, _ = run_logits(str(state.home()), run["hash"], state.run_config(run), n)
        who = f"run #{pick}, {options[pick]}"
    parts = teaching.kd_anatomy(s_logits, t_logits, y, T, alpha)
    st.caption(f"On the first {n} test samples, with {who}:")
    m = st.columns(5)
    m[0].metric("KL at T (no T²)", f"{parts['kl']:.4f}")
    m[1].metric("soft = T²·KL", f"{parts['soft']:.4f}")
    m[2].metric("hard = CE", f"{parts['hard']:.4f}")
    m[3].metric("α·soft + (1−α)·hard", f"{parts['total']:.4f}")
    m[4].metric("share of soft", f"{parts['weighted_soft'] / parts['total']:.0%}" if parts["total"] > 0 else "—")
    temps = np.geomspace(0.5, 30, 40)
    sweep = [teaching.kd_anatomy(s_logits, t_logits, y, t, alpha) for t in temps]
    st.plotly_chart(F.loss_figure(sweep, temps, T, parts, alpha), key="learn-loss")
    st.caption("Left: as T grows the raw KL between softened outputs shrinks (everything looks uniform), while "
               "T²·KL stays on the same scale, which is why the factor is there.")


# ------------------------------------------------------------------------------- 4. boundaries


def section_playground() -> None:
    st.markdown("Train a teacher, a small student from scratch and the same student distilled, on a 2-D toy set, "
                "then see their decision boundaries on the same axes. The runs train in the background (seconds).")
    with st.form("playground"):
        c = st.columns(4)
        ds = c[0].selectbox("Data set", TOY_SETS, key="pg-ds")
        noise = c[0].slider("Noise", 0.0, 1.0, 0.25, 0.05, key="pg-noise")
        t_width = c[1].select_slider("Teacher width", [16, 32, 64, 128, 256], 128, key="pg-tw")
        t_depth = c[1].slider("Teacher layers", 1, 4, 3, key="pg-td")
        s_width = c[2].select_slider("Student width", [2, 3, 4, 6, 8, 16, 32], 4, key="pg-sw")
        s_depth = c[2].slider("Student layers", 1, 3, 1, key="pg-sd")
        T = c[3].slider("Temperature", 0.5, 20.0, 4.0, 0.5, key="pg-T")
        epochs = c[3].slider("Epochs", 10, 200, 60, 10, key="pg-epochs")
        go_ = st.form_submit_button("Train in the background", icon=":material/play_arrow:")
    if go_:
        launch(ExperimentSpec(name=PLAYGROUND, dataset=ds, dataset_knobs={"noise": noise, "n_samples": 1000},
                             teacher={"arch": "mlp", "hidden": [t_width] * t_depth, "dropout": 0.0},
                             students=[{"arch": "mlp", "hidden": [s_width] * s_depth, "dropout": 0.0}],
                             methods=[{"name": "kd"}], temperatures=[T], alphas=[0.9], seeds=[0],
                             train={"epochs": epochs, "batch_size": 64, "lr": 0.01}), "pg-exp")
    show_experiment(PLAYGROUND, "pg-exp", draw_boundaries)


def draw_boundaries(exp_id: int, runs: list[dict]) -> None:
    got = roles(runs)
    missing = [k for k in ("teacher", "scratch", "distilled") if k not in got]
    if missing:
        st.warning(f"Experiment #{exp_id} has no {', '.join(missing)} run to draw.")
        return
    home = str(state.home())
    try:
        method = got["distilled"]["config"]["method"]
        names = {"teacher": "teacher", "scratch": "student from scratch",
                 "distilled": f"student distilled at T = {method.get('temperature', '?'):g}"}
        panels = [(f"{names[k]} · {short_model(got[k]['config']['model'])}", surface(home, got[k]["hash"], state.run_config(got[k]), 120))
                  for k in ("teacher", "scratch", "distilled")]
    except FileNotFoundError as exc:
        st.warning(f"Cannot draw experiment #{exp_id}: {exc}")
        return
    st.plotly_chart(F.boundary_figure(panels), key="learn-boundaries")
    st.caption("Shaded: the class each model predicts; thin lines: where its confidence reaches 60, 75 and 90 %. "
               "The distilled student learned from the teacher's soft outputs, the scratch student only from the labels.")


# ------------------------------------------------------------------------------- 5. omitted class


def section_omitted() -> None:
    st.markdown("Hinton et al. (2015, section 3) distilled an MNIST student from a transfer set **with every 3 "
                "removed**. The student had never seen a 3, yet recognised most of them from the teacher's soft "
                "outputs on the other digits; raising the bias of class 3 recovered the rest. Try it here: the "
                "omitted class is removed from the student's training and validation data only (the teacher and "
                "the test set keep it), for the distilled student and for its scratch baseline alike.")
    with st.form("omitted"):
        c = st.columns(4)
        ds = c[0].selectbox("Data set", ["digits", "mnist-5k"], key="om-ds")
        k = c[1].selectbox("Class to omit", list(range(10)), index=3, key="om-class")
        T = c[2].slider("Temperature", 1.0, 30.0, 8.0, 1.0, key="om-T")
        epochs = c[3].slider("Epochs", 5, 100, 30, 5, key="om-epochs")
        go_ = st.form_submit_button("Train in the background", icon=":material/play_arrow:")
    if go_:
        launch(ExperimentSpec(name=OMITTED, dataset=ds, teacher={"arch": "cnn", "channels": [32, 64], "kernel": 3},
                             students=[{"arch": "mlp", "hidden": [64], "dropout": 0.0}], methods=[{"name": "kd"}],
                             temperatures=[T], alphas=[0.9], seeds=[0], transfer={"omit_class": int(k)},
                             train={"epochs": epochs, "batch_size": 64, "lr": 0.002}), "om-exp")
    show_experiment(OMITTED, "om-exp", draw_omitted)


def draw_omitted(exp_id: int, runs: list[dict]) -> None:
    got = roles(runs)
    if "distilled" not in got:
        st.warning(f"Experiment #{exp_id} has no distilled student.")
        return
    k = (got["distilled"]["config"].get("transfer") or {}).get("omit_class")
    if k is None:
        st.warning(f"Experiment #{exp_id} did not omit a class.")
        return
    home = str(state.home())
    logits = {name: run_logits(home, got[name]["hash"], state.run_config(got[name])) for name in ("distilled", "scratch") if name in got}
    biases = np.round(np.linspace(0, 10, 41), 2)
    curves = {name: teaching.class_bias_sweep(z, y, int(k), biases) for name, (z, y) in logits.items()}
    t = got.get("teacher")
    acc = ((t.get("result") or {}).get("metrics") or {}).get("per_class_accuracy") if t is not None else None
    t_class = acc[k] if acc else None
    bias = st.slider(f"Bias added to class {k}'s logit at inference", 0.0, 10.0, 0.0, 0.25, key="om-bias")
    cols = st.columns(len(curves) + 1)
    for i, (name, c) in enumerate(curves.items()):
        z, y = logits[name]
        now = teaching.class_bias_sweep(z, y, int(k), [bias]).iloc[0]
        base = c.iloc[0]
        cols[i].metric(f"{name}: accuracy on class {k}", f"{now['class_accuracy']:.1%}",
                       delta=f"{now['class_accuracy'] - base['class_accuracy']:+.1%} from the bias" if bias else None)
        cols[i].caption(f"all classes: {now['accuracy']:.2%} (without bias {base['accuracy']:.2%})")
    cols[-1].metric(f"teacher: accuracy on class {k}", f"{t_class:.1%}" if t_class is not None else "unavailable")
    st.plotly_chart(F.omitted_figure(curves, k, bias), key="learn-omitted")
    if "distilled" in curves:
        c = curves["distilled"]
        best = c.loc[c["accuracy"].idxmax()]
        st.caption(f"Best bias for the distilled student: {best['bias']:g}, where it gets {best['class_accuracy']:.1%} of "
                   f"the {k}s it never saw and {best['accuracy']:.2%} overall (without bias: {c.iloc[0]['class_accuracy']:.1%} "
                   f"and {c.iloc[0]['accuracy']:.2%}). Beyond it, the bias starts to call other digits {k}s. "
                   "Biases are chosen here on the test set, for illustration.")


# ------------------------------------------------------------------------------- 6. presets


def section_presets(frame: pd.DataFrame) -> None:
    st.markdown("Each preset reproduces a published set-up at lab scale. Published figures come from the papers "
                "(often on larger data); measured ones from your runs of the preset.")
    for name, p in PRESETS.items():
        with st.expander(f"**{name}**: {p['description']}", expanded=bool(p["published"])):
            st.dataframe(pd.DataFrame(published_beside_measured(name, measured_for(name, frame))), hide_index=True)
            if st.button("Run this preset", key=f"preset-{name}", icon=":material/play_arrow:"):
                launch(preset_spec(name), f"preset-exp-{name}")


# ------------------------------------------------------------------------------- page


def pick_teacher() -> tuple[dict | None, dict | None]:
    # newest first, the 2-D toy sets last: their two or three classes show little dark knowledge
    found = sorted((t for t in teachers.reusable(state.home()) if t["role"] == TEACHER), key=lambda t: t["dataset"] in TOY_SETS)
    if not found:
        st.info("No trained teacher in the store yet. Train a quick one (the digits preset, under a minute), or "
                "run any experiment.")
        if st.button("Train a quick teacher", icon=":material/play_arrow:", key="learn-quick"):
            launch(preset_spec(QUICK_TEACHER), "learn-quick-exp")
        if st.session_state.get("learn-quick-exp"):
            wait_for(st.session_state["learn-quick-exp"], "quick teacher")
        return None, None
    labels = {t["hash"]: f"{t['model']} on {t['dataset']} · test accuracy {t['test_accuracy']:.3f}" for t in found}
    h = st.selectbox("Teacher (for the first three tabs)", list(labels), format_func=labels.get, key="learn-teacher",
                     help="any trained teacher in the store; its test-set outputs are cached with it")
    t = next(t for t in found if t["hash"] == h)
    out = teacher_outputs(str(state.home()), h, RunConfig.from_dict(t["config"]))
    if out is None:
        st.warning("This teacher's cached outputs are gone (deleted?). Pick another one.")
        return t, None
    return t, out


def main() -> None:
    page_setup()
    st.title("Learn")
    st.caption("Knowledge distillation, seen: how temperature softens a teacher, which classes it thinks alike, "
               "what the loss is made of, and what a student learns from soft targets.")
    frame = state.results_frame()
    teacher, out = pick_teacher()
    tabs = st.tabs(["Temperature", "Dark knowledge", "The KD loss", "Decision boundaries", "Omitted class", "Paper presets",
                    "What int8 does"])
    if out is not None:
        with tabs[0]:
            section_temperature(out, f"teacher {teacher['model']}")
        with tabs[1]:
            section_dark(out)
        with tabs[2]:
            section_loss(out, teacher, frame)
    else:
        for t in tabs[:3]:
            with t:
                st.info("Needs a trained teacher (above).")
    with tabs[3]:
        section_playground()
    with tabs[4]:
        section_omitted()
    with tabs[5]:
        section_presets(frame)
    with tabs[6]:
        section_int8(frame)


main()
