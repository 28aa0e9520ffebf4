"""Engine speed, measured side by side with the loops people write, as ratios within one run.

Peers, on the same models, data, batch size and optimiser (Adam):
- the *hand loop*: shuffle, slice in-memory tensors, CE, Adam, cosine, validation each epoch
  (what the engine does, written out by hand);
- the *tutorial loop*: the structure of PyTorch's knowledge-distillation tutorial
  (https://pytorch.org/tutorials/beginner/knowledge_distillation_tutorial.html): a DataLoader
  over a TensorDataset (shuffle, num_workers=0: the data is in memory), the teacher run on
  every batch under no_grad, soft targets by softmax then log, CE + T^2-scaled KL, loss.item()
  each step; and its `train` function for the teacher (DataLoader, CE).

Targets: engine student alone within 5% of the hand loop; KD with cached teacher logits at most
1.15x the student alone; the engine's KD step at least 3x faster than the tutorial's; teacher
training at least as fast as the tutorial's (1.0x). The engine does more than the tutorial
(validation accuracy each epoch, a cosine schedule, per-epoch loss curves): it has to pay for
that and still keep up.

Timings are interleaved and the best of several repeats is kept, because the machine is shared;
the load average is printed with the figures.
Usage: python bench/bench_engine.py [--repeats 5] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from distill_core.data import load_dataset
from distill_core.engine.train import train_model
from distill_core.methods import make_method
from distill_core.models import build_model
from distill_core.teachers import all_logits
from distill_core.train_params import train_settings

T, ALPHA = 4.0, 0.9
SETUPS = {
    "digits": {"teacher": "cnn-large", "student": {"arch": "mlp", "hidden": [128]}, "epochs": 10, "batch": 64},
    "mnist-5k": {"teacher": "hinton-teacher", "student": "hinton-student", "epochs": 2, "batch": 64},
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


def tutorial_loader(x, y, batch, seed):
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, num_workers=0,
                      generator=torch.Generator().manual_seed(seed))


def tutorial_train(model, loader, epochs, lr):
    """The tutorial's `train`: how it trains its teacher."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        running = 0.0
        for inputs, labels in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            opt.step()
            running += loss.item()


def tutorial_kd(teacher, student, loader, epochs, lr, temperature, alpha):
    """The tutorial's `train_knowledge_distillation`: the teacher on every batch, CE + KL."""
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    teacher.eval()
    student.train()
    for _ in range(epochs):
        running = 0.0
        for inputs, labels in loader:
            opt.zero_grad()
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            student_logits = student(inputs)
            soft_targets = F.softmax(teacher_logits / temperature, dim=-1)
            soft_prob = F.log_softmax(student_logits / temperature, dim=-1)
            soft_loss = torch.sum(soft_targets * (soft_targets.log() - soft_prob)) / soft_prob.size()[0] * temperature**2
            label_loss = F.cross_entropy(student_logits, labels)
            loss = alpha * soft_loss + (1 - alpha) * label_loss
            loss.backward()
            opt.step()
            running += loss.item()


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def loss_cost_us(batch: int, classes: int, n: int = 2000) -> dict[str, float]:
    """Microseconds of forward+backward on one batch of logits: the KD loss through the teacher's
    logits (kd_loss, as with the teacher on every step), from cached soft-target rows
    (kd_loss_from_soft, as with cached logits), and plain cross-entropy: the part of a KD step
    that no loop can avoid."""
    from distill_core.methods.kd import kd_loss, kd_loss_from_soft, kd_soft_targets

    s = torch.randn(batch, classes, requires_grad=True)
    t, y = torch.randn(batch, classes), torch.randint(0, classes, (batch,))
    rows = kd_soft_targets(t, y, T)
    fns = {"kd": lambda: kd_loss(s, t, y, T, ALPHA)[0].backward(),
           "kd, cached": lambda: s.backward(kd_loss_from_soft(s, rows, T, ALPHA)[0].grad),
           "ce": lambda: F.cross_entropy(s, y).backward()}
    best = {k: float("inf") for k in fns}
    for _ in range(5):  # interleaved rounds, best kept
        for k, fn in fns.items():
            for _ in range(100):
                fn()
            start = time.perf_counter()
            for _ in range(n // 5):
                fn()
            best[k] = min(best[k], (time.perf_counter() - start) / (n // 5) * 1e6)
    return best


def kd_step_bound(cfg, shape, k, measured: float) -> str:
    """What caching the teacher's logits can save at most, by FLOPs: the tutorial's step is the
    student's step (forward + backward, about 3 forward passes) plus the teacher's forward, the
    engine's the student's step alone, so no loop that trains the student is more than
    1 + teacher / (3 x student) times faster. (The DataLoader's per-sample collation is extra
    cost the tutorial pays on top.)"""
    from distill_core.measure.compute import count_flops

    t, s = (count_flops(build_model(m, shape, k), tuple(shape))["flops"] for m in (cfg["teacher"], cfg["student"]))
    bound = 1 + t / (3 * s)
    return (f"- By FLOPs (teacher forward {t / 1e6:.2f} MFLOPs, student forward {s / 1e6:.2f} MFLOPs a sample), "
            f"dropping the teacher's forward makes a KD step at most {bound:.2f}x faster; measured {measured:.2f}x"
            + (" (the rest is the DataLoader's per-sample collation)." if measured > bound else ".")
            + ("" if bound >= 3 else " A 3x target is out of reach of any loop on this pair."))


def bench(name, cfg, repeats):
    data = load_dataset(name)
    shape, k = data.info.input_shape, data.info.num_classes
    b, epochs, lr = cfg["batch"], cfg["epochs"], 1e-3
    s = train_settings({"epochs": epochs, "batch_size": b, "lr": lr, "threads": torch.get_num_threads()})
    torch.manual_seed(0)
    teacher = build_model(cfg["teacher"], shape, k)
    train_model(teacher, data, train_settings({**s, "epochs": 1}), make_method("scratch"))
    logits = all_logits(teacher, data)["train"]
    steps = epochs * -(-len(data.y_train) // b)
    fresh = lambda: build_model(cfg["student"], shape, k)
    fresh_teacher = lambda: build_model(cfg["teacher"], shape, k)
    kd = make_method("kd", temperature=T, alpha=ALPHA)
    loader = tutorial_loader(data.x_train, data.y_train, b, 0)
    runs = {
        "hand loop (student alone)": lambda: hand_loop(fresh(), data.x_train, data.y_train, data.x_val, data.y_val, epochs, b, lr, 0),
        "engine: student alone": lambda: train_model(fresh(), data, s, make_method("scratch")),
        "engine: KD, cached logits": lambda: train_model(fresh(), data, s, kd, teacher=teacher, teacher_logits=logits),
        "engine: KD, teacher every step": lambda: train_model(fresh(), data, s, kd, teacher=teacher),
        "tutorial: KD (DataLoader, teacher every batch)": lambda: tutorial_kd(teacher, fresh(), loader, epochs, lr, T, ALPHA),
        "engine: teacher training": lambda: train_model(fresh_teacher(), data, s, make_method("scratch")),
        "tutorial: teacher training (DataLoader)": lambda: tutorial_train(fresh_teacher(), loader, epochs, lr),
    }
    every = {label: [] for label in runs}
    for _ in range(repeats):
        for label, fn in runs.items():
            every[label].append(timed(fn))
    return data, steps, every


def load() -> str:
    return "%.1f" % os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write", help="write a section into this Markdown file")
    args = ap.parse_args()
    from bench_util import cpu_model

    machine = (f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
               f"Python {platform.python_version()}")
    out = [f"`python bench/bench_engine.py`. Machine: {machine}. Best of {args.repeats} interleaved repeats; "
           f"1-minute load average {load()} at the start.", ""]
    for name, cfg in SETUPS.items():
        data, steps, every = bench(name, cfg, args.repeats)
        best = {label: min(times) for label, times in every.items()}
        alone = best["engine: student alone"]
        # each repeat's own ratio (the two loops run one after the other): the spread behind the best-of ratio
        pairs = sorted(k / a for k, a in zip(every["engine: KD, cached logits"], every["engine: student alone"]))
        out += [f"### {name}: teacher {cfg['teacher']}, student {cfg['student']}, batch {cfg['batch']}, "
                f"{cfg['epochs']} epochs ({steps} steps); load average {load()} at the end", "",
                "| loop | seconds | steps/s | time vs engine student alone |", "|---|---:|---:|---:|"]
        out += [f"| {label} | {t:.3f} | {steps / t:.0f} | {t / alone:.2f}x |" for label, t in best.items()]
        hand, kd = best["hand loop (student alone)"], best["engine: KD, cached logits"]
        tut_kd, tut_t = best["tutorial: KD (DataLoader, teacher every batch)"], best["tutorial: teacher training (DataLoader)"]
        eng_t = best["engine: teacher training"]
        verdict = lambda ok: "met" if ok else "MISSED"  # noqa: E731
        out += ["", f"- Engine student alone vs hand loop: {alone / hand:.3f}x the time (target <= 1.05x: {verdict(alone / hand <= 1.05)}).",
                f"- KD with cached logits vs student alone: {kd / alone:.3f}x (target <= 1.15x: {verdict(kd / alone <= 1.15)}); "
                f"each repeat's own ratio: median {statistics.median(pairs):.3f}x, {pairs[0]:.3f}x to {pairs[-1]:.3f}x "
                f"over {len(pairs)} repeats.",
                f"- Engine KD step vs the tutorial's KD loop: {tut_kd / kd:.2f}x faster (target >= 3x: {verdict(tut_kd / kd >= 3)}); "
                f"with the teacher on every step as the tutorial does: {tut_kd / best['engine: KD, teacher every step']:.2f}x.",
                f"- Teacher training, engine vs the tutorial's `train`: {tut_t / eng_t:.2f}x as fast "
                f"(target >= 1.0x: {verdict(tut_t / eng_t >= 1.0)}).", ""]
        out.append(kd_step_bound(cfg, data.info.input_shape, data.info.num_classes, tut_kd / kd))
        us = loss_cost_us(cfg["batch"], data.info.num_classes)
        step_us = alone / steps * 1e6
        out += [f"The KD loss itself (forward + backward on a batch of logits, timed alone) costs {us['kd, cached']:.0f} us "
                f"from cached soft-target rows (what the cached-logits run uses) and {us['kd']:.0f} us through the "
                f"teacher's logits, against {us['ce']:.0f} us for cross-entropy: {us['kd, cached'] - us['ce']:.0f} us and "
                f"{us['kd'] - us['ce']:.0f} us more per step, {100 * (us['kd, cached'] - us['ce']) / step_us:.0f}% and "
                f"{100 * (us['kd'] - us['ce']) / step_us:.0f}% of this student's {step_us:.0f} us step.", ""]
    text = "\n".join(out)
    print(text)
    if args.write:
        from bench_util import write_section

        write_section(args.write, "Engine (issue 2)", text)  # issue 16 added the tutorial peers


if __name__ == "__main__":
    main()
