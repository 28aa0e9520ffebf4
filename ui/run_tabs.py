"""The tabs of the Run detail page, one function each, from a finished run as the store keeps it."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from distill_core import paths
from distill_core.constants import STUDENT
from distill_core.errors import DistillError
from distill_core.measure.budgets import check_budgets, load_profiles
from distill_core.teaching import soften

from . import figures, run_figures, state
from .format import fmt_bytes, fmt_co2, fmt_count, fmt_energy, fmt_ms, fmt_pct, fmt_seconds, unavailable

RUNTIMES = (("torch", "PyTorch"), ("onnx", "ONNX Runtime fp32"), ("onnx_int8", "ONNX Runtime int8"))


def training(cfg: dict, result: dict) -> None:
    train = result.get("train") or {}
    if train.get("history"):
        figures.plot(figures.curves_figure(history=train["history"]), key="curves")
        st.caption(f"{len(train['history'])} epochs in {fmt_seconds(train.get('seconds'))} on {train.get('device')} "
                   f"({train.get('threads')} thread(s)); weights of epoch {train.get('kept_epoch') or len(train['history'])} kept; "
                   f"best validation accuracy at epoch {train.get('best_epoch')}"
                   + (" (stopped early)" if train.get("stopped_early") else "")
                   + (" · teacher reused from the cache" if result.get("teacher_cached") else ""))
    else:
        why = {"weights": "this model was loaded from uploaded weights, not trained here",
               "onnx": "this teacher is an ONNX file, run as given", "outputs": "this teacher is a file of its outputs",
               "sklearn": "a scikit-learn model is fitted, not trained epoch by epoch",
               "ensemble": "an ensemble is made from its members (each has its own run)"}
        unavailable("Training curves", why.get((result.get("teacher") or {}).get("kind") or ("weights" if cfg.get("weights") else ""),
                                               "no training history was recorded"))
    with st.expander("Configuration"):
        st.json(cfg, expanded=False)


def teacher_source(result: dict) -> None:
    """What a teacher run is made of, when it is not a network trained here: how its outputs
    were read, and an ensemble's members with their accuracy and agreement with the ensemble."""
    about = result.get("teacher") or {}
    if about.get("outputs_taken_as"):
        st.caption(f"Its outputs were taken as {about['outputs_taken_as']}.")
    if about.get("members"):
        st.markdown(f"**Members** ({about.get('combine')}): each has a run of its own.")
        st.dataframe(pd.DataFrame([{"member": m["model"], "kind": m["kind"], "test accuracy": m["test_accuracy"],
                                    "agreement with the ensemble": m["agreement_with_ensemble"], "run hash": m["hash"]}
                                   for m in about["members"]]), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("test accuracy", "agreement with the ensemble")})


def errors(cfg: dict, metrics: dict, baseline: pd.Series | None) -> None:
    try:
        names = state.cached_data_info(cfg["dataset"])["class_names"]
    except (OSError, DistillError):  # the data file is gone: number the classes instead
        names = None
    confusion, per_class = metrics.get("confusion"), metrics.get("per_class_accuracy")
    if not confusion:
        unavailable("Confusion matrix", "the run recorded no test predictions")
        return
    k = len(confusion)
    names = names if names and len(names) == k else [str(i) for i in range(k)]
    scratch = None
    if baseline is not None:
        scratch = (((state.get_run(int(baseline.run_id)) or {}).get("result") or {}).get("metrics") or {}).get("per_class_accuracy")
        scratch = scratch if scratch and len(scratch) == k else None
    left, right = st.columns(2)
    with left:
        figures.plot(run_figures.confusion_figure(confusion, names), key="confusion")
    with right:
        figures.plot(run_figures.per_class_figure(names, per_class, scratch), key="per_class")


def calibration(metrics: dict) -> None:
    table = [b for b in metrics.get("reliability") or [] if b.get("count")]
    if not table:
        unavailable("Reliability diagram", "the run recorded no calibration table")
        return
    figures.plot(run_figures.reliability_figure(table, metrics.get("ece", float("nan"))), key="reliability")
    st.caption("Bars above the diagonal: the model is under-confident there; below: over-confident.")


def predictions(run: dict, method: dict) -> None:
    st.markdown("The teacher's and this model's probabilities on test samples, softened at temperature *T*: "
                "at T = 1 they are the models' own predictions; a higher T shows the small probabilities "
                "(the *dark knowledge*) a distilled student learns from.")
    p1, p2, p3 = st.columns(3)
    temperature = p1.slider("Temperature T", 0.5, 20.0, float(method.get("temperature", 4.0) or 4.0), 0.5, key="detail_T")
    n = p2.slider("Samples", 2, 12, 6, 2, key="detail_n")
    seed = p3.number_input("Sample draw", 0, 10_000, 0, key="detail_seed", help="change it to see other samples")
    try:
        got = state.cached_sample_logits(state.run_config(run), int(n), int(seed))
    except (OSError, DistillError, RuntimeError) as exc:
        unavailable("Predictions", str(exc))
        return
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
            fig = run_figures.sample_figure(got["x"][i], got["kind"], names, ps[i], None if pt is None else pt[i],
                                            names[int(got["y"][i])])
            figures.plot(fig, key=f"sample_{i}")


def cost(run: dict, result: dict, frame: pd.DataFrame) -> None:
    m = result.get("measure") or {}
    if not m or m.get("available") is False:
        unavailable("Measurements", m.get("reason") if m else "this run was not measured")
        return
    size, comp, lat = m.get("size") or {}, m.get("compute") or {}, m.get("latency") or {}
    teacher = None
    if run["role"] == STUDENT and not frame.empty and result.get("teacher_hash"):
        t = frame[frame.hash == result["teacher_hash"]]
        teacher = t.iloc[-1] if not t.empty else None
    a, b, d, e = st.columns(4)
    to = None if teacher is None else teacher.get("measure.size.onnx_bytes")
    a.metric("ONNX fp32", fmt_bytes(size.get("onnx_bytes")),
             delta=None if not to or to != to or not size.get("onnx_bytes") else f"{to / size['onnx_bytes']:.1f}x smaller than "
             "the teacher's", delta_color="off")
    tb = None if teacher is None else teacher.get("measure.size.fp32_bytes")
    b.metric("fp32 weights", fmt_bytes(size.get("fp32_bytes")),
             delta=None if not tb or tb != tb else f"{tb / size['fp32_bytes']:.1f}x smaller than the teacher", delta_color="off")
    d.metric("int8 ONNX", fmt_bytes(size.get("int8_bytes")))
    if "flops" in comp:
        tf = None if teacher is None else teacher.get("measure.compute.flops")
        e.metric("FLOPs / sample", fmt_count(comp["flops"]),
                 delta=None if not tf or tf != tf else f"{tf / max(comp['flops'], 1):.1f}x fewer than the teacher", delta_color="off")
    else:
        e.metric("FLOPs / sample", "unavailable", help=comp.get("reason"))

    st.markdown(f"**Latency** (batch 1, {m.get('threads')} thread(s), median and 95th percentile over many calls after warm-up)")
    rows = []
    for key, name in RUNTIMES:
        t, tb_ = lat.get(key) or {}, lat.get(f"{key}_batch") or {}
        rows.append({"runtime": name,
                     "median": fmt_ms(t.get("median_ms")) if "median_ms" in t else f"unavailable: {t.get('reason', 'not measured')}",
                     "p95": fmt_ms(t.get("p95_ms")) if "p95_ms" in t else "",
                     "repetitions": t.get("reps"),
                     "throughput": f"{tb_['samples_per_s']:,.0f} samples/s (batch {tb_['batch']})" if tb_.get("samples_per_s") else ""})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    shared = m.get("shared") or {}
    if shared.get("measured_by"):
        st.caption("FLOPs, latency and inference energy depend only on the architecture: they were measured once, by "
                   + ", ".join(run_names(shared["measured_by"], frame)) + ", and carried by this run "
                   "(same architecture, input shape, threads and runtimes). Accuracy and the files are this run's own.")
    int8(m, result.get("qad"))
    energy(result.get("energy") or {}, frame)


def run_names(hashes: list[str], frame: pd.DataFrame) -> list[str]:
    """"run #12" for each run hash the results frame knows, else its first 12 characters."""
    ids = dict(zip(frame["hash"], frame["run_id"])) if not frame.empty else {}
    return [f"run #{int(ids[h])}" if h in ids else f"run {h[:12]}" for h in hashes]


VARIANT_NAMES = {"static": "static (calibrated, QDQ)", "dynamic": "dynamic (activations at run time)",
                 "qad": "QAD (fine-tuned as int8)"}


def int8(m: dict, qad: dict | None) -> None:
    """The deployed int8 model beside fp32, every int8 variant measured, and QAD's before and after."""
    i8 = m.get("int8") or {}
    if i8.get("accuracy") is None:
        st.markdown(f"**int8**: unavailable: {i8.get('reason', 'not measured')}")
        return
    change = -100 * i8["accuracy_drop"] + 0.0  # + 0.0: no "-0.00"
    # runs measured before static int8 existed deployed dynamic int8 and did not name it
    variant = i8.get("variant") or ("dynamic" if "quantize_dynamic" in str(i8.get("method")) else "int8")
    st.markdown(f"**int8, deployed: {VARIANT_NAMES.get(variant, variant)}**: test accuracy "
                f"{fmt_pct(i8['accuracy'], 2)} against {fmt_pct(i8['fp32_accuracy'], 2)} in fp32 ({change:+.2f} pts); "
                f"agrees with fp32 on {fmt_pct(i8['agreement_with_fp32'])} of the test set"
                + (f"; calibrated on {i8['calibration']['samples']} training samples ({i8['calibration']['method']}, "
                   f"seed {i8['calibration']['seed']})" if i8.get("calibration") else "") + ".")
    rows = [{"variant": VARIANT_NAMES.get(k, k), "bytes": fmt_bytes(v.get("bytes")),
             "accuracy": fmt_pct(v.get("accuracy"), 2) if v.get("accuracy") is not None else v.get("reason", ""),
             "change (pts)": f"{-100 * v['accuracy_drop'] + 0.0:+.2f}" if v.get("accuracy_drop") is not None else "",
             "batch 1": fmt_ms((v.get("latency") or {}).get("median_ms", v.get("latency_ms"))),
             "deployed": "yes" if k == i8.get("variant") else ""}
            for k, v in (m.get("int8_variants") or {}).items()]
    if len(rows) > 1:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    if qad:
        st.markdown(f"**QAD**: int8 accuracy {fmt_pct(i8.get('ptq_accuracy'), 2)} after post-training quantisation of "
                    f"the fp32 student it started from ({fmt_pct(qad['start_accuracy'], 2)}), "
                    f"{fmt_pct(i8['accuracy'], 2)} after fine-tuning with KD from the fp32 {qad['kd_from']}; the "
                    f"deployed file agrees with its PyTorch simulation on {fmt_pct(i8.get('agreement_with_simulation'), 2)} "
                    "of the test set.")
    if i8.get("chosen_by"):
        st.caption(f"Deployed variant: {i8['chosen_by']}. Changes made to the file: {', '.join(i8.get('edits') or []) or 'none'}.")


def energy(e: dict, frame: pd.DataFrame) -> None:
    st.markdown("**Energy** (CodeCarbon, offline)")
    if not e.get("available"):
        unavailable("Energy", e.get("reason"))
        return
    rows = []
    for phase, p in (e.get("phases") or {}).items():
        if p.get("available"):
            rows.append({"phase": phase.replace("_", " "), "energy": fmt_energy(p["kwh"]), "kWh": p["kwh"],
                         "CO2eq": fmt_co2(p["kg_co2eq"]), "seconds": round(p.get("seconds", 0), 2),
                         "how": p.get("label"), "this run": (f"shared by {run_names([p['shared_from']], frame)[0]}"
                                                             if p.get("shared_from") else "reused" if p.get("reused") else "spent")})
        else:
            rows.append({"phase": phase.replace("_", " "), "energy": f"unavailable: {p.get('reason')}", "kWh": None,
                         "CO2eq": "", "seconds": None, "how": "", "this run": ""})
    df = pd.DataFrame(rows)
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(df.drop(columns=["kWh"]), hide_index=True)
    with right:
        ok = df.dropna(subset=["kWh"])
        figures.plot(run_figures.energy_figure(list(ok["phase"]), list(ok["kWh"]), [r != "spent" for r in ok["this run"]]),
                     key="energy")
        st.caption("Grey: phases this run did not spend again: the cached teacher's, and inference measured once "
                   "for this architecture.")
    st.markdown(f"Total for this run: **{fmt_energy(e['total_kwh'])}**, {fmt_co2(e['total_kg_co2eq'])} "
                f"(country {e.get('country')}), **{e['label']}**: {e.get('method')}."
                + (f" Reuse (the cached teacher, shared measurements) saved {fmt_energy(e['saved_kwh'])}."
                   if e.get("saved_kwh") else "")
                + (f" Inference: {fmt_energy(e['inference_kwh_per_1000'])} per 1,000 predictions."
                   if e.get("inference_kwh_per_1000") is not None else ""))


def budgets(result: dict, home: Path) -> None:
    m = result.get("measure") or {}
    if not m or m.get("available") is False:
        unavailable("Budgets", "the run has no measurements to check")
        return
    try:
        checks = check_budgets(m, load_profiles(home))
    except DistillError as exc:
        checks = []
        st.error(str(exc))
    word = {True: "✓ fits", False: "✗ does not fit", None: "? not measured"}

    def show(x: dict) -> str:
        fmt = fmt_bytes if x["what"].endswith("bytes") else fmt_ms
        sign = {True: "≤", False: ">", None: "vs"}[x["ok"]]
        what = x["what"].removesuffix(" bytes").removesuffix(" batch-1 median ms")
        return f"{what}: {fmt(x['value'])} {sign} {fmt(x['limit'])}"

    rows = [{"profile": b["profile"], "verdict": word[b["fits"]], "target": b["description"],
             "checks": "; ".join(show(x) for x in b["checks"])} for b in checks]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption(f"Profiles from the defaults and {home / paths.BUDGETS} (edit it to add your board). "
               "Latency is measured on this machine: a proxy for the target.")
