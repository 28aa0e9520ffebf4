"""Benchmark of int8 (issue 17): fp32 against dynamic, static and QAD int8 for the CNN students on
digits and mnist-5k. Run by hand: `python bench/bench_int8.py [--write docs/benchmarks.md]`.

For each data set, one experiment through the lab's own pipeline (expand, run_one, in a scratch
home): a CNN teacher, the students cnn-small (16-32) and cnn 32-64, each trained from scratch
and then fine-tuned by QAD (start: scratch, KD from that fp32 student), over --seeds seeds, measured
with int8_mode auto (both post-training variants) and the default exporter (dynamo).

Then, on the files the runs wrote, one thread:
  - bytes of the fp32 ONNX model and of each int8 file (target: static under 30% of fp32);
  - batch-1 and batch-256 latency in ONNX Runtime, each the best of --rounds interleaved rounds
    of a median (the machine is shared: the least disturbed round); target: static faster than
    fp32 at both batch sizes;
  - test accuracy and its drop from fp32, mean and spread over seeds;
  - where the measuring time of a run went (measure.part_seconds);
and the built case of tests/test_int8.py (an MLP with an outlier activation) over the seeds:
PTQ's drop and QAD's.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TITLE = "int8 (issue 17)"
STUDENTS = {"cnn-small": {"arch": "cnn", "channels": [16, 32], "kernel": 3},
            "cnn 32-64": {"arch": "cnn", "channels": [32, 64], "kernel": 3}}
TRAIN = {"digits": {"epochs": 30, "batch_size": 64, "lr": 0.003, "threads": 1},
         "mnist-5k": {"epochs": 15, "batch_size": 64, "lr": 0.002, "threads": 1}}
MEASURE = {"energy": False, "pt2": False, "card": False, "int8_mode": "auto", "threads": 1}
VARIANTS = ("static", "dynamic", "qad")


def experiment(dataset: str, seeds: list[int], home: Path, epochs: int | None = None) -> list[dict]:
    """The runs' results (teacher first), each run through run_one; `epochs` overrides the data
    set's (a smoke run: latency and bytes do not depend on it, the accuracy figures do)."""
    from distill_core.config import ExperimentSpec, expand
    from distill_core.engine.runner import run_one

    spec = ExperimentSpec.from_dict(dict(
        dataset=dataset, teacher={"arch": "cnn", "channels": [32, 64], "kernel": 3}, students=list(STUDENTS.values()),
        methods=[{"name": "qad", "start": "scratch"}], seeds=seeds,
        train={**TRAIN[dataset], **({"epochs": epochs} if epochs else {})}))
    out = []
    for run in expand(spec):
        t = time.perf_counter()
        res = run_one(replace(run, measure=MEASURE), home)
        print(f"  {dataset} {run.role} {run.method_name} {run.model.get('channels')} seed {run.seed}: "
              f"accuracy {res['metrics']['accuracy']:.4f} ({time.perf_counter() - t:.1f} s)", flush=True)
        out.append(res)
    return out


def latency_table(files: dict[str, Path], x1, x256, rounds: int) -> dict[str, dict]:
    """Batch-1 and batch-256 medians per file, best of `rounds`, the files interleaved per round."""
    from distill_core.measure.latency import ort_latency, ort_session

    sessions = {k: ort_session(p, 1) for k, p in files.items()}
    best = {k: {"b1": float("inf"), "b256": float("inf")} for k in files}
    for _ in range(rounds):
        for k, s in sessions.items():
            best[k]["b1"] = min(best[k]["b1"], ort_latency(s, x1, seconds=0.3, min_reps=200)["median_ms"])
            best[k]["b256"] = min(best[k]["b256"], ort_latency(s, x256, seconds=0.6, min_reps=10)["median_ms"])
    return best


def outlier_case(seeds: list[int]) -> list[dict]:
    """tests/test_int8.py's built case, per seed: fp32, PTQ (ORT) and QAD (ORT) accuracy."""
    import copy

    import torch

    from distill_core.data.cache import load_data
    from distill_core.engine.train import train_model
    from distill_core.evaluate import predict_logits
    from distill_core.measure import measure_settings
    from distill_core.measure.latency import ort_predict, ort_session
    from distill_core.measure.qad import prepare
    from distill_core.methods import make_method
    from distill_core.models import build_model
    from distill_core.train_params import train_settings

    import onnx

    data = load_data({"name": "digits"})
    y = data.y_test.numpy()
    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_model({"arch": "mlp", "hidden": [64]}, data.info.input_shape, data.info.num_classes)
        train_model(model, data, train_settings({"epochs": 15, "lr": 0.003, "threads": 1}), make_method("scratch"), seed=seed)
        model.eval()
        with torch.no_grad():
            unit = model.stages[0](data.x_train).mean(0).argmax()
            model.stages[0][1].weight[unit] *= 300
            model.stages[0][1].bias[unit] *= 300
            model.head.weight[:, unit] /= 300
        fp32 = (predict_logits(model, data.x_test).argmax(1).numpy() == y).mean()
        with tempfile.TemporaryDirectory() as tmp:
            student = prepare(model, data, tmp, measure_settings({"exporter": "torchscript"}), seed)
            onnx.save(student.sim.proto, f"{tmp}/ptq.onnx")
            ptq = (ort_predict(ort_session(f"{tmp}/ptq.onnx", 1), data.x_test.numpy()).argmax(1) == y).mean()
            train_model(student.sim, data, train_settings({"epochs": 5, "lr": 3e-4, "threads": 1}),
                        make_method("qad", kd_from="start"), teacher=copy.deepcopy(model),
                        teacher_logits=predict_logits(model, data.x_train), seed=seed)
            student.sim.write(f"{tmp}/qad.onnx")
            qad = (ort_predict(ort_session(f"{tmp}/qad.onnx", 1), data.x_test.numpy()).argmax(1) == y).mean()
        rows.append({"seed": seed, "fp32": fp32, "ptq": ptq, "qad": qad})
        print(f"  outlier case seed {seed}: fp32 {fp32:.4f}, PTQ {ptq:.4f}, QAD {qad:.4f}", flush=True)
    return rows


def summarise(dataset: str, results: list[dict], rounds: int) -> dict:
    import numpy as np

    from distill_core import paths
    from distill_core.data.cache import load_data
    from distill_core.measure.latency import batch_of

    data = load_data({"name": dataset})
    x1 = data.x_test[:1].numpy()
    x256 = batch_of(data.x_test, 256).numpy()
    by_student: dict[str, dict] = {}
    for res in results:
        if res["role"] != "student":
            continue
        name = next(k for k, v in STUDENTS.items() if v["channels"] == res["config"]["model"]["channels"])
        entry = by_student.setdefault(name, {"drops": {v: [] for v in VARIANTS}, "fp32_acc": [], "files": None,
                                             "bytes": {}, "parts": []})
        m = res["measure"]
        folder = Path(res["artifacts"]["folder"])
        run = entry.setdefault("runs", {}).setdefault(res["config"]["seed"], {})
        if res["config"]["method"]["name"] == "scratch":
            entry["fp32_acc"].append(m["int8"]["fp32_accuracy"])
            run["fp32"] = m["int8"]["fp32_accuracy"]
            run.update({v: 100 * m["int8_variants"][v]["accuracy_drop"] for v in ("static", "dynamic")
                        if m["int8_variants"].get(v, {}).get("ok")})
            entry["parts"].append(m["part_seconds"])
            for v in ("static", "dynamic"):
                if m["int8_variants"].get(v, {}).get("ok"):
                    entry["drops"][v].append(100 * m["int8_variants"][v]["accuracy_drop"])
            if entry["files"] is None:
                entry["files"] = {"fp32": folder / paths.ONNX,
                                  **{v: Path(m["int8_variants"][v]["path"]) for v in ("static", "dynamic")}}
                entry["bytes"]["fp32"] = m["onnx"]["bytes"]
                for v in ("static", "dynamic"):
                    entry["bytes"][v] = m["int8_variants"][v]["bytes"]
                entry["exporter"] = m["onnx"].get("exporter")
                entry["edits"] = m["int8_variants"]["static"].get("edits")
        else:  # qad
            if m["int8"].get("ok"):
                entry["drops"]["qad"].append(100 * m["int8"]["accuracy_drop"])
                run["qad"] = 100 * m["int8"]["accuracy_drop"]
                entry.setdefault("qad_file", folder / paths.INT8)
                entry["bytes"]["qad"] = m["int8"]["bytes"]
                entry.setdefault("agreement", []).append(m["int8"]["agreement_with_simulation"])
    for name, e in by_student.items():
        files = dict(e["files"])
        if "qad_file" in e:
            files["qad"] = e["qad_file"]
        e["latency"] = latency_table(files, x1, x256, rounds)
        e["parts_mean"] = {k: float(np.mean([p.get(k, 0.0) for p in e["parts"]])) for k in e["parts"][0]}
    return by_student


def machine() -> dict:
    from bench_util import cpu_model
    import onnxruntime
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__, "ort": onnxruntime.__version__,
            "python": platform.python_version(), "load": round(os.getloadavg()[0], 1)}


def _edits(tables: dict) -> list[str]:
    """Each student's deployable edits (first seed), where they differ from the full list: a
    refused edit (outputs changed, or an int8 kernel left unfused) shows here."""
    from distill_core.measure.int8 import EDITS

    every = [name for name, _ in EDITS]
    out = []
    for dataset, students in tables.items():
        for name, e in students.items():
            made = e.get("edits") or []
            missing = [x for x in every if x not in made]
            out.append(f"{dataset} {name}: " + ("all made" if not missing else "all but: " + ", ".join(missing)))
    return out


def _ms(x: float) -> str:
    return f"{x:.4f}" if x < 0.1 else f"{x:.3f}"


def report(mach: dict, tables: dict, outliers: list[dict], seeds: list[int], rounds: int, epochs: int | None = None) -> str:
    command = (f"python bench/bench_int8.py --seeds {len(seeds)} --rounds {rounds} --datasets {' '.join(tables)}"
               + (f" --epochs {epochs}" if epochs else ""))
    lines = [f"`{command}`, {time.strftime('%Y-%m-%d')}. Machine: {mach['cpu']}, {mach['cores']} cores, "
             f"torch {mach['torch']}, ONNX Runtime {mach['ort']}, Python {mach['python']}; load average {mach['load']} "
             "at the start (shared machine). One thread everywhere.", "",
             f"Students trained from scratch ("
             + (f"{epochs} epochs: a smoke run, " if epochs else ", ".join(f"{d} {TRAIN[d]['epochs']} epochs" for d in tables) + "; ")
             + f"{len(seeds)} seeds: {', '.join(map(str, seeds))}), then QAD (start: scratch, "
             "KD from the fp32 student itself, 5 epochs at a tenth of the learning rate, best validation epoch kept). Static: ONNX Runtime "
             "quantize_static, QDQ, int8 weights per channel, uint8 activations, MinMax on 256 seeded training samples, "
             "then made deployable (the first convolution and its pooling in float, its weights int8 in the file, "
             "where as close to fp32 (its class as often, the mean difference at most a tenth larger), else its "
             "input channels padded to 4; float logits from the last Gemm on the same condition, and on maps of "
             "at most 16 positions the global average pooling folded into it; biases in float, "
             "MaxPool and Flatten on the quantised tensor, default attributes, "
             "zero zero points and unread fields dropped, names shortened; the edits of the first seed's file: "
             + "; ".join(_edits(tables)) + "). Latency: best of "
             f"{rounds} interleaved rounds of a median, batch 1 and batch 256, the deployed files of the first seed.", ""]
    verdicts = []
    for dataset, students in tables.items():
        lines += [f"### {dataset}", "",
                  "| student | variant | bytes | % of fp32 | batch 1 (ms) | batch 256 (ms) | accuracy drop (points, mean ± sd) |",
                  "|---|---|---|---|---|---|---|"]
        for name, e in students.items():
            fp = e["latency"]["fp32"]
            acc = statistics.mean(e["fp32_acc"])
            lines.append(f"| {name} | fp32 (accuracy {acc:.4f}) | {e['bytes']['fp32']:,} | 100% | {_ms(fp['b1'])} | "
                         f"{_ms(fp['b256'])} | - |")
            for v in VARIANTS:
                if v not in e["latency"]:
                    continue
                lat = e["latency"][v]
                drops = e["drops"][v]
                sd = statistics.stdev(drops) if len(drops) > 1 else 0.0
                lines.append(f"| {name} | {v} | {e['bytes'][v]:,} | {100 * e['bytes'][v] / e['bytes']['fp32']:.1f}% | "
                             f"{_ms(lat['b1'])} | {_ms(lat['b256'])} | {statistics.mean(drops):+.2f} ± {sd:.2f} "
                             f"({len(drops)} seeds) |")
            st = e["latency"]["static"]
            size = e["bytes"]["static"] / e["bytes"]["fp32"]
            verdicts.append(f"- {dataset}, {name}: static batch 1 {_ms(st['b1'])} vs fp32 {_ms(fp['b1'])} ms "
                            f"({'faster: met' if st['b1'] < fp['b1'] else 'SLOWER: missed'}); batch 256 {_ms(st['b256'])} vs "
                            f"{_ms(fp['b256'])} ms ({'faster: met' if st['b256'] < fp['b256'] else 'SLOWER: missed'}); "
                            f"file {100 * size:.1f}% of fp32 ({'met' if size < 0.3 else 'MISSED'}, target under 30%).")
            if e.get("agreement"):
                verdicts.append(f"  QAD's deployed file agrees with its PyTorch simulation on "
                                f"{100 * min(e['agreement']):.2f}% of test samples or more.")
        lines += ["", "Every run (accuracy drop from its fp32 student, points; QAD starts from that run's fp32 student):", "",
                  "| student | seed | fp32 accuracy | static drop | dynamic drop | QAD drop |", "|---|---|---|---|---|---|"]
        for name, e in students.items():
            for seed, r in sorted(e["runs"].items()):
                cell = lambda v: f"{r[v]:+.2f}" if v in r else "failed"  # noqa: E731
                lines.append(f"| {name} | {seed} | {r.get('fp32', float('nan')):.4f} | {cell('static')} | "
                             f"{cell('dynamic')} | {cell('qad')} |")
                if r.get("static", 0.0) > 1.0:
                    if "qad" not in r:
                        after = "QAD failed"
                    else:
                        after = f"QAD's drop {r['qad']:+.2f} (" + ("within 0.5 point: met" if r["qad"] <= 0.5
                                                                   else "NOT within 0.5 point: missed") + ")"
                    verdicts.append(f"- {dataset}, {name}, seed {seed}: static int8 loses {r['static']:.2f} points "
                                    f"(over 1); {after}.")
        over = [r["static"] for e in students.values() for r in e["runs"].values() if "static" in r]
        if over and max(over) <= 1.0:
            verdicts.append(f"- {dataset}: static int8's drop is at most {max(over):.2f} points on every run "
                            f"({len(over)} runs): none over 1 point, so QAD has nothing to recover here.")
        lines.append("")
        parts = next(iter(students.values()))["parts_mean"]
        lines.append("Measuring time of a scratch run (mean over its runs, s): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])) + ".")
        lines.append("")
    lines += ["### Targets", "", *verdicts, ""]
    ptq = [100 * (r["fp32"] - r["ptq"]) for r in outliers]
    qad = [100 * (r["fp32"] - r["qad"]) for r in outliers]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
    lines += ["### The built case (outlier activations)", "",
              "tests/test_int8.py's MLP (digits, 64 hidden units, its most active unit scaled up 300x and its outgoing "
              f"weights down 300x: the same fp32 function), {len(outliers)} seeds. Accuracy drop from fp32 in points: "
              f"PTQ (static, MinMax) {statistics.mean(ptq):.2f} ± {sd(ptq):.2f}; after QAD (5 epochs, KD from the fp32 "
              f"model, learned ranges) {statistics.mean(qad):.2f} ± {sd(qad):.2f} "
              f"({'within 0.5 point: met' if statistics.mean(qad) <= 0.5 else 'NOT within 0.5 point: missed'})."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist-5k"])
    ap.add_argument("--epochs", type=int, help="override every data set's training epochs (a smoke run)")
    ap.add_argument("--write", help="a Markdown file to write the section into (docs/benchmarks.md)")
    args = ap.parse_args()
    os.environ.pop("DISTILL_MEASURE", None)
    import torch

    torch.set_num_threads(1)
    mach = machine()
    began = time.perf_counter()
    print(f"machine: {mach}", flush=True)
    seeds = list(range(args.seeds))
    tables = {}
    with tempfile.TemporaryDirectory() as home:
        for dataset in args.datasets:
            tables[dataset] = summarise(dataset, experiment(dataset, seeds, Path(home), args.epochs), args.rounds)
        outliers = outlier_case(seeds)
        text = report(mach, tables, outliers, seeds, args.rounds, args.epochs)
    print("\n" + text)
    print(f"\nthe bench took {(time.perf_counter() - began) / 60:.1f} min; load average now {os.getloadavg()[0]:.1f}")
    if args.write:
        from bench_util import write_section

        write_section(args.write, TITLE, text)
        print(f"\nwritten to {args.write}")


if __name__ == "__main__":
    main()
