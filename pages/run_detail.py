"""Run detail: one run in full. Curves, errors, calibration, the teacher's and the student's
softened predictions on real samples, every measurement, budgets, and every file to take away.

The run is chosen by the `run` query parameter (…/run_detail?run=12), so a link opens it directly.
"""
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from distill_core.errors import DistillError
from distill_core.teaching import entropy, soften
from distill_core.report import curves_from_events, progress_fraction, progress_text
from pages import common as c

c.page_style()
s = c.store()
settings = c.load_settings()


# -- which run --------------------------------------------------------------------------------
def choose_run() -> int | None:
    raw = st.query_params.get("run")
    if raw is not None:
        try:
            return int(raw)
        except ValueError:
            st.error(f"run={raw!r} is not a run id (a whole number such as run=12)")
    runs = s.list_runs(newest_first=True, limit=500)
    if not runs:
        st.title("Run detail")
        st.info("No runs yet. Launch the quick demo on **Home** or design an experiment.")
        return None
    runs.sort(key=lambda r: (r["status"] != "done", r["role"] != "student", -r["id"]))
    labels = {r["id"]: f"#{r['id']} {r['label']} ({r['status']})" for r in runs}
    picked = st.selectbox("Run", list(labels), format_func=labels.get, index=None, placeholder="choose a run")
    if picked is not None:
        st.query_params["run"] = str(picked)
        st.rerun()
    return None


run_id = choose_run()
if run_id is None:
    st.stop()
run = c.get_run(run_id)
if run is None:
    st.title("Run detail")
    st.error(f"There is no run #{run_id} in {s.home} (deleted, or another home folder).")
    if st.button("Choose another run"):
        del st.query_params["run"]
        st.rerun()
    st.stop()

cfg = run["config"] or {}
result = run["result"] or {}
metrics = result.get("metrics") or {}
method = cfg.get("method") or {}

from distill_core.jobs.labels import method_label, model_label
from distill_core.models import describe_spec

try:
    short = describe_spec(cfg["model"]) + ("" if run["role"] != "student" else f" · {method_label(method)} · seed {cfg.get('seed')}")
except (DistillError, KeyError):
    short = run["label"]
st.title(f"#{run_id} {short}" if run["role"] == "student" else f"#{run_id} {run['role']} {short}")
bits = [c.status_label(run["status"]), run["role"], f"model **{model_label(cfg.get('model'))}**", f"data set **{(cfg.get('dataset') or {}).get('name')}**",
        f"method **{method.get('name')}**", f"seed {cfg.get('seed')}"]
if cfg.get("teacher"):
    bits.append(f"teacher **{model_label(cfg['teacher'].get('model'))}**")
st.markdown(" · ".join(bits))
if st.button("Choose another run", key="other_run", type="tertiary"):
    del st.query_params["run"]
    st.rerun()


# -- not finished ------------------------------------------------------------------------------
if run["status"] in c.ACTIVE:
    @st.fragment(run_every=settings["refresh_seconds"])
    def live():
        now = s.list_runs(status=list(c.ACTIVE))
        me = next((r for r in now if r["id"] == run_id), None)
        if me is None:
            st.rerun()  # it finished: draw the full page
        if me["status"] == "queued":
            st.info("Queued: waiting for a worker" + (" and for its teacher run" if run.get("depends_on") else "") + ".")
            return
        st.progress(progress_fraction("running", me.get("progress")), text=progress_text("running", me.get("progress")))
        curves = curves_from_events(s.progress(run_id))
        if curves:
            c.plot(c.curves_figure(live=curves), key="detail_live")
        if st.button("Cancel this run", key="detail_cancel"):
            st.toast(s.cancel(run_id))

    live()
    st.stop()

if run["status"] != "done":
    st.error(run.get("error") or f"the run is {run['status']}")
    if run.get("traceback"):
        with st.expander("Traceback"):
            st.code(run["traceback"], language="text")

    def retry():
        try:
            s.retry(run_id)
            c.start_workers(settings)
        except DistillError as exc:
            st.session_state["detail_note"] = str(exc)

    st.button("Retry", on_click=retry, key="detail_retry")
    if st.session_state.get("detail_note"):
        st.error(st.session_state.pop("detail_note"))
    st.stop()


# -- headline figures ---------------------------------------------------------------------------
frame = c.results_frame()


def scratch_row():
    """The same student trained from scratch on the same data and seed (the baseline)."""
    if run["role"] != "student" or method.get("name") == "scratch" or frame.empty:
        return None
    me = frame[frame.run_id == run_id]
    if me.empty:
        return None
    me = me.iloc[0]
    same = frame[(frame.method == "scratch") & (frame.role == "student") & (frame.model == me.model)
                 & (frame.dataset == me.dataset) & (frame.seed == me.seed)]
    if same.empty:
        return None
    best = same[same.teacher_hash == me.teacher_hash]
    return (best if not best.empty else same).iloc[-1]


base = scratch_row()
acc = metrics.get("accuracy")
cols = st.columns(6)
cols[0].metric("test accuracy", c.fmt_pct(acc),
               delta=None if base is None else f"{100 * (acc - base.accuracy):+.1f} pts vs scratch",
               help="the same student trained from scratch on the same seed" if base is not None else None)
cols[1].metric("teacher accuracy", c.fmt_pct(result.get("teacher_accuracy")) if run["role"] != "teacher" else "(this run)")
cols[2].metric("agreement", c.fmt_pct(metrics.get("teacher_agreement")),
               help="share of test samples where this model and its teacher predict the same class")
kl = metrics.get("teacher_kl")
cols[3].metric("KL to teacher", "unavailable" if kl is None else f"{kl:.3f}", help="KL(teacher ‖ student) on the test set at T = 1, in nats")
cols[4].metric("ECE", "unavailable" if metrics.get("ece") is None else f"{metrics['ece']:.3f}",
               help="expected calibration error (15 bins): how far confidence is from accuracy")
cols[5].metric("parameters", c.fmt_count(result.get("params")))
if run["role"] == "teacher":
    st.caption("Agreement and KL compare a student with its teacher; this run is the teacher.")

tabs = st.tabs(["Training", "Errors", "Calibration", "Predictions", "Cost", "Budgets", "Files"])

# -- training -----------------------------------------------------------------------------------
with tabs[0]:
    train = result.get("train") or {}
    if train.get("history"):
        c.plot(c.curves_figure(history=train["history"]), key="curves")
        st.caption(f"{len(train['history'])} epochs in {c.fmt_seconds(train.get('seconds'))} on {train.get('device')} "
                   f"({train.get('threads')} thread(s)); weights of epoch {train.get('kept_epoch') or len(train['history'])} kept; "
                   f"best validation accuracy at epoch {train.get('best_epoch')}"
                   + (" (stopped early)" if train.get("stopped_early") else "")
                   + (" · teacher reused from the cache" if result.get("teacher_cached") else ""))
    else:
        c.unavailable("Training curves", "this model was loaded from uploaded weights, not trained here"
                      if cfg.get("weights") else "no training history was recorded")
    with st.expander("Configuration"):
        st.json(cfg, expanded=False)

# -- errors -------------------------------------------------------------------------------------
with tabs[1]:
    try:
        names = c.cached_data_info(cfg["dataset"])["class_names"]
    except (OSError, DistillError):  # the data file is gone: number the classes instead
        names = None
    confusion = metrics.get("confusion")
    per_class = metrics.get("per_class_accuracy")
    if confusion:
        k = len(confusion)
        names = names if names and len(names) == k else [str(i) for i in range(k)]
        left, right = st.columns(2)
        with left:
            z = np.array(confusion)
            fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=z, texttemplate="%{text}",
                                       hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
            fig.update_layout(title="Confusion matrix (test)", xaxis_title="predicted", yaxis_title="true",
                              xaxis_type="category", yaxis_type="category",
                              yaxis_autorange="reversed", height=420, margin=dict(l=10, r=10, t=40, b=10))
            c.plot(fig, key="confusion")
        with right:
            fig = go.Figure(go.Bar(x=names, y=per_class, marker_color="#3b6ea5", name="this model",
                                   hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
            if base is not None:
                base_run = c.get_run(int(base.run_id)) or {}
                bpc = ((base_run.get("result") or {}).get("metrics") or {}).get("per_class_accuracy")
                if bpc and len(bpc) == k:
                    fig.add_trace(go.Scatter(x=names, y=bpc, mode="markers", name="same student from scratch",
                                             marker=dict(size=22, symbol="line-ew", line=dict(width=3, color="#f0ad4e")),
                                             hovertemplate="scratch %{x}: %{y:.1%}<extra></extra>"))
            fig.update_layout(title="Accuracy per class", yaxis_tickformat=".0%", yaxis_range=[0, 1.02], height=420,
                              xaxis_type="category", margin=dict(l=10, r=10, t=40, b=10), showlegend=base is not None,
                              legend=dict(orientation="h", y=-0.12))
            c.plot(fig, key="per_class")
    else:
        c.unavailable("Confusion matrix", "the run recorded no test predictions")

# -- calibration --------------------------------------------------------------------------------
with tabs[2]:
    table = [b for b in metrics.get("reliability") or [] if b.get("count")]
    if table:
        mid = [(b["lo"] + b["hi"]) / 2 for b in table]
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(go.Bar(x=mid, y=[b["accuracy"] for b in table], width=[b["hi"] - b["lo"] for b in table],
                             name="accuracy in bin", marker_color="#3b6ea5", opacity=0.8,
                             customdata=[b["count"] for b in table],
                             hovertemplate="confidence %{x:.2f}: accuracy %{y:.1%} (%{customdata} samples)<extra></extra>"))
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line=dict(dash="dash", color="grey")))
        fig.add_trace(go.Scatter(x=mid, y=[b["confidence"] for b in table], mode="markers", name="mean confidence",
                                 marker=dict(color="#d9534f")))
        fig.update_layout(title=f"Reliability diagram (ECE {metrics.get('ece', float('nan')):.3f})", xaxis_title="confidence",
                          yaxis_title="accuracy", xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=420, bargap=0,
                          margin=dict(l=10, r=10, t=40, b=10))
        c.plot(fig, key="reliability")
        st.caption("Bars above the diagonal: the model is under-confident there; below: over-confident.")
    else:
        c.unavailable("Reliability diagram", "the run recorded no calibration table")

# -- predictions ----------------------------------------------------------------------------------
with tabs[3]:
    st.markdown("The teacher's and this model's probabilities on test samples, softened at temperature *T*: "
                "at T = 1 they are the models' own predictions; a higher T shows the small probabilities "
                "(the *dark knowledge*) a distilled student learns from.")
    p1, p2, p3 = st.columns(3)
    temperature = p1.slider("Temperature T", 0.5, 20.0, float(method.get("temperature", 4.0) or 4.0), 0.5, key="detail_T")
    n = p2.slider("Samples", 2, 12, 6, 2, key="detail_n")
    seed = p3.number_input("Sample draw", 0, 10_000, 0, key="detail_seed", help="change it to see other samples")
    try:
        got = c.cached_sample_logits(run["hash"], cfg, int(n), int(seed))
    except (OSError, DistillError, RuntimeError) as exc:
        got = None
        c.unavailable("Predictions", str(exc))
    if got is not None:
        names = got["class_names"]
        ps = soften(got["student"], temperature).numpy()
        pt = soften(got["teacher"], temperature).numpy() if got["teacher"] is not None else None
        if pt is None:
            st.caption(f"Teacher: unavailable: {got['teacher_reason']}")
        else:
            st.markdown(f"**:orange[teacher]** and **:blue[this model]** at T = {temperature:g}")
        grid = st.columns(2)
        for i in range(len(got["y"])):
            with grid[i % 2].container(border=True):
                truth = names[int(got["y"][i])]
                pred = names[int(ps[i].argmax())]
                fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.08)
                x = got["x"][i]
                if got["kind"] == "image":
                    img = x.mean(0) if x.shape[0] != 1 else x[0]
                    fig.add_trace(go.Heatmap(z=img, colorscale="gray_r", showscale=False, hoverinfo="skip"), 1, 1)
                    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False,
                                     ticks="", row=1, col=1)
                    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, ticks="", row=1, col=1)
                elif got["kind"] == "signal":
                    for ch in x:
                        fig.add_trace(go.Scatter(y=ch, mode="lines", showlegend=False, line=dict(color="#555")), 1, 1)
                else:
                    flat = x.reshape(-1)[:32]
                    fig.add_trace(go.Bar(y=flat, showlegend=False, marker_color="#888"), 1, 1)
                if pt is not None:
                    fig.add_trace(go.Bar(x=names, y=pt[i], name="teacher", marker_color="#f0ad4e"), 1, 2)
                fig.add_trace(go.Bar(x=names, y=ps[i], name="this model", marker_color="#3b6ea5"), 1, 2)
                fig.update_yaxes(range=[0, 1], row=1, col=2)
                fig.update_xaxes(type="category", row=1, col=2)
                title = f"true {truth} · predicted {pred} · entropy {entropy(ps[i]).item():.2f} bits"
                fig.update_layout(title=dict(text=title, font=dict(size=13)), height=230, barmode="group", showlegend=False,
                                  margin=dict(l=5, r=5, t=35, b=5))
                c.plot(fig, key=f"sample_{i}")

# -- cost ---------------------------------------------------------------------------------------
with tabs[4]:
    m = result.get("measure") or {}
    if not m:
        c.unavailable("Measurements", "this run was not measured")
    elif m.get("available") is False:
        c.unavailable("Measurements", m.get("reason"))
    else:
        size, comp, lat = m.get("size") or {}, m.get("compute") or {}, m.get("latency") or {}
        teacher = None
        if run["role"] == "student" and not frame.empty and result.get("teacher_hash"):
            t = frame[(frame.hash == result["teacher_hash"])]
            teacher = t.iloc[-1] if not t.empty else None
        a, b, d, e = st.columns(4)
        a.metric("ONNX fp32", c.fmt_bytes(size.get("onnx_bytes")))
        tb = None if teacher is None else teacher.get("measure.size.fp32_bytes")
        b.metric("fp32 weights", c.fmt_bytes(size.get("fp32_bytes")),
                 delta=None if not tb or tb != tb else f"{tb / size['fp32_bytes']:.1f}x smaller than the teacher", delta_color="off")
        d.metric("int8 ONNX", c.fmt_bytes(size.get("int8_bytes")))
        if "flops" in comp:
            tf = None if teacher is None else teacher.get("measure.compute.flops")
            e.metric("FLOPs / sample", c.fmt_count(comp["flops"]),
                     delta=None if not tf or tf != tf else f"{tf / max(comp['flops'], 1):.1f}x fewer than the teacher", delta_color="off")
        else:
            e.metric("FLOPs / sample", "unavailable", help=comp.get("reason"))

        st.markdown(f"**Latency** (batch 1, {m.get('threads')} thread(s), median and 95th percentile over many calls after warm-up)")
        rows = []
        for key, name in (("torch", "PyTorch"), ("onnx", "ONNX Runtime fp32"), ("onnx_int8", "ONNX Runtime int8")):
            t = lat.get(key) or {}
            tb_ = lat.get(f"{key}_batch") or {}
            rows.append({"runtime": name,
                         "median": c.fmt_ms(t.get("median_ms")) if "median_ms" in t else f"unavailable: {t.get('reason', 'not measured')}",
                         "p95": c.fmt_ms(t.get("p95_ms")) if "p95_ms" in t else "",
                         "repetitions": t.get("reps"),
                         "throughput": f"{tb_['samples_per_s']:,.0f} samples/s (batch {tb_['batch']})" if tb_.get("samples_per_s") else ""})
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        i8 = m.get("int8") or {}
        if i8.get("accuracy") is not None:
            change = -100 * i8["accuracy_drop"] + 0.0  # + 0.0: no "-0.00"
            st.markdown(f"**int8**: test accuracy {c.fmt_pct(i8['accuracy'], 2)} against {c.fmt_pct(i8['fp32_accuracy'], 2)} "
                        f"in fp32 ({change:+.2f} pts); agrees with fp32 on {c.fmt_pct(i8['agreement_with_fp32'])} of the test set.")
        else:
            st.markdown(f"**int8**: unavailable: {i8.get('reason', 'not measured')}")

        energy = result.get("energy") or {}
        st.markdown("**Energy** (CodeCarbon, offline)")
        if not energy.get("available"):
            c.unavailable("Energy", energy.get("reason"))
        else:
            rows = []
            for phase, p in (energy.get("phases") or {}).items():
                if p.get("available"):
                    rows.append({"phase": phase.replace("_", " "), "energy": c.fmt_energy(p["kwh"]), "kWh": p["kwh"],
                                 "CO2eq": c.fmt_co2(p["kg_co2eq"]), "seconds": round(p.get("seconds", 0), 2),
                                 "how": p.get("label"), "this run": "reused" if p.get("reused") else "spent"})
                else:
                    rows.append({"phase": phase.replace("_", " "), "energy": f"unavailable: {p.get('reason')}", "kWh": None,
                                 "CO2eq": "", "seconds": None, "how": "", "this run": ""})
            df = pd.DataFrame(rows)
            left, right = st.columns([3, 2])
            with left:
                st.dataframe(df.drop(columns=["kWh"]), hide_index=True)
            with right:
                ok = df.dropna(subset=["kWh"])
                fig = go.Figure(go.Bar(x=ok["phase"], y=ok["kWh"] * 1e6, marker_color=["#bbb" if r == "reused" else "#5cb85c" for r in ok["this run"]],
                                       hovertemplate="%{x}: %{y:.3g} mWh<extra></extra>"))
                fig.update_layout(title="Energy per phase", yaxis_title="mWh", height=280, margin=dict(l=10, r=10, t=40, b=10))
                c.plot(fig, key="energy")
                st.caption("Grey: phases of the cached teacher, reused by this run, not spent again.")
            st.markdown(f"Total for this run: **{c.fmt_energy(energy['total_kwh'])}**, {c.fmt_co2(energy['total_kg_co2eq'])} "
                        f"(country {energy.get('country')}), **{energy['label']}**: {energy.get('method')}."
                        + (f" Reusing the cached teacher saved {c.fmt_energy(energy['saved_kwh'])}." if energy.get("saved_kwh") else "")
                        + (f" Inference: {c.fmt_energy(energy['inference_kwh_per_1000'])} per 1,000 predictions."
                           if energy.get("inference_kwh_per_1000") is not None else ""))

# -- budgets ------------------------------------------------------------------------------------
with tabs[5]:
    m = result.get("measure") or {}
    if not m or m.get("available") is False:
        c.unavailable("Budgets", "the run has no measurements to check")
    else:
        from distill_core.measure.budgets import check_budgets, load_profiles

        try:
            checks = check_budgets(m, load_profiles(s.home))
        except DistillError as exc:
            checks = []
            st.error(str(exc))
        word = {True: "✓ fits", False: "✗ does not fit", None: "? not measured"}

        def show(x: dict) -> str:
            fmt = c.fmt_bytes if x["what"].endswith("bytes") else c.fmt_ms
            sign = {True: "≤", False: ">", None: "vs"}[x["ok"]]
            what = x["what"].removesuffix(" bytes").removesuffix(" batch-1 median ms")
            return f"{what}: {fmt(x['value'])} {sign} {fmt(x['limit'])}"

        rows = [{"profile": b["profile"], "verdict": word[b["fits"]], "target": b["description"],
                 "checks": "; ".join(show(x) for x in b["checks"])} for b in checks]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.caption(f"Profiles from the defaults and {s.home / 'budgets.json'} (edit it to add your board). "
                   "Latency is measured on this machine: a proxy for the target.")

# -- files ---------------------------------------------------------------------------------------
FILES = [
    ("model.onnx", "ONNX model (fp32)", "application/octet-stream"),
    ("model.int8.onnx", "ONNX model (int8)", "application/octet-stream"),
    ("weights.safetensors", "weights (.safetensors)", "application/octet-stream"),
    ("model.pt2", "torch.export program (.pt2)", "application/octet-stream"),
    ("model_card.md", "model card (Markdown)", "text/markdown"),
    ("model_card.json", "model card (JSON)", "application/json"),
    ("config.json", "run config (JSON)", "application/json"),
    ("result.json", "full result (JSON)", "application/json"),
    ("emissions.csv", "CodeCarbon log (CSV)", "text/csv"),
]
with tabs[6]:
    folder = Path(run.get("folder") or s.home / "runs" / run["hash"])
    present = [(f, what, mime) for f, what, mime in FILES if (folder / f).is_file()]
    if not present:
        c.unavailable("Files", f"nothing in {folder} (deleted?)")
    errors = ((result.get("measure") or {}).get("export_errors") or {})
    for f, what, mime in present:
        path = folder / f
        cols = st.columns([2, 5], vertical_alignment="center")
        cols[0].download_button(f"Download {what}", data=partial(path.read_bytes), file_name=f"run{run_id}-{f}", mime=mime,
                                on_click="ignore", key=f"dl_{f}", icon=":material/download:")
        cols[1].caption(c.fmt_bytes(path.stat().st_size))
    for what, why in errors.items():
        if why:
            st.warning(f"{what} export failed: {why}")
    card = folder / "model_card.md"
    if card.is_file():
        with st.expander("Model card"):
            st.markdown(card.read_text(encoding="utf-8"))
    st.caption(f"Folder: `{folder}`")
