"""Channels-last against the default (NCHW) memory layout for training 2-D CNNs on the CPU.

    python bench/bench_layout.py [--threads 1] [--repeats 3] [--write docs/benchmarks.md]

For each CNN of the zoo at the input size it is used with (digits 8x8, MNIST 28x28, CIFAR 32x32):
the time of one training step (forward, cross-entropy, backward, fused Adam) on a batch of 64,
in both layouts, interleaved, best of `--repeats`; then whole `train_model` runs (digits,
cnn-large, the bench_engine teacher) with `channels_last` off and auto; and eval-mode logits of
4,096 samples in both layouts. The engine's "auto" picks channels-last for 2-D convolutional
models on every device (engine/fastpath.py), and `predict_logits` does for its inference.
To see a CPU without AVX-512 on one that has it, run with ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 (oneDNN's and ATen's kernels held to AVX2).
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
import torch.nn.functional as F

from distill_core.data import load_dataset
from distill_core.engine.train import train_model
from distill_core.methods import make_method
from distill_core.models import build_model
from distill_core.train_params import train_settings

CASES = [("cnn-large", (1, 8, 8)), ("cnn-small", (1, 8, 8)), ({"arch": "cnn"}, (1, 8, 8)),
         ({"arch": "resnet"}, (1, 8, 8)), ({"arch": "mobile"}, (1, 8, 8)), ({"arch": "cnn"}, (1, 28, 28)),
         ("cnn-large", (1, 28, 28)), ({"arch": "resnet"}, (1, 28, 28)), ("resnet8", (3, 32, 32)),
         ({"arch": "mobilenetv2"}, (3, 32, 32)), ("wrn-16-1", (3, 32, 32))]


def step_ms(arch, shape, channels_last: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(arch, shape, 10)
    x, y = torch.randn(64, *shape), torch.randint(0, 10, (64,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), fused=True)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


@torch.inference_mode()
def predict_s(arch, shape, channels_last: bool, n: int = 4096) -> float:
    """Seconds for eval-mode logits of `n` samples in batches of 2048, as predict_logits runs them
    (teacher logits, test accuracy, measuring)."""
    torch.manual_seed(0)
    model = build_model(arch, shape, 10).eval()
    x = torch.randn(n, *shape)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    model(x[:64].contiguous(memory_format=fmt))
    start = time.perf_counter()
    for i in range(0, n, 2048):
        model(x[i : i + 2048].contiguous(memory_format=fmt))
    return time.perf_counter() - start


def layout_table(time_it, repeats: int, unit: str, fmt: str) -> list[str]:
    """A Markdown table of `time_it(arch, shape, channels_last)` for every case in both layouts,
    interleaved, best of `repeats`; each row is printed as it is measured."""
    rows = [f"| model | input | NCHW ({unit}) | channels-last ({unit}) | channels-last faster by |", "|---|---|---:|---:|---:|"]
    for arch, shape in CASES:
        best = {False: float("inf"), True: float("inf")}
        for _ in range(repeats):
            for cl in (False, True):
                best[cl] = min(best[cl], time_it(arch, shape, cl))
        name = arch if isinstance(arch, str) else arch["arch"]
        rows.append(f"| {name} | {'x'.join(map(str, shape))} | {fmt.format(best[False])} | {fmt.format(best[True])} | "
                    f"{best[False] / best[True]:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", default=None, help="Markdown file whose section is replaced")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    from bench_util import cpu_model

    out = [f"`python bench/bench_layout.py --threads {args.threads}`"
           + (f" with ONEDNN_MAX_CPU_ISA={isa} ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')}" if isa else "")
           + f". Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
           f"{platform.python_version()}; {args.threads} torch thread(s); best of {args.repeats} interleaved repeats; "
           f"1-minute load average {os.getloadavg()[0]:.1f} at the start.", ""]
    out += layout_table(lambda arch, shape, cl: step_ms(arch, shape, cl, 30 if shape[-1] < 16 else 8),
                        args.repeats, "ms/step", "{:.2f}")
    out += ["", "Inference (eval-mode logits of 4,096 samples in batches of 2,048, as `predict_logits` computes a "
            "teacher's logits and a test accuracy):", ""]
    out += layout_table(predict_s, args.repeats, "s", "{:.3f}")
    data = load_dataset("digits")
    runs = {}
    for _ in range(args.repeats):
        for layout in ("off", "auto"):
            s = train_settings({"epochs": 10, "batch_size": 64, "lr": 1e-3, "threads": args.threads, "channels_last": layout})
            res = train_model(build_model("cnn-large", data.info.input_shape, 10), data, s, make_method("scratch"))
            runs[layout] = min(runs.get(layout, float("inf")), res.seconds)
    out += ["", f"`train_model`, digits, cnn-large, 10 epochs, batch 64: channels_last off {runs['off']:.3f} s, "
            f"auto {runs['auto']:.3f} s ({runs['off'] / runs['auto']:.2f}x); load average {os.getloadavg()[0]:.1f} at the end."]
    text = "\n".join(out)
    print(text)
    if args.write:
        from bench_util import write_section

        write_section(args.write, "Memory layout" + (f" ({isa})" if isa else ""), text)


if __name__ == "__main__":
    main()
