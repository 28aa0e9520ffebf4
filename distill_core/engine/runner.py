"""Running one run config: load data, get the teacher, train, evaluate, save.

Teachers (and teacher assistants) are trained once and cached in `<home>/teachers/<hash>/`
together with their logits on every split, so each student of the same teacher skips both the
teacher's training and its forward passes. A run's own files go to `<home>/runs/<hash>/`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from ..config import TEACHER, file_sha256, run_hash
from ..data import DataBundle, load_dataset
from ..errors import DataError, ModelError
from ..measure import attach_measurements, measure_settings
from ..methods import make_method
from ..models import DistillNet, build_model, count_params, load_weights, save_weights
from ..paths import home_dir
from .device import pick_device
from .evaluate import evaluate_logits, predict_logits
from .phases import PhaseRecorder
from .train import train_model

ProgressFn = Callable[[dict], None]
_cache_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load_cached(key: str) -> DataBundle:
    d = json.loads(key)
    sha = d.pop("sha256", None)  # of the user's file, recorded when the experiment was expanded
    if sha is not None and Path(d["path"]).is_file() and file_sha256(d["path"]) != sha:
        raise DataError(f"{d['path']}: the file changed after the experiment was submitted; submit it again")
    return load_dataset(d.pop("name"), **d)


def load_data(dataset: dict) -> DataBundle:
    """Data sets are loaded once per process (a worker runs many runs on the same data)."""
    return _load_cached(json.dumps(dataset, sort_keys=True))


def write_json(path: Path, obj) -> None:
    """Atomic JSON write: a half-written file is never taken for a result."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)


def cache_key(config: dict) -> str:
    """A teacher's cache key: its run hash without the measurement settings, which do not
    change its weights or logits."""
    return run_hash({k: v for k, v in config.items() if k != "measure"})


def _build(config: dict, data: DataBundle, seed: int) -> DistillNet:
    torch.manual_seed(seed)
    return build_model(config["model"], data.info.input_shape, data.info.num_classes, data.info.kind)


class TeacherCache:
    """Trained teachers keyed by their run hash: weights, logits per split, metrics."""

    def __init__(self, home: Path):
        self.root = home / "teachers"
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, h: str) -> Path:
        return self.root / h

    def has(self, h: str) -> bool:
        return (self.folder(h) / "meta.json").is_file()

    def load(self, config: dict, data: DataBundle) -> tuple[DistillNet, dict, dict]:
        from safetensors.torch import load_file

        folder = self.folder(cache_key(config))
        model = _build(config, data, config["seed"])
        load_weights(model, folder / "weights.safetensors").eval()
        logits = load_file(str(folder / "logits.safetensors"))
        meta = json.loads((folder / "meta.json").read_text())
        return model, logits, meta

    def save(self, config: dict, model: DistillNet, logits: dict, meta: dict) -> None:
        """Write into a temporary folder, then rename it into place (atomic)."""
        from safetensors.torch import save_file

        final = self.folder(cache_key(config))
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        save_weights(model, tmp / "weights.safetensors")
        save_file({k: v.contiguous() for k, v in logits.items()}, str(tmp / "logits.safetensors"))
        write_json(tmp / "config.json", config)
        write_json(tmp / "meta.json", meta)
        with _cache_lock:
            if final.exists():  # another worker finished the same teacher first
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.replace(tmp, final)

    def list(self) -> list[dict]:
        out = []
        for meta in sorted(self.root.glob("*/meta.json")):
            try:
                out.append({"hash": meta.parent.name, **json.loads(meta.read_text())})
            except (OSError, ValueError):
                continue
        return out


def all_logits(model: DistillNet, data: DataBundle, device: str = "cpu") -> dict[str, torch.Tensor]:
    return {s: predict_logits(model, data.split(s)[0], device=device) for s in ("train", "val", "test")}


def get_teacher(config: dict, home: Path, rec: PhaseRecorder, on_progress: ProgressFn | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[DistillNet, dict, dict]:
    """The teacher of `config` (a teacher-role run config): from the cache, or trained now.

    Returns (model, logits per split, meta); meta["cached"] says whether it was reused.
    """
    cache = TeacherCache(home)
    data = load_data(config["dataset"])
    h = cache_key(config)
    if cache.has(h):
        model, logits, meta = cache.load(config, data)
        return model, logits, {**meta, "cached": True}
    if config.get("teacher"):  # an assistant: distilled from its own teacher first
        parent, parent_logits, _ = get_teacher(config["teacher"], home, rec, on_progress, should_stop)
    else:
        parent, parent_logits = None, None
    model = _build(config, data, config["seed"])
    role = config["role"]
    if config.get("weights"):
        w = config["weights"]
        if Path(w["path"]).is_file() and file_sha256(w["path"]) != w["sha256"]:
            raise ModelError(f"{w['path']}: the weight file changed after the experiment was submitted; submit it again")
        load_weights(model, w["path"])
        train = None
    else:
        method = make_method(config["method"]["name"], **{k: v for k, v in config["method"].items() if k != "name"})
        with rec.phase(f"{role}_training"):
            train = train_model(model, data, config["train"], method, teacher=parent,
                                teacher_logits=parent_logits["train"] if parent_logits else None,
                                seed=config["seed"], phase=role, on_progress=on_progress, should_stop=should_stop)
    with rec.phase(f"{role}_logits"):  # on the training device: a big teacher's forward passes are not cheap
        device = pick_device(config["train"]["device"])
        logits = all_logits(model.to(device), data, device)
        model.cpu()
    metrics = evaluate_logits(logits["test"], data.y_test)
    meta = {"role": role, "model": config["model"], "dataset": config["dataset"]["name"],
            "params": count_params(model), "test_accuracy": metrics["accuracy"],
            "train": train.as_dict() if train else None, "phases": dict(rec.phases), "created": time.time()}
    cache.save(config, model, logits, meta)
    return model, logits, {**meta, "cached": False}


def transfer_set(data: DataBundle, teacher_train_logits: torch.Tensor, transfer: dict | None) -> tuple[DataBundle, torch.Tensor]:
    """The student's data: with {"omit_class": k}, class k leaves its training and validation
    splits (and the matching teacher logits); the test split keeps it (Hinton et al. 2015, sec. 3)."""
    k = (transfer or {}).get("omit_class")
    if k is None:
        return data, teacher_train_logits
    keep, keep_val = data.y_train != k, data.y_val != k
    raw = data.raw.select(keep, keep_val) if data.raw is not None else None
    return (dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                                x_val=data.x_val[keep_val], y_val=data.y_val[keep_val], raw=raw), teacher_train_logits[keep])


def run_one(config: dict, home: str | Path | None = None, on_progress: ProgressFn | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
    """Run one run config to the end and return its result (also written to its folder)."""
    home = home_dir(home)
    h = run_hash(config)
    folder = home / "runs" / h
    folder.mkdir(parents=True, exist_ok=True)
    settings = measure_settings(config.get("measure"))  # a bad setting fails before any training
    rec = PhaseRecorder(energy=settings["energy"], output_dir=folder, country=settings["country"],
                        measure_power_secs=settings["power_secs"])
    started = time.time()
    with rec.phase("data", energy=False):
        data = load_data(config["dataset"])
    result: dict = {"hash": h, "role": config["role"], "config": config, "started": started}
    if config["role"] == TEACHER:
        model, logits, meta = get_teacher(config, home, rec, on_progress, should_stop)
        metrics = evaluate_logits(logits["test"], data.y_test)
        train = meta.get("train")
        result["teacher_cached"] = meta["cached"]
        teacher_meta, teacher_test = meta, None
    else:
        teacher, t_logits, t_meta = get_teacher(config["teacher"], home, rec, on_progress, should_stop)
        result["teacher_cached"] = t_meta["cached"]
        result["teacher_hash"] = run_hash(config["teacher"])
        result["teacher_accuracy"] = t_meta["test_accuracy"]
        teacher_meta, teacher_test = t_meta, t_logits["test"]
        knobs = {k: v for k, v in config["method"].items() if k != "name"}
        method = make_method(config["method"]["name"], **knobs)
        model = _build(config, data, config["seed"])
        s_data, s_logits = transfer_set(data, t_logits["train"], config.get("transfer"))
        with rec.phase("student_training"):
            tr = train_model(model, s_data, config["train"], method, teacher=teacher, teacher_logits=s_logits,
                             seed=config["seed"], phase="student", on_progress=on_progress, should_stop=should_stop)
        train = tr.as_dict()
        with rec.phase("evaluation", energy=False):  # milliseconds: a tracker would cost more than it measures
            device = next(model.parameters()).device  # where it trained
            metrics = evaluate_logits(predict_logits(model, data.x_test, device=device), data.y_test, t_logits["test"])
        model = model.cpu()
    save_weights(model, folder / "weights.safetensors")
    result.update({
        "metrics": metrics,
        "params": count_params(model),
        "train": train,
        "phases": rec.phases,
        "finished": time.time(),
        "artifacts": {"folder": str(folder), "weights": str(folder / "weights.safetensors")},
    })
    # Size, FLOPs, latency, inference energy, exports, int8, budgets, model card; never raises.
    attach_measurements(result, model, data, folder, settings, rec, teacher_test, teacher_meta, home)
    result["artifacts"].update({k: v for k, v in result["measure"].get("exports", {}).items() if v})
    result["finished"] = time.time()
    write_json(folder / "config.json", config)
    write_json(folder / "result.json", result)
    return result
