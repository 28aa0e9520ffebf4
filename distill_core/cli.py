"""`python -m distill_core`: list the registries, run experiments, and (from the jobs and
measurement layers) submit, watch and measure runs."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from . import analysis
from .config import ENSEMBLE, ExperimentSpec, expand, load_experiment_file
from .constants import TEACHER
from .data import DATASETS
from .engine.runner import run_one
from .errors import DistillError
from .flags import parse_model_flag, parse_teacher_flag
from .jobs import cli as jobs_cli
from .jobs.results import frame_of_results
from .measure import cli as measure_cli
from .labels import method_label
from .measure import format_measurements
from .measure.report import human_bytes
from .methods import METHODS
from .models import ARCHITECTURES, NAMED_SIZES, describe_spec
from .presets import PRESETS, get_preset, preset_spec
from .run_config import RunConfig
from .search import cli as search_cli
from .teachers import teacher_kind


# ---------------------------------------------------------------- listing
def _print_params(params, indent="    "):
    for p in params:
        print(f"{indent}{p.describe()}")


def cmd_datasets(args):
    for e in DATASETS:
        print(f"{e.name}: {e.description}")
        _print_params(e.params)


def cmd_models(args):
    for e in ARCHITECTURES:
        print(f"{e.name}: {e.description} [inputs: {', '.join(e.extra['kinds'])}]")
        _print_params(e.params)
    print("\nnamed sizes:")
    for name, spec in NAMED_SIZES.items():
        print(f"  {name}: {spec.get('_about', '')}")


def cmd_methods(args):
    for m in METHODS:
        print(f"{m.name}: {m.description}")
        if m.paper:
            print(f"    paper: {m.paper}")
        print(f"    needs: {m.needs if m.uses_teacher else 'no teacher'}")
        _print_params(m.params)


def cmd_presets(args):
    for name, p in PRESETS.items():
        print(f"{name}: {p['description']}")


# ---------------------------------------------------------------- run
def spec_from_args(args) -> tuple[ExperimentSpec, list]:
    """The experiment named by --preset, a FILE, or flags; flags override a preset or file."""
    published = []
    if args.preset:
        spec, published = preset_spec(args.preset), get_preset(args.preset)["published"]
    elif args.file:
        spec = load_experiment_file(args.file)
    else:
        spec = ExperimentSpec()
    if args.dataset:
        spec.dataset = args.dataset
        spec.dataset_knobs = {}  # another data set's knobs do not carry over
    for item in args.data or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise DistillError(f"--data {item!r}: expected KEY=VALUE, e.g. --data path=my.csv")
        spec.dataset_knobs = {**spec.dataset_knobs, key.strip(): value.strip()}
    if args.teacher:
        given = [parse_teacher_flag(t) for t in args.teacher]
        spec.teacher, spec.teachers = (given[0], []) if len(given) == 1 else (spec.teacher, given)
    if args.ensemble:
        spec.ensemble = args.ensemble
    if args.student:
        spec.students = [parse_model_flag(s) for s in args.student]
    if args.method:
        spec.methods = [{"name": m} for m in args.method]
    for flag, field in (("temperature", "temperatures"), ("alpha", "alphas"), ("seed", "seeds")):
        if getattr(args, flag):
            setattr(spec, field, getattr(args, flag))
    for flag in ("epochs", "lr", "batch_size", "threads"):
        if getattr(args, flag) is not None:
            spec.train = {**spec.train, flag: getattr(args, flag)}
            if spec.teacher_train is not None and flag == "threads":
                spec.teacher_train = {**spec.teacher_train, flag: getattr(args, flag)}
    return spec, published


def result_row(res: dict) -> dict:
    cfg, m = res["config"], res["metrics"]
    method = cfg["method"]
    train = res.get("train") or {}
    return {
        "run": res["hash"][:8], "role": cfg["role"], "model": describe_spec(cfg["model"]),
        "teacher": teacher_kind(RunConfig.from_dict(cfg)), "method": method["name"],
        "T": method.get("temperature"), "alpha": method.get("alpha"), "seed": cfg["seed"], "params": res["params"],
        "accuracy": m["accuracy"], "errors": m["errors"], "top5": m.get("top5_accuracy"), "nll": m["nll"],
        "ece": m["ece"], "agreement": m.get("teacher_agreement"), "kl_teacher": m.get("teacher_kl"),
        "train_s": train.get("seconds"), "teacher_fwd_s": train.get("teacher_seconds"),  # the teacher on every batch
        "cached_teacher": res.get("teacher_cached"),
    }


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no runs)"
    cols = list(rows[0])

    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) if i > 2 else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def published_rows(published: list[dict], rows: list[dict]) -> list[dict]:
    """Each published figure beside the measured one for the matching run."""
    out = []
    for p in published:
        match = next((r for r in rows if (p["run"] == TEACHER and r["role"] == TEACHER)
                      or (r["role"] != TEACHER and r["method"] == p["run"])), None)
        measured = None
        if match is not None:
            if p["metric"] == "errors":
                measured = f"{match['errors']} of {round(match['errors'] / max(1e-9, 1 - match['accuracy'])) if match['accuracy'] < 1 else '?'}" \
                    f" ({100 * (1 - match['accuracy']):.2f}% error)"
            else:
                measured = f"{100 * match['accuracy']:.2f}%"
        value = f"{p['value']} of {p['of']} ({100 * p['value'] / p['of']:.2f}% error)" if p["metric"] == "errors" else f"{100 * p['value']:.2f}%"
        out.append({"run": p["run"], "metric": p["metric"], "published": value, "measured here": measured or "not run",
                    "published on": p["source"]})
    return out


def _verdict(results: list[dict], profile: str) -> str:
    fits = [next((b["fits"] for b in (r.get("measure") or {}).get("budgets") or [] if b["profile"] == profile), None)
            for r in results]
    if all(f is True for f in fits):
        return "fits"
    if any(f is False for f in fits):
        return f"does not fit ({fits.count(False)} of {len(fits)})"
    return "not measured"


def summary_rows(results: list[dict], budget: str | None = None) -> list[dict]:
    """One row per configuration: accuracy as mean ± sample standard deviation over its seeds
    (with how many), its bytes and ONNX Runtime batch-1 latency (means), and with `budget` that
    profile's verdict on every seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        row = result_row(r)
        groups.setdefault((row["role"], row["model"], row["method"], row["T"], row["alpha"]), []).append(r)
    out = []
    for (role, model, method, t, alpha), rs in groups.items():
        acc = np.array([r["metrics"]["accuracy"] for r in rs])
        spread = f" ± {acc.std(ddof=1):.4f}" if len(rs) > 1 else " (one seed)"
        m = [r.get("measure") or {} for r in rs]
        mean = lambda get: float(np.mean(v)) if (v := [x for x in map(get, m) if x is not None]) else None
        onnx_ms = mean(lambda x: ((x.get("latency") or {}).get("onnx") or {}).get("median_ms"))
        row = {"role": role, "model": model, "method": method_label({"name": method, **({"temperature": t} if t else {}),
                                                                      **({"alpha": alpha} if alpha is not None else {})}),
               "seeds": len(rs), "accuracy": f"{acc.mean():.4f}{spread}",
               "int8 bytes": human_bytes(mean(lambda x: (x.get("size") or {}).get("int8_bytes"))),
               "onnx bytes": human_bytes(mean(lambda x: (x.get("size") or {}).get("onnx_bytes"))),
               "onnx ms (batch 1)": "unavailable" if onnx_ms is None else f"{onnx_ms:.4f}"}
        if budget:
            row[budget] = _verdict(rs, budget)
        out.append(row)
    return out


def _progress_printer(stream=sys.stderr):
    last = {"t": 0.0}

    def show(ev):
        now = time.time()
        if ev.get("epoch_end") and now - last["t"] > 1.0 or ev.get("final"):
            last["t"] = now
            acc = ev.get("val_accuracy")
            stream.write(f"  {ev['phase']}: epoch {ev['epoch']}/{ev['epochs']}"
                         + (f", val acc {acc:.3f}" if acc is not None else "") + "\n")
            stream.flush()

    return show


def cmd_run(args):
    spec, published = spec_from_args(args)
    runs = expand(spec)
    results = []
    quiet = args.json
    for i, run in enumerate(runs, 1):
        if not quiet:
            extra = "".join(f" {k}={v:g}" for k, v in run.method_knobs.items() if k in ("temperature", "alpha"))
            print(f"[{i}/{len(runs)}] {run.role} {describe_spec(run.model)} {run.method_name}{extra} seed {run.seed}",
                  file=sys.stderr)
        results.append(run_one(run, args.home, on_progress=None if quiet else _progress_printer()))
    rows = [result_row(r) for r in results]
    if args.json:
        json.dump({"experiment": spec.to_dict(), "runs": results, "published": published_rows(published, rows)},
                  sys.stdout, indent=1, default=str)
        print()
        return
    print(format_table(rows))
    budget = get_preset(args.preset).get("budget") if args.preset else None
    if len(results) > len({(r["role"], r["model"], r["method"], r["T"], r["alpha"]) for r in rows}) or budget:
        print("\nOver seeds: accuracy mean ± sample standard deviation; bytes and latency are means"
              + (f"; {budget}: the deployment budget's verdict on every seed" if budget else "") + ":")
        print(format_table(summary_rows(results, budget)))
    summary = analysis.gap_closed_table(frame_of_results(results))
    if len(summary):
        print("\nDistilled against scratch, seed by seed (accuracy minus scratch on the same seed):")
        for _, g in summary.iterrows():
            print(f"  {g['model']} {g['method_label']}: {analysis.delta_words(g['delta_mean'], g['delta_std'], g['delta_n'])}")
    for r in results:
        lines = format_measurements(r)
        if lines:
            print(f"\n{r['role']} {describe_spec(r['config']['model'])} {r['config']['method']['name']} ({r['hash'][:8]}):")
            print("\n".join("  " + s for s in lines))
    if published:
        print("\nPublished figures (labelled with the data they come from):")
        print(format_table(published_rows(published, rows)))


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m distill_core", description="Distillation Lab: knowledge distillation from the command line.")
    ap.add_argument("--home", help="home folder (default: $DISTILL_HOME or ~/.distill_lab)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="list data sets and their knobs").set_defaults(func=cmd_datasets)
    sub.add_parser("models", help="list architectures, knobs and named sizes").set_defaults(func=cmd_models)
    sub.add_parser("methods", help="list distillation methods, knobs and papers").set_defaults(func=cmd_methods)
    sub.add_parser("presets", help="list ready-made experiments").set_defaults(func=cmd_presets)
    run = sub.add_parser("run", help="run an experiment here, now, and print its results")
    run.add_argument("file", nargs="?", help="experiment file (JSON or YAML)")
    run.add_argument("--preset", help="a preset name (see `presets`)")
    run.add_argument("--dataset")
    run.add_argument("--data", action="append", metavar="KEY=VALUE",
                     help="a data set knob, e.g. --data path=my.csv --data label_column=species; repeat for several")
    run.add_argument("--teacher", action="append",
                     help="model name or arch:knob=value,... (e.g. cnn:channels=32-64, gradient-boosting:max_iter=200), "
                          "onnx:path=model.onnx[,outputs=probabilities] or outputs:path=outputs.npz[,values=logits]; "
                          "repeat for an ensemble")
    run.add_argument("--ensemble", choices=ENSEMBLE.choices, help="how several --teacher combine (default mean-logits)")
    run.add_argument("--student", action="append", help="student model; repeat for several")
    run.add_argument("--method", action="append", help="method; repeat for several")
    run.add_argument("--temperature", type=float, action="append")
    run.add_argument("--alpha", type=float, action="append")
    run.add_argument("--seed", type=int, action="append")
    run.add_argument("--epochs", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--threads", type=int)
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.set_defaults(func=cmd_run)
    jobs_cli.add_commands(sub)
    measure_cli.add_commands(sub)
    search_cli.add_commands(sub)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
    except DistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return rc if isinstance(rc, int) else 0
