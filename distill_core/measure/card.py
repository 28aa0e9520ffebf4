"""Model card (Markdown and JSON) written from a run's result: what the model is, how it was
made, what it scores and costs, and how to load each exported file."""
from __future__ import annotations

import json
from pathlib import Path

from .. import paths
from ..models import describe_spec


def _fmt(v, unit: str = "", digits: int = 4) -> str:
    if v is None:
        return "unavailable"
    if isinstance(v, float):
        return f"{v:.{digits}g}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


def card_data(result: dict, info=None) -> dict:
    """The card's content as plain data (also what the JSON card holds)."""
    cfg = result.get("config") or {}
    m = result.get("measure") or {}
    method = dict(cfg.get("method") or {})
    teacher = cfg.get("teacher") or None
    energy = result.get("energy") or {}
    metrics = {k: v for k, v in (result.get("metrics") or {}).items()
               if k in ("accuracy", "top5_accuracy", "nll", "ece", "errors", "n_test", "teacher_agreement", "teacher_kl")}
    return {
        "run": result.get("hash"),
        "role": result.get("role"),
        "dataset": {**(cfg.get("dataset") or {}),
                    **({"input_shape": list(info.input_shape), "classes": info.num_classes, "kind": info.kind,
                        "source": info.source, "citation": info.citation} if info is not None else {})},
        "architecture": {"spec": cfg.get("model"), "label": describe_spec(cfg["model"]) if cfg.get("model") else None,
                         "params": (m.get("size") or {}).get("params", result.get("params"))},
        "method": method,
        "temperature": method.get("temperature"),
        "alpha": method.get("alpha"),
        "teacher": None if not teacher else {"hash": result.get("teacher_hash"), "model": teacher.get("model"),
                                             "test_accuracy": result.get("teacher_accuracy")},
        "seed": cfg.get("seed"),
        "train": cfg.get("train"),
        "metrics": metrics,
        "int8": {k: (m.get("int8") or {}).get(k) for k in ("variant", "accuracy", "agreement_with_fp32", "bytes", "calibration")},
        "size": m.get("size"),
        "compute": m.get("compute"),
        "latency": {k: {kk: vv for kk, vv in v.items() if kk in ("median_ms", "p95_ms", "samples_per_s", "batch")}
                    for k, v in (m.get("latency") or {}).items() if isinstance(v, dict)},
        "threads": m.get("threads"),
        "shared_from": (m.get("shared") or {}).get("measured_by") or [],
        "energy": {"available": energy.get("available", False), "label": energy.get("label"), "method": energy.get("method"),
                   "country": energy.get("country"), "total_kwh": energy.get("total_kwh"),
                   "total_kg_co2eq": energy.get("total_kg_co2eq"), "reason": energy.get("reason"),
                   "inference_kwh_per_1000": energy.get("inference_kwh_per_1000"),
                   "phases": {k: {kk: v.get(kk) for kk in ("available", "kwh", "kg_co2eq", "seconds", "label", "reused", "reason",
                                                          "shared_from")}
                              for k, v in (energy.get("phases") or {}).items()}},
        "files": {k: v for k, v in (m.get("exports") or {}).items() if v},
        "pt2_dynamic_batch": (m.get("pt2") or {}).get("dynamic_batch"),
        "budgets": [{"profile": b["profile"], "fits": b["fits"]} for b in m.get("budgets") or []],
    }


def _howto(d: dict) -> str:
    shape = tuple((d["dataset"] or {}).get("input_shape") or ())
    classes = (d["dataset"] or {}).get("classes")
    spec = json.dumps(d["architecture"]["spec"])
    files = d["files"]
    lines = ["```python",
             "# PyTorch, from the weights (needs distill_core)",
             "from distill_core.models import build_model, load_weights",
             f"model = build_model({spec}, {shape}, {classes})",
             f'model = load_weights(model, "{paths.WEIGHTS}").eval()']
    if files.get("onnx"):
        lines += ["", "# ONNX Runtime (fp32 or int8); input name 'input', output 'logits', any batch size",
                  "import numpy as np, onnxruntime as ort",
                  f'session = ort.InferenceSession("{paths.ONNX}")  # or "{paths.INT8}"',
                  f'logits = session.run(None, {{"input": np.zeros({(1, *shape)}, np.float32)}})[0]']
    if files.get("pt2"):
        fixed = "" if d.get("pt2_dynamic_batch") else "; its batch size is fixed at 1"
        lines += ["", f"# torch.export program (no distill_core needed){fixed}", "import torch",
                  f'program = torch.export.load("{paths.PT2}")',
                  f"logits = program.module()(torch.zeros{(1, *shape)})"]
    lines += ["```", "",
              "Inputs are preprocessed as `distill_core.data.load_dataset` does for this data set "
              "(same scaling / normalisation as in training)."]
    return "\n".join(lines)


def _energy_note(phase: dict) -> str:
    if phase.get("shared_from"):
        return f"measured once for this architecture, by run `{phase['shared_from']}`"
    return "reused from the teacher cache" if phase.get("reused") else phase.get("label")


def card_markdown(d: dict) -> str:
    arch, ds, met = d["architecture"], d["dataset"], d["metrics"]
    e, sz, lat = d["energy"], d["size"] or {}, d["latency"]
    out = [f"# Model card: {arch.get('label')} on {ds.get('name')}", "",
           f"Run `{d['run']}` ({d['role']}), seed {d['seed']}.", "",
           "## What it is", "",
           f"- Data set: **{ds.get('name')}**" + (f", inputs {tuple(ds['input_shape'])}, {ds['classes']} classes" if ds.get("input_shape") else ""),
           f"- Architecture: `{json.dumps(arch.get('spec'))}`, {_fmt(arch.get('params'))} parameters",
           f"- Method: **{d['method'].get('name')}**" + (f", temperature {d['temperature']}" if d["temperature"] is not None else "")
           + (f", alpha {d['alpha']}" if d["alpha"] is not None else ""),
           ]
    if d["teacher"]:
        t = d["teacher"]
        out.append(f"- Teacher: `{json.dumps(t['model'])}` (run `{t['hash']}`, test accuracy {_fmt(t['test_accuracy'])})")
    if ds.get("citation"):
        out.append(f"- Data citation: {ds['citation']}")
    out += ["", "## Metrics (test set)", "", "| metric | value |", "|---|---|"]
    out += [f"| {k} | {_fmt(v)} |" for k, v in met.items()]
    i8 = d["int8"]
    if i8.get("accuracy") is not None:
        out.append(f"| int8 accuracy ({i8.get('variant') or 'int8'}) | {_fmt(i8['accuracy'])} |")
        out.append(f"| int8 agreement with fp32 | {_fmt(i8['agreement_with_fp32'])} |")
    out += ["", "## Cost", "", "| measurement | value |", "|---|---|",
            f"| fp32 weights file | {_fmt(sz.get('fp32_bytes'), ' B')} |",
            f"| int8 ONNX file | {_fmt(i8.get('bytes'), ' B')} |",
            f"| FLOPs per sample | {_fmt((d['compute'] or {}).get('flops'))} |"]
    names = {"torch": "PyTorch", "onnx": "ONNX Runtime fp32", "onnx_int8": "ONNX Runtime int8"}
    for k, v in lat.items():
        if "median_ms" in v and not k.endswith("_batch"):
            out.append(f"| {names.get(k, k)} latency, batch 1 (median / p95) | {v['median_ms']:.4g} / {v['p95_ms']:.4g} ms |")
    for k, v in lat.items():
        if "samples_per_s" in v:
            out.append(f"| {names.get(k[:-6], k)} throughput, batch {v['batch']} | {v['samples_per_s']:,.0f} samples/s |")
    out.append(f"| threads | {d['threads']} |")
    if d.get("shared_from"):
        out += ["", "FLOPs, latency and inference energy depend only on the architecture: they were measured once, by run "
                + ", ".join(f"`{h}`" for h in d["shared_from"]) + ", for every run of it (same threads, input shape and runtimes)."]
    out += ["", "## Energy", ""]
    if e.get("available"):
        out += [f"**{e['label']}** by CodeCarbon (offline, country {e['country']}): {e['method']}.", "",
                "| phase | kWh | kg CO2eq | seconds | note |", "|---|---|---|---|---|"]
        for k, v in e["phases"].items():
            if v.get("available"):
                out.append(f"| {k} | {v['kwh']:.3g} | {v['kg_co2eq']:.3g} | {v['seconds']:.3g} | {_energy_note(v)} |")
            else:
                out.append(f"| {k} | unavailable | | | {v.get('reason')} |")
        if e.get("inference_kwh_per_1000") is not None:
            out += ["", f"Inference: {e['inference_kwh_per_1000']:.3g} kWh per 1,000 predictions."]
    else:
        out.append(f"Unavailable: {e.get('reason')}")
    if d["budgets"]:
        out += ["", "## Deployment budgets", ""]
        out += [f"- {b['profile']}: {'fits' if b['fits'] else 'does not fit' if b['fits'] is False else 'unknown'}" for b in d["budgets"]]
    out += ["", "## Files and how to load them", ""]
    out += [f"- `{Path(p).name}`" for p in d["files"].values() if isinstance(p, str)]
    out += ["", _howto(d), ""]
    return "\n".join(out)


def write_model_card(folder: str | Path, result: dict, info=None) -> dict:
    """Write model_card.md and model_card.json into `folder`; returns their paths."""
    folder = Path(folder)
    d = card_data(result, info)
    md, js = folder / paths.CARD_MD, folder / paths.CARD_JSON
    md.write_text(card_markdown(d), encoding="utf-8")
    js.write_text(json.dumps(d, indent=1, default=str), encoding="utf-8")
    return {"card_md": str(md), "card_json": str(js)}
