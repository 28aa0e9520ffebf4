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
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core import teaching
from distill_core.errors import DistillError
from distill_core.presets import PRESETS
from pages import common as C

TOY_SETS = ("moons", "circles", "spirals", "blobs")
CLASS_COLOURS = px.colors.qualitative.Set1
PLAYGROUND, OMITTED = "playground", "omitted-class"
QUICK_TEACHER = PRESETS["digits-quick"]["spec"]


# ------------------------------------------------------------------------------- cached reads


@st.cache_data(show_spinner="Loading the teacher's outputs…", max_entries=8)
def teacher_outputs(home: str, teacher_hash: str, config: dict) -> dict | None:
    """A cached teacher's test logits with the test inputs and labels (no model is run)."""
    from distill_core.engine.runner import load_data

    logits = teaching.teacher_logits(home, teacher_hash)
    if logits is None:
        return None
    data = load_data(config["dataset"])
    return {"logits": logits["test"].numpy(), "y": data.y_test.numpy(), "x": data.x_test.numpy(),
            "classes": list(data.info.class_names), "kind": data.info.kind, "shape": list(data.info.input_shape)}


@st.cache_data(show_spinner="Running the saved model on the test set…", max_entries=32)
def run_logits(home: str, run_hash: str, config: dict, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    return teaching.test_logits(config, teaching.run_weights(home, config), limit)


@st.cache_data(show_spinner="Drawing the decision boundary…", max_entries=16)
def surface(home: str, run_hash: str, config: dict, steps: int) -> dict:
    return teaching.decision_surface(config, teaching.run_weights(home, config), steps)


def experiments_named(name: str) -> list[dict]:
    return [e for e in C.store().experiments() if e["name"] == name]


def experiment_runs(exp_id: int) -> list[dict]:
    return C.store().list_runs(experiment=exp_id)


def submit(spec: dict, state_key: str) -> None:
    """Queue an experiment through the jobs layer; its id goes to session state."""
    try:
        exp_id, run_ids = C.submit(spec)
    except DistillError as exc:
        st.error(str(exc), icon="⚠️")
        return
    st.session_state[state_key] = exp_id
    st.toast(f"Queued experiment #{exp_id} ({len(run_ids)} runs)")


def wait_for(exp_id: int, what: str) -> bool:
    """True when every run of the experiment is done. While some are queued or running, shows
    their progress and refreshes itself (polling the store, not training)."""
    runs = experiment_runs(exp_id)
    if not runs:
        st.warning(f"{what} has no runs left (deleted?).")
        return False
    failed = [r for r in runs if r["status"] in ("failed", "cancelled", "interrupted")]
    if failed:
        r = failed[0]
        st.error(f"{what}: run #{r['id']} {r['status']}: {r.get('error') or ''}", icon="⚠️")
        return False
    if all(r["status"] == "done" for r in runs):
        return True

    @st.fragment(run_every=C.load_settings()["refresh_seconds"])
    def poll():
        now = experiment_runs(exp_id)
        if all(r["status"] == "done" for r in now) or any(r["status"] in ("failed", "cancelled", "interrupted") for r in now):
            st.rerun()
        from distill_core.report import progress_fraction, progress_text

        done = sum(r["status"] == "done" for r in now)
        st.progress(sum(progress_fraction(r["status"], r.get("progress")) for r in now) / max(1, len(now)),
                    text=f"{what}: {done}/{len(now)} runs done · " + "; ".join(
                        f"{r['label']}: {progress_text(r['status'], r.get('progress'))}" for r in now if r["status"] == "running"))
        if not C.pool_alive():
            st.caption("No worker pool is running: start one from the Runs page or with "
                       "`python -m distill_core.jobs.cli worker`.")

    poll()
    return False


# ------------------------------------------------------------------------------- 1. temperature


def sample_figure(out: dict, i: int) -> go.Figure | None:
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


def section_temperature(out: dict, teacher_label: str) -> None:
    st.markdown("A teacher's output is a probability for every class. Dividing its logits by a **temperature** "
                "T > 1 before the softmax lifts the small probabilities: how much it thinks this *2* looks like a "
                "*3* or a *7*. That is the *dark knowledge* a student learns from.")
    n = len(out["y"])
    c1, c2 = st.columns([1, 2.2])
    with c1:
        i = st.number_input("Test sample", 0, n - 1, 0, key="learn-sample", help=f"0 to {n - 1}")
        fig = sample_figure(out, i)
        if fig is not None:
            st.plotly_chart(fig, key="learn-sample-fig", config={"displayModeBar": False})
        st.caption(f"true class: **{out['classes'][out['y'][i]]}**")
        T = st.slider("Temperature T", 0.5, 30.0, 4.0, 0.5, key="learn-T")
    z = out["logits"][i]
    p, p1 = teaching.soften(z, T).numpy(), teaching.soften(z, 1.0).numpy()
    h, hmax = teaching.entropy(p).item(), math.log2(len(p))
    with c2:
        fig = go.Figure()
        fig.add_trace(go.Bar(x=out["classes"], y=p, name=f"T = {T:g}", marker_color="#1f77b4"))
        fig.add_trace(go.Scatter(x=out["classes"], y=p1, mode="markers", name="T = 1", marker=dict(symbol="line-ew-open",
                                 size=26, color="#d62728", line=dict(width=2, color="#d62728"))))
        fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10), yaxis_title="probability",
                          title=f"{teacher_label} at T = {T:g}: entropy {h:.2f} bits (max {hmax:.2f})",
                          xaxis=dict(type="category"), legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
        st.plotly_chart(fig, key="learn-soft")
    temps = st.multiselect("Several temperatures side by side", [0.5, 1.0, 2.0, 4.0, 8.0, 20.0, 50.0],
                           default=[1.0, 4.0, 20.0], key="learn-temps")
    if temps:
        temps = sorted(temps)
        fig = make_subplots(rows=1, cols=len(temps), shared_yaxes=True,
                            subplot_titles=[f"T = {t:g} · H = {teaching.entropy(teaching.soften(z, t)).item():.2f} bits" for t in temps])
        for k, t in enumerate(temps):
            fig.add_trace(go.Bar(x=out["classes"], y=teaching.soften(z, t).numpy(), marker_color="#1f77b4", showlegend=False),
                          row=1, col=k + 1)
        fig.update_xaxes(type="category")
        fig.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(fig, key="learn-soft-many")
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
    m = teaching.dark_knowledge(out["logits"], out["y"], T, len(out["classes"]))
    shown = m.copy()
    if hide:
        np.fill_diagonal(shown, np.nan)
    fig = px.imshow(shown, x=[str(c) for c in out["classes"]], y=[str(c) for c in out["classes"]],
                    color_continuous_scale="Blues", aspect="auto", labels=dict(x="predicted class", y="true class",
                                                                                color="mean p"))
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(type="category"), yaxis=dict(type="category"))
    st.plotly_chart(fig, key="learn-dark")
    off = m.copy()
    np.fill_diagonal(off, np.nan)
    sym = np.nan_to_num(off + off.T, nan=-1)
    pairs = []
    for _ in range(3):
        a, b = np.unravel_index(np.argmax(sym), sym.shape)
        if sym[a, b] <= 0:
            break
        pairs.append(f"{out['classes'][a]} and {out['classes'][b]}")
        sym[a, b] = sym[b, a] = -1
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
    from distill_core.config import run_hash

    keys = {teacher["hash"]}  # its cache key, and its run hash (what students record)
    if teacher.get("config"):
        keys.add(run_hash(teacher["config"]))
    students = frame[(frame["role"] == "student") & frame["teacher_hash"].isin(keys)] if len(frame) else frame
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
        run = C.get_run(pick)
        s_logits, _ = run_logits(str(C.home()), run["hash"], run["config"], n)
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
    fig = make_subplots(rows=1, cols=2, subplot_titles=("the soft term against T", f"what each term adds at α = {alpha:g}"))
    fig.add_trace(go.Scatter(x=temps, y=[p["kl"] for p in sweep], name="KL alone", line=dict(dash="dot")), 1, 1)
    fig.add_trace(go.Scatter(x=temps, y=[p["soft"] for p in sweep], name="T²·KL"), 1, 1)
    fig.add_vline(x=T, line=dict(color="#888", dash="dash"), row=1, col=1)
    fig.add_trace(go.Bar(x=["α·soft", "(1−α)·hard"], y=[parts["weighted_soft"], parts["weighted_hard"]],
                         marker_color=["#1f77b4", "#ff7f0e"], showlegend=False), 1, 2)
    fig.update_xaxes(type="log", title="temperature T", row=1, col=1)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=40, b=10), legend=dict(x=0.3, y=1))
    st.plotly_chart(fig, key="learn-loss")
    st.caption("Left: as T grows the raw KL between softened outputs shrinks (everything looks uniform), while "
               "T²·KL stays on the same scale, which is why the factor is there.")


# ------------------------------------------------------------------------------- 4. boundaries


def boundary_figure(panels: list[tuple[str, dict]]) -> go.Figure:
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
        spec = {"name": PLAYGROUND, "dataset": ds, "dataset_knobs": {"noise": noise, "n_samples": 1000},
                "teacher": {"arch": "mlp", "hidden": [t_width] * t_depth, "dropout": 0.0},
                "students": [{"arch": "mlp", "hidden": [s_width] * s_depth, "dropout": 0.0}],
                "methods": [{"name": "kd"}], "temperatures": [T], "alphas": [0.9], "seeds": [0],
                "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01}}
        submit(spec, "pg-exp")
    show_experiment(PLAYGROUND, "pg-exp", draw_boundaries)


def show_experiment(name: str, state_key: str, draw) -> None:
    """Pick one of the experiments of this kind (the latest by default) and draw it when done."""
    exps = experiments_named(name)
    if not exps:
        st.caption("Nothing trained here yet.")
        return
    ids = [e["id"] for e in exps]
    current = st.session_state.get(state_key)
    index = ids.index(current) if current in ids else 0
    labels = {e["id"]: f"#{e['id']} · {e['spec'].get('dataset')} · {describe(e['spec'])}" for e in exps}
    exp_id = st.selectbox("Experiment", ids, index=index, format_func=labels.get, key=f"{state_key}-pick")
    if wait_for(exp_id, f"experiment #{exp_id}"):
        runs = {r["id"]: C.get_run(r["id"]) for r in experiment_runs(exp_id)}
        draw(exp_id, list(runs.values()))


def describe(spec: dict) -> str:
    s = (spec.get("students") or [{}])[0]
    bits = [f"student {s.get('hidden') if isinstance(s, dict) else s}", f"T={spec.get('temperatures', ['?'])[0]}"]
    if spec.get("transfer", {}).get("omit_class") is not None:
        bits.append(f"without class {spec['transfer']['omit_class']}")
    return " · ".join(bits)


def roles(runs: list[dict]) -> dict[str, dict]:
    """teacher / scratch / distilled run of a small experiment."""
    out = {}
    for r in runs:
        cfg = r["config"]
        if r["role"] == "teacher":
            out["teacher"] = r
        elif r["role"] == "student":
            out["scratch" if cfg["method"]["name"] == "scratch" else "distilled"] = r
    return out


def short_model(spec: dict) -> str:
    """"MLP 128-128" for an MLP, else the store's short name."""
    if spec.get("arch") == "mlp":
        return "MLP " + "-".join(str(h) for h in spec.get("hidden", [])) if spec.get("hidden") else "MLP"
    from distill_core.jobs.labels import model_label

    return model_label(spec)


def draw_boundaries(exp_id: int, runs: list[dict]) -> None:
    got = roles(runs)
    missing = [k for k in ("teacher", "scratch", "distilled") if k not in got]
    if missing:
        st.warning(f"Experiment #{exp_id} has no {', '.join(missing)} run to draw.")
        return
    home = str(C.home())
    steps = 120
    try:
        method = got["distilled"]["config"]["method"]
        names = {"teacher": "teacher", "scratch": "student from scratch",
                 "distilled": f"student distilled at T = {method.get('temperature', '?'):g}"}
        panels = [(f"{names[k]} · {short_model(got[k]['config']['model'])}", surface(home, got[k]["hash"], got[k]["config"], steps))
                  for k in ("teacher", "scratch", "distilled")]
    except FileNotFoundError as exc:
        st.warning(f"Cannot draw experiment #{exp_id}: {exc}")
        return
    fig = boundary_figure(panels)
    st.plotly_chart(fig, key="learn-boundaries")
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
        spec = {"name": OMITTED, "dataset": ds, "teacher": {"arch": "cnn", "channels": [32, 64], "kernel": 3},
                "students": [{"arch": "mlp", "hidden": [64], "dropout": 0.0}], "methods": [{"name": "kd"}],
                "temperatures": [T], "alphas": [0.9], "seeds": [0], "transfer": {"omit_class": int(k)},
                "train": {"epochs": epochs, "batch_size": 64, "lr": 0.002}}
        submit(spec, "om-exp")
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
    home = str(C.home())
    curves = {}
    biases = np.round(np.linspace(0, 10, 41), 2)
    for name in ("distilled", "scratch"):
        if name in got:
            z, y = run_logits(home, got[name]["hash"], got[name]["config"])
            curves[name] = teaching.class_bias_sweep(z, y, int(k), biases)
    t = got.get("teacher")
    t_class = None
    if t is not None:
        acc = ((t.get("result") or {}).get("metrics") or {}).get("per_class_accuracy")
        t_class = acc[k] if acc else None
    bias = st.slider(f"Bias added to class {k}'s logit at inference", 0.0, 10.0, 0.0, 0.25, key="om-bias")
    cols = st.columns(len(curves) + 1)
    for i, (name, c) in enumerate(curves.items()):
        z, y = run_logits(home, got[name]["hash"], got[name]["config"])
        now = teaching.class_bias_sweep(z, y, int(k), [bias]).iloc[0]
        base = c.iloc[0]
        cols[i].metric(f"{name}: accuracy on class {k}", f"{now['class_accuracy']:.1%}",
                       delta=f"{now['class_accuracy'] - base['class_accuracy']:+.1%} from the bias" if bias else None)
        cols[i].caption(f"all classes: {now['accuracy']:.2%} (without bias {base['accuracy']:.2%})")
    cols[-1].metric(f"teacher: accuracy on class {k}", f"{t_class:.1%}" if t_class is not None else "unavailable")
    fig = go.Figure()
    for name, c in curves.items():
        dash = "solid" if name == "distilled" else "dot"
        fig.add_trace(go.Scatter(x=c["bias"], y=c["class_accuracy"], name=f"{name}: class {k}", line=dict(dash=dash, color="#d62728")))
        fig.add_trace(go.Scatter(x=c["bias"], y=c["accuracy"], name=f"{name}: all classes", line=dict(dash=dash, color="#1f77b4")))
    fig.add_vline(x=bias, line=dict(color="#888", dash="dash"))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=f"bias added to class {k}",
                      yaxis_title="test accuracy", yaxis_tickformat=".0%")
    st.plotly_chart(fig, key="learn-omitted")
    if "distilled" in curves:
        c = curves["distilled"]
        best = c.loc[c["accuracy"].idxmax()]
        st.caption(f"Best bias for the distilled student: {best['bias']:g}, where it gets {best['class_accuracy']:.1%} of "
                   f"the {k}s it never saw and {best['accuracy']:.2%} overall (without bias: {c.iloc[0]['class_accuracy']:.1%} "
                   f"and {c.iloc[0]['accuracy']:.2%}). Beyond it, the bias starts to call other digits {k}s. "
                   "Biases are chosen here on the test set, for illustration.")


# ------------------------------------------------------------------------------- 6. presets


def measured_for(preset: str, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The store's runs of a preset's latest finished experiment, by role (teacher / scratch / kd)."""
    out = {}
    for e in experiments_named(preset):
        ids = {r["id"] for r in experiment_runs(e["id"]) if r["status"] == "done"}
        rows = frame[frame["run_id"].isin(ids)]
        for _, r in rows.iterrows():
            key = "teacher" if r["role"] == "teacher" else r["method"]
            out.setdefault(key, r)
        if out:
            return out
    return out


def section_presets(frame: pd.DataFrame) -> None:
    st.markdown("Each preset reproduces a published set-up at lab scale. Published figures come from the papers "
                "(often on larger data); measured ones from your runs of the preset.")
    for name, p in PRESETS.items():
        with st.expander(f"**{name}**: {p['description']}", expanded=bool(p["published"])):
            measured = measured_for(name, frame)
            runnable = {"teacher", "scratch", *(m["name"] if isinstance(m, dict) else m for m in p["spec"].get("methods", []))}
            rows = []
            for pub in p["published"] or [{"run": r, "metric": "accuracy", "value": None, "source": ""}
                                          for r in ("teacher", "scratch", "kd")]:
                m = measured.get(pub["run"])
                got = None
                if m is not None:
                    if pub["metric"] == "errors":
                        got = f"{m['errors']:.0f} of {m['n_test']:.0f} ({m['errors'] / m['n_test'] * pub.get('of', 10000):.0f} per {pub.get('of', 10000):,})"
                    else:
                        got = f"{m['accuracy']:.4f}"
                published = "—" if pub["value"] is None else (f"{pub['value']} of {pub['of']:,}" if pub.get("of") else f"{pub['value']}")
                rows.append({"run": pub["run"], "metric": pub["metric"], "published": published,
                             "measured here": got or ("not run yet" if pub["run"] in runnable else "not part of this preset"),
                             "source": pub.get("source", "")})
            st.dataframe(pd.DataFrame(rows), hide_index=True)
            if st.button("Run this preset", key=f"preset-{name}", icon=":material/play_arrow:"):
                submit(PRESETS[name]["spec"], f"preset-exp-{name}")


# ------------------------------------------------------------------------------- page


def pick_teacher() -> tuple[dict | None, dict | None]:
    # newest first, the 2-D toy sets last: their two or three classes show little dark knowledge
    teachers = sorted((t for t in C.store().teachers() if t["role"] == "teacher"), key=lambda t: t["dataset"] in TOY_SETS)
    if not teachers:
        st.info("No trained teacher in the store yet. Train a quick one (the digits preset, under a minute), or "
                "run any experiment.")
        if st.button("Train a quick teacher", icon=":material/play_arrow:", key="learn-quick"):
            submit(QUICK_TEACHER, "learn-quick-exp")
        if st.session_state.get("learn-quick-exp"):
            wait_for(st.session_state["learn-quick-exp"], "quick teacher")
        return None, None
    labels = {t["hash"]: f"{t['model']} on {t['dataset']} · test accuracy {t['test_accuracy']:.3f}" for t in teachers}
    h = st.selectbox("Teacher (for the first three tabs)", list(labels), format_func=labels.get, key="learn-teacher",
                     help="any trained teacher in the store; its test-set outputs are cached with it")
    t = next(t for t in teachers if t["hash"] == h)
    out = teacher_outputs(str(C.home()), h, t["config"])
    if out is None:
        st.warning("This teacher's cached outputs are gone (deleted?). Pick another one.")
        return t, None
    return t, out


def main() -> None:
    C.page_style()
    st.title("Learn")
    st.caption("Knowledge distillation, seen: how temperature softens a teacher, which classes it thinks alike, "
               "what the loss is made of, and what a student learns from soft targets.")
    frame = C.results_frame()
    teacher, out = pick_teacher()
    tabs = st.tabs(["Temperature", "Dark knowledge", "The KD loss", "Decision boundaries", "Omitted class", "Paper presets"])
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


main()
