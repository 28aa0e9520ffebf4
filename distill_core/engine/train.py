"""The training loop: in-memory tensors, any method, progress and cancellation hooks.

Data that fits in memory is batched by indexing tensors directly (no DataLoader), so the loop
costs about what a hand-written PyTorch loop costs (bench/bench_engine.py measures this).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..data.base import DataBundle
from ..errors import Cancelled
from ..methods import EMBEDDING, FEATURES, Method
from ..methods.base import LogitsGradient
from ..models.base import DistillNet, ModelOutput
from ..recipes import multistep_lr
from . import fastpath
from .device import pick_device, set_threads


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0  # the epoch with the best validation accuracy
    best_val_accuracy: float = 0.0
    kept_epoch: int = 0  # whose weights the model ends with: the best one with early stopping, else the last
    seconds: float = 0.0
    steps: int = 0
    device: str = "cpu"
    threads: int = 1
    stopped_early: bool = False
    # With augmentation (or a method that needs features) the teacher runs on every batch, in eval
    # mode without autograd: usually the main cost of distillation. teacher_seconds is that time.
    teacher_forward_per_batch: bool = False
    teacher_seconds: float | None = None
    accel: dict = field(default_factory=dict)  # precision, layout, compile, teacher dtype (fastpath.Accel)

    def as_dict(self) -> dict:
        return asdict(self)


ProgressFn = Callable[[dict], None]


def _val_accuracy(model: DistillNet, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    model.eval()
    with torch.inference_mode():
        correct = sum((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item() for i in range(0, len(x), batch))
    return correct / max(1, len(y))


def make_optimizer(params: list, s: dict, device: torch.device) -> torch.optim.Optimizer:
    """Adam or SGD, fused (one kernel per parameter) where PyTorch has it for the device.

    PyTorch's default on the CPU is the per-tensor loop, several passes over every parameter;
    the fused kernel is the same update in one pass: 5x faster on a 1200-1200 MLP's step, 2x on a
    small student's (bench/bench_engine.py), so Adam stops being half the cost of a CPU step.
    """
    fused = device.type in ("cpu", "cuda")
    if s["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=s["lr"], weight_decay=s["weight_decay"], fused=fused or None)
    return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"],
                           fused=fused or None)


def train_model(
    model: DistillNet,
    data: DataBundle,
    settings: dict,
    method: Method,
    *,
    teacher: DistillNet | None = None,
    teacher_logits: torch.Tensor | None = None,
    seed: int = 0,
    phase: str = "student",
    on_progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_every: float = 0.5,
) -> TrainResult:
    """Train `model` in place with `method`'s loss.

    The teacher is given either as cached `teacher_logits` for the training split (logit-only
    methods without augmentation: the teacher is not run at all) or as a `teacher` model run
    on each batch. `on_progress` receives an event dict at most every `progress_every` seconds
    and at each epoch's end; `should_stop` is checked between steps and raises `Cancelled`.
    """
    s = settings
    device = pick_device(s["device"])
    threads = set_threads(s["threads"])
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    accel = fastpath.choose_accel(s, device, model, data)
    inputs = fastpath.DeviceInputs(data, device, accel.channels_last)
    y_train = inputs.y_train
    n = len(y_train)
    batch = min(s["batch_size"], n)
    steps_per_epoch = math.ceil(n / batch)
    total_steps = steps_per_epoch * s["epochs"]

    need = method.needs
    use_cache = teacher_logits is not None and not s["augment"] and need not in (EMBEDDING, FEATURES)
    if method.uses_teacher and not use_cache and teacher is None:
        raise ValueError(f"method {method.name} needs a teacher or its cached logits")
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    soft = None
    if use_cache:
        teacher_logits = teacher_logits.to(device)
        soft = method.soft_targets(teacher_logits, y_train)  # once per run, not in every step
    per_batch = method.uses_teacher and not use_cache
    t_logits_fn, t_all_fn = fastpath.prepare_teacher(teacher, accel) if per_batch else (None, None)
    t_watch = fastpath.Stopwatch(device)

    extra = method.setup(model, teacher, inputs.sample(min(n, 64)))
    s_logits_fn, s_all_fn = fastpath.prepare_student(model, accel)
    scaler = torch.amp.GradScaler(device.type) if accel.grad_scaler else None
    how = None
    if s["augment"]:
        how = "crop-flip" if s.get("recipe") == "cifar" and data.info.kind == "image" else data.info.augment
    # A model may ask for parameter groups of its own (QAD's activation scales learn at their own
    # rate, without weight decay): optimizer_groups(lr, optimizer) -> [{"params": ..., "lr_factor": f, ...}].
    groups = (model.optimizer_groups(s["lr"], s["optimizer"]) if hasattr(model, "optimizer_groups")
              else [{"params": list(model.parameters())}])
    params = groups + ([{"params": list(extra.to(device).parameters())}] if extra is not None else [])
    opt = make_optimizer(params, s, device)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps) if s["schedule"] == "cosine" else None

    result = TrainResult(device=str(device), threads=threads, teacher_forward_per_batch=per_batch,
                         accel=accel.as_dict())
    best_state, best_acc, since_best = None, -1.0, 0
    start = last_report = time.perf_counter()
    step = 0
    for epoch in range(1, s["epochs"] + 1):
        model.train()
        if extra is not None:
            extra.train()
        if s["schedule"] == "multistep":
            for g in opt.param_groups:
                g["lr"] = multistep_lr(s["lr"], epoch, s["epochs"]) * g.get("lr_factor", 1.0)
        order = torch.randperm(n, generator=gen).to(device)
        sums: dict[str, float] = {}
        for i in range(0, n, batch):
            if should_stop is not None and should_stop():
                raise Cancelled(f"{phase} training cancelled at epoch {epoch}")
            idx = order[i : i + batch]
            xb, yb = inputs.batch(idx, how, gen), y_train.index_select(0, idx)
            with accel.autocast():
                out = s_all_fn(xb) if need in (EMBEDDING, FEATURES) else ModelOutput(s_logits_fn(xb), None, [])
            out = fastpath.to_float(out)
            t_out = None
            if method.uses_teacher:
                if use_cache:
                    # the method's rows when it derived them from the logits (it reads only those), else the logits
                    t_out = (ModelOutput(teacher_logits.index_select(0, idx), None, []) if soft is None else
                             ModelOutput(None, None, [], tuple(t.index_select(0, idx) for t in soft)))
                else:
                    with torch.no_grad(), t_watch.time():
                        xt = xb.to(accel.dtype) if accel.teacher_dtype != "fp32" else xb
                        t_out = t_all_fn(xt) if need in (EMBEDDING, FEATURES) else ModelOutput(t_logits_fn(xt), None, [])
                    t_out = fastpath.to_float(t_out)
            loss, parts = method.loss(out, t_out, yb, (step + 1) / total_steps)
            opt.zero_grad(set_to_none=True)
            # A LogitsGradient's backward pass starts at the student's logits with its gradient.
            root, grad = (out.logits, loss.grad) if isinstance(loss, LogitsGradient) else (loss, None)
            if scaler is not None:
                if grad is None:
                    root = scaler.scale(root)
                else:
                    grad = scaler.scale(grad)
                root.backward(grad)
                scaler.step(opt)
                scaler.update()
            else:
                root.backward(grad)
                opt.step()
            if sched is not None:
                sched.step()
            step += 1
            parts = {"loss": loss.item(), **parts}
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            now = time.perf_counter()
            if on_progress is not None and now - last_report >= progress_every:
                last_report = now
                on_progress({"phase": phase, "epoch": epoch, "epochs": s["epochs"], "step": step,
                             "steps": total_steps, "losses": parts, "elapsed": now - start})
        val_acc = inputs.val_accuracy(model)
        row = {"epoch": epoch, **{k: v / n for k, v in sums.items()}, "val_accuracy": val_acc,
               "lr": opt.param_groups[0]["lr"], "elapsed": time.perf_counter() - start}
        if not all(math.isfinite(v) for v in row.values()):
            raise FloatingPointError(f"{phase} training diverged at epoch {epoch} (loss {row.get('loss')}); try a lower learning rate")
        result.history.append(row)
        if on_progress is not None:
            last_report = time.perf_counter()
            on_progress({"phase": phase, "epoch": epoch, "epochs": s["epochs"], "step": step, "steps": total_steps,
                         "losses": {k: v for k, v in row.items() if k not in ("epoch", "val_accuracy", "lr", "elapsed")},
                         "val_accuracy": val_acc, "elapsed": row["elapsed"], "epoch_end": True})
        if val_acc > best_acc:
            best_acc, since_best, result.best_epoch = val_acc, 0, epoch
            if s["patience"]:
                best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if s["patience"] and since_best >= s["patience"]:
                result.stopped_early = True
                break
    result.kept_epoch = len(result.history)
    fastpath.finish(model)
    result.teacher_seconds = t_watch.seconds if per_batch else None
    if best_state is not None:
        model.load_state_dict(best_state)
        result.kept_epoch = result.best_epoch
    model.eval()
    result.best_val_accuracy = best_acc
    result.seconds = time.perf_counter() - start
    result.steps = step
    return result
