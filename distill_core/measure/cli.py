"""`python -m distill_core measure`: measure a saved run, or a weight file with its architecture
and data set, and print the figures. `add_commands(subparsers)` is called by the main CLI."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import paths
from ..data import dataset_knobs
from ..data.cache import load_data
from ..errors import ConfigError
from ..evaluate import evaluate_logits, predict_logits
from ..flags import parse_named
from ..models import build_model, is_network, load_weights, normalise_spec, save_weights
from .hook import RunMeasurement
from .report import format_measurements, human_bytes


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("measure", help="measure a saved run or a weight file: size, FLOPs, latency, energy, exports")
    p.add_argument("target", help="a run folder, a run hash (or its first characters), or a weight file (.safetensors/.pt)")
    p.add_argument("--arch", help="for a weight file: model name or arch:knob=value,... (e.g. mlp:hidden=64-64)")
    p.add_argument("--dataset", help="for a weight file: data set name, or name:knob=value,...")
    p.add_argument("--out", help="folder for the exports and the model card (default: <home>/measure/<name>)")
    p.add_argument("--threads", type=int, help="threads for latency (default 1; 0 = all cores)")
    p.add_argument("--latency-seconds", type=float, help="time per latency measurement (default 0.05)")
    p.add_argument("--country", help="ISO alpha-3 country code for CO2 (default $DISTILL_COUNTRY or USA)")
    p.add_argument("--no-energy", action="store_true", help="skip CodeCarbon")
    p.add_argument("--no-export", action="store_true", help="skip ONNX, int8 and .pt2 (size, FLOPs and PyTorch latency only)")
    p.add_argument("--int8", choices=("static", "dynamic", "auto"), dest="int8_mode",
                   help="int8 variant: static (calibrated QDQ, the default), dynamic, or auto (both measured)")
    p.add_argument("--calibration-samples", type=int, help="training samples that calibrate static int8 (default 256)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_measure)


def resolve_target(target: str, home: Path) -> tuple[Path | None, Path | None]:
    """(run folder with config.json, weight file): a folder, a weight file, or a run hash."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / paths.CONFIG).is_file():
            raise ConfigError(f"{path}: not a run folder (no {paths.CONFIG})")
        return path, path / paths.WEIGHTS
    if path.is_file():
        run = path.parent if (path.parent / paths.CONFIG).is_file() else None
        return run, path
    # A run folder first; a teacher's cache folder (same hash as its run) when no run has it.
    for root in (paths.RUNS, paths.TEACHERS):
        matches = sorted(p for p in (home / root).glob(f"{target}*") if (p / paths.CONFIG).is_file())
        if matches:
            break
    if len(matches) == 1:
        return matches[0], matches[0] / paths.WEIGHTS
    if len(matches) > 1:
        raise ConfigError(f"{target!r} matches {len(matches)} runs; give more characters: "
                          + ", ".join(p.name for p in matches[:5]))
    raise ConfigError(f"{target!r}: not a folder, a weight file, or a run hash under {home}")


def measure_target(target: str, home=None, arch: str | None = None, dataset: str | None = None,
                   out: str | Path | None = None, settings: dict | None = None) -> dict:
    """Measure a saved run or weight file; returns a result-like dict (config, metrics, measure,
    energy). Raises DistillError for input the user must fix."""
    home = paths.home_dir(home)
    run, weights = resolve_target(target, home)
    if run is not None:
        config = json.loads((run / paths.CONFIG).read_text())
        config = {k: config[k] for k in ("role", "dataset", "model", "method", "seed", "teacher") if k in config}
    else:
        if not (arch and dataset):
            raise ConfigError(f"{weights}: a weight file needs --arch and --dataset (which model, which data)")
        config = {"role": "measured", "method": {"name": "unknown"}, "seed": None}
    if arch:
        config["model"] = normalise_spec(parse_named(arch, "arch") if ":" in arch or arch.startswith("{") else arch)
    if dataset:
        d = parse_named(dataset, "name")
        config["dataset"] = {"name": d["name"], **dataset_knobs(d["name"], {k: v for k, v in d.items() if k != "name"})}
    if not is_network(config.get("model")):
        raise ConfigError(f"{target}: this run is a teacher that is not a network of this lab ({config['model'].get('arch')}); "
                          "it was measured through its ONNX file when it ran, see its result (Run detail)")
    data = load_data(config["dataset"])
    model = build_model(config["model"], data.info.input_shape, data.info.num_classes, data.info.kind)
    load_weights(model, weights).eval()
    folder = Path(out) if out else home / paths.MEASURE / (run.name if run is not None else weights.stem)
    folder.mkdir(parents=True, exist_ok=True)
    source_bytes = weights.stat().st_size
    save_weights(model, folder / paths.WEIGHTS)
    measurement = RunMeasurement(folder, {"share": False, **(settings or {})})  # asked for: measured afresh
    logits = predict_logits(model, data.x_test)
    result = {"hash": run.name if run is not None else None, "role": config.get("role"), "config": config,
              "source": str(weights), "source_bytes": source_bytes,
              "metrics": evaluate_logits(logits, data.y_test) if len(data.y_test) else {}}
    measurement.attach(result, model, data, home=home)
    (folder / paths.MEASURED).write_text(json.dumps(result, indent=1, default=float))
    return result


def _show(v, what: str) -> str:
    if v is None:
        return "unavailable"
    return human_bytes(v) if "bytes" in what else f"{v:.4g}"


def budget_table(result: dict) -> list[str]:
    rows = [("profile", "fits", "checks")]
    for b in (result.get("measure") or {}).get("budgets") or []:
        checks = "; ".join(f"{c['what']}: {_show(c['value'], c['what'])} (limit {_show(c['limit'], c['what'])})"
                           for c in b["checks"]) or "no limits"
        rows.append((b["profile"], {True: "yes", False: "NO", None: "unknown"}[b["fits"]], checks))
    if len(rows) == 1:
        return []
    w = [max(len(r[i]) for r in rows) for i in range(2)]
    return [f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]}" for r in rows]


def cmd_measure(args) -> None:
    settings = {}
    for flag, key in (("threads", "threads"), ("latency_seconds", "latency_seconds"), ("country", "country"),
                      ("int8_mode", "int8_mode"), ("calibration_samples", "calibration_samples")):
        if getattr(args, flag) is not None:
            settings[key] = getattr(args, flag)
    if args.no_energy:
        settings["energy"] = False
    if args.no_export:
        settings.update(onnx=False, int8=False, pt2=False)
    result = measure_target(args.target, args.home, args.arch, args.dataset, args.out, settings)
    if args.json:
        json.dump(result, sys.stdout, indent=1, default=float)
        print()
        return
    cfg = result["config"]
    acc = (result.get("metrics") or {}).get("accuracy")
    print(f"{result.get('source')}: {json.dumps(cfg.get('model'))} on {cfg['dataset']['name']}"
          + (f", test accuracy {acc:.4f}" if acc is not None else ""))
    print("\n".join(format_measurements(result)))
    table = budget_table(result)
    if table:
        print("\n" + "\n".join(table))
    print(f"\nfiles in {Path(result['measure'].get('exports', {}).get('weights', '.')).parent}")
