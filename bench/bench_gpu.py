"""Throughput of the distillation step, resnet32x4 -> resnet8x4 on CIFAR-sized images.

Three figures, in images per second, at batch 64 and 256, in fp32 and in mixed precision (bf16
where the device has it, else fp16 with a gradient scaler), on CUDA if there is a GPU, else on
the CPU (which then runs the same code):

- teacher forward: the teacher alone, as the engine prepares it (its dtype and memory layout),
  on augmented batches, without autograd;
- student step: the student trained alone (forward, backward, SGD), through the engine's own
  `train_model` with the CIFAR recipe (uint8 images on the device, crop and flip there);
- KD step: the same with KD, the teacher running on every augmented batch, as a CIFAR-recipe
  KD run does. "teacher share" is the part of the KD step the teacher's forward pass took.

Each figure is the best of `--repeats` timed passes of `--iters` batches, each after `--warmup`
batches (an untimed epoch for the training figures): the pass least disturbed by the other
processes of a shared machine. The inputs are random uint8 images: throughput does not depend on
their content. Usage:
    python bench/bench_gpu.py [--iters 20] [--warmup 5] [--batches 64 256] [--write docs/benchmarks.md]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

import torch

from bench_util import cpu_model, write_section
from distill_core.data.base import DataBundle, DatasetInfo, RawImages
from distill_core.engine import fastpath
from distill_core.engine.device import pick_device, set_threads
from distill_core.recipes import apply_recipe
from distill_core.engine.train import train_model
from distill_core.train_params import train_settings
from distill_core.methods import make_method
from distill_core.models import build_model

MEAN, STD = torch.tensor([129.3, 124.1, 112.4]), torch.tensor([68.2, 65.4, 70.4])  # CIFAR-100's, in pixel units


def random_cifar(n: int) -> DataBundle:
    """n random uint8 32x32 colour images of 100 classes, with 64 for validation."""
    g = torch.Generator().manual_seed(0)
    u8 = {s: torch.randint(0, 256, (m, 3, 32, 32), generator=g, dtype=torch.uint8) for s, m in (("train", n), ("val", 64))}
    raw = RawImages(u8["train"], u8["val"], u8["val"], MEAN, STD)
    y = {s: torch.randint(0, 100, (len(u8[s]),), generator=g) for s in u8}
    info = DatasetInfo("random-cifar", (3, 32, 32), 100, [str(i) for i in range(100)], "image", augment="crop-flip")
    xv = raw.normalise(u8["val"])
    return DataBundle(info, raw.normalise(u8["train"]), y["train"], xv, y["val"], xv, y["val"], raw=raw)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def teacher_forward(teacher, data, settings, device, iters: int, warmup: int) -> float:
    """Images per second of the prepared teacher on augmented batches."""
    batch = settings["batch_size"]
    accel = fastpath.choose_accel(settings, device, teacher, data)
    inputs = fastpath.DeviceInputs(data, device, accel.channels_last)
    logits_fn, _ = fastpath.prepare_teacher(teacher.to(device), accel)
    gen = torch.Generator().manual_seed(0)
    idx = [torch.randint(0, len(data.y_train), (batch,), generator=gen).to(device) for _ in range(warmup + iters)]
    with torch.no_grad():
        for i, ix in enumerate(idx):
            if i == warmup:
                sync(device)
                start = time.perf_counter()
            x = inputs.batch(ix, "crop-flip", gen)
            logits_fn(x.to(accel.dtype) if accel.teacher_dtype != "fp32" else x)
    sync(device)
    return iters * batch / (time.perf_counter() - start)


def training(teacher, settings, method: str, device, iters: int, warmup: int) -> tuple[float, float | None, dict]:
    """(images per second of the training loop, teacher share of its time, the run's accel) for one
    epoch of `iters` batches, after an untimed epoch of `warmup` batches."""
    batch = settings["batch_size"]
    kwargs = {"teacher": teacher} if method == "kd" else {}
    for n, timed in ((warmup * batch, False), (iters * batch, True)):
        torch.manual_seed(0)
        student = build_model("resnet8x4", (3, 32, 32), 100)
        res = train_model(student, random_cifar(n), settings, make_method(method), seed=0, **kwargs)
    share = res.teacher_seconds / res.seconds if res.teacher_seconds is not None else None
    return iters * batch / res.seconds, share, res.accel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, help="timed batches per figure (default 20 on a GPU, 3 on the CPU)")
    ap.add_argument("--warmup", type=int, help="untimed batches first (default 5 on a GPU, 1 on the CPU)")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per figure; the best is kept")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (0 = all cores; default: all with a GPU, "
                    "1 on the CPU, where a shared machine's other processes make more threads slower)")
    ap.add_argument("--write", help="Markdown file to write the figures into (e.g. docs/benchmarks.md)")
    args = ap.parse_args()
    device = pick_device("auto")
    cuda = device.type == "cuda"
    iters = args.iters or (20 if cuda else 3)
    warmup = args.warmup or (5 if cuda else 1)
    threads = set_threads(args.threads if args.threads is not None else (0 if cuda else 1))
    if cuda:
        mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        machine = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), host CPU {cpu_model()}"
    else:
        mixed = "bf16"
        machine = f"CPU only: {cpu_model()}, {os.cpu_count()} cores, {threads} torch thread(s)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {device} ({machine}); torch {torch.__version__}, Python {platform.python_version()}; "
          f"1-minute load {load:.1f}; best of {args.repeats} x {iters} timed batches after {warmup} warm-up", flush=True)
    torch.manual_seed(0)
    teacher = build_model("resnet32x4", (3, 32, 32), 100).eval()
    rows = []
    for batch in args.batches:
        for precision in ("fp32", mixed):
            settings = apply_recipe(train_settings({"recipe": "cifar", "epochs": 1, "batch_size": batch,
                                                    "precision": precision, "threads": threads}), "resnet8x4", "image")
            t_fwd = s_step = kd_step = 0.0
            for _ in range(args.repeats):  # interleaved, so a disturbance hits one pass of each, not one figure
                t_fwd = max(t_fwd, teacher_forward(teacher, random_cifar(max(batch, 256)), settings, device, iters, warmup))
                s, _, accel = training(teacher, settings, "scratch", device, iters, warmup)
                s_step = max(s_step, s)
                k, sh, _ = training(teacher, settings, "kd", device, iters, warmup)
                if k > kd_step:
                    kd_step, share = k, sh
            row = {"batch": batch, "precision": precision, "teacher": t_fwd, "student": s_step, "kd": kd_step,
                   "share": share, "layout": "channels_last" if accel["channels_last"] else "contiguous"}
            rows.append(row)
            print(f"batch {batch:4d} {precision}: teacher forward {t_fwd:8.0f} img/s, student step {s_step:8.0f} img/s, "
                  f"KD step {kd_step:8.0f} img/s (teacher {100 * share:.0f}% of it), {row['layout']}", flush=True)
    if args.write:
        lines = [
            f"`python bench/bench_gpu.py{' --write ' + args.write}`, {time.strftime('%Y-%m-%d')}. Device: **{device}**. "
            f"Machine: {machine}; torch {torch.__version__}, Python {platform.python_version()}; 1-minute load average "
            f"{load:.1f} at the start. Best of {args.repeats} passes of {iters} timed batches per figure, each after "
            f"{warmup} warm-up batch(es) (an untimed epoch for the training figures).",
            "",
            "ResNet-32x4 teacher (7.43 M parameters) and ResNet-8x4 student (1.23 M) at 100 classes, random uint8 "
            "32x32 images kept on the device, the CIFAR recipe's crop and flip done there in batches. Images per "
            "second; the student and KD figures are the engine's `train_model` epoch (SGD, CIFAR recipe), the KD "
            "step with the teacher on every augmented batch.",
            "",
            "| batch | precision | layout | teacher forward (img/s) | student step alone (img/s) | KD step (img/s) | teacher share of the KD step |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(f"| {r['batch']} | {r['precision']} | {r['layout']} | {r['teacher']:,.0f} | {r['student']:,.0f} | "
                         f"{r['kd']:,.0f} | {100 * r['share']:.0f}% |")
        if not cuda:
            lines += ["", "No GPU was available to this run: these are CPU figures (fp32, and bf16 autocast with a bf16 "
                      "teacher), measured on a shared machine, so they move by tens of per cent between runs. No GPU "
                      "figures have been measured yet; run the script on a CUDA machine to add them."]
        write_section(args.write, "GPU path (issue 13)", "\n".join(lines) + "\n")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
