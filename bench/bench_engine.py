"""Engine overhead and the teacher-logit cache, measured as ratios within one run.

1. Steps per second of `train_model` against a minimal hand-written PyTorch loop on the same
   model, data and batch size (target: engine no more than 5% slower).
2. Distilling with cached teacher logits against training the same student alone (target: at
   most 1.15x), and against running the teacher on every step.

Timings are interleaved and the best of several repeats is kept, because the machine is shared.
Usage: python bench/bench_engine.py [--repeats 5] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import torch
import torch.nn.functional as F

from distill_core.data import load_dataset
from distill_core.engine.train import train_model
from distill_core.teachers import all_logits
from distill_core.train_params import train_settings
from distill_core.methods import make_method
from distill_core.models import build_model

SETUPS = {
    "digits": {"teacher": "cnn-large", "student": {"arch": "mlp", "hidden": [128]}, "epochs": 10, "batch": 64},
    "mnist-5k": {"teacher": "hinton-teacher", "student": "hinton-student", "epochs": 2, "batch": 128},
}


def hand_loop(model, x, y, x_val, y_val, epochs, batch, lr, seed):
    """The loop a person would write: shuffle, slice, CE, Adam, cosine, validation accuracy
    each epoch (which the engine computes too)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(y) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        with torch.inference_mode():
            model.eval()
            (model(x_val).argmax(1) == y_val).float().mean().item()
            model.train()
    return steps


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def loss_cost_us(batch: int, classes: int, n: int = 2000) -> tuple[float, float]:
    """Microseconds of forward+backward of the KD loss and of plain cross-entropy on one batch
    of logits: the part of a KD step that no loop can avoid."""
    from distill_core.methods.kd import kd_loss

    s = torch.randn(batch, classes, requires_grad=True)
    t, y = torch.randn(batch, classes), torch.randint(0, classes, (batch,))
    out = []
    for fn in (lambda: kd_loss(s, t, y, 4.0, 0.9)[0].backward(), lambda: F.cross_entropy(s, y).backward()):
        for _ in range(100):
            fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - start) / n * 1e6)
    return out[0], out[1]


def bench(name, cfg, repeats):
    data = load_dataset(name)
    shape, k = data.info.input_shape, data.info.num_classes
    s = train_settings({"epochs": cfg["epochs"], "batch_size": cfg["batch"], "lr": 1e-3, "threads": torch.get_num_threads()})
    torch.manual_seed(0)
    teacher = build_model(cfg["teacher"], shape, k)
    train_model(teacher, data, train_settings({**s, "epochs": 1}), make_method("scratch"))
    logits = all_logits(teacher, data)["train"]
    steps = cfg["epochs"] * -(-len(data.y_train) // cfg["batch"])
    fresh = lambda: build_model(cfg["student"], shape, k)
    kd = make_method("kd", temperature=4.0, alpha=0.9)
    runs = {
        "hand loop (student alone)": lambda: hand_loop(fresh(), data.x_train, data.y_train, data.x_val, data.y_val, cfg["epochs"], cfg["batch"], 1e-3, 0),
        "engine: student alone": lambda: train_model(fresh(), data, s, make_method("scratch")),
        "engine: KD, cached logits": lambda: train_model(fresh(), data, s, kd, teacher=teacher, teacher_logits=logits),
        "engine: KD, teacher every step": lambda: train_model(fresh(), data, s, kd, teacher=teacher),
    }
    best = {k: float("inf") for k in runs}
    for _ in range(repeats):
        for label, fn in runs.items():
            best[label] = min(best[label], timed(fn))
    base = best["engine: student alone"]
    rows = [(label, steps / t, t / base) for label, t in best.items()]
    return data, steps, rows, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", help="write a section into this Markdown file")
    args = ap.parse_args()
    from bench_util import cpu_model

    cpu = cpu_model()
    machine = f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"
    out = [f"Machine: {machine}. Best of {args.repeats} interleaved repeats.", ""]
    for name, cfg in SETUPS.items():
        data, steps, rows, best = bench(name, cfg, args.repeats)
        out += [f"### {name}: teacher {cfg['teacher']}, student {cfg['student']}, batch {cfg['batch']}, {steps} steps", "",
                "| loop | steps/s | time vs engine student alone |", "|---|---:|---:|"]
        out += [f"| {label} | {sps:.0f} | {ratio:.2f}x |" for label, sps, ratio in rows]
        hand = best["hand loop (student alone)"]
        out += ["", f"Engine vs hand loop: {best['engine: student alone'] / hand:.3f}x the time (target <= 1.05x). "
                f"KD with cached logits vs student alone: {best['engine: KD, cached logits'] / best['engine: student alone']:.3f}x (target <= 1.15x). "
                f"KD running the teacher each step: {best['engine: KD, teacher every step'] / best['engine: student alone']:.2f}x.", ""]
        kd_us, ce_us = loss_cost_us(cfg["batch"], data.info.num_classes)
        step_us = best["engine: student alone"] / steps * 1e6
        out += [f"The KD loss itself (forward + backward on a batch of logits) costs {kd_us:.0f} us against "
                f"{ce_us:.0f} us for cross-entropy: {kd_us - ce_us:.0f} us more per step, "
                f"{100 * (kd_us - ce_us) / step_us:.0f}% of this student's {step_us:.0f} us step.", ""]
    text = "\n".join(out)
    print(text)
    if args.write:
        from bench_util import write_section

        write_section(args.write, "Engine (issue 2)", text)


if __name__ == "__main__":
    main()
