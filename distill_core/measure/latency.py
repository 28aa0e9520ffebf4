"""Latency and throughput, in PyTorch and in ONNX Runtime, with the thread count fixed.

Each measurement warms up first (at least 3 calls and a tenth of its time budget), then times
single calls with perf_counter. The number of repetitions adapts to the model: as many as fit
in the rest of `seconds` (at least `min_reps`), so a tiny MLP gets thousands of calls in the
default 0.05 s and a large CNN still its twenty. Throughput (a large batch) needs fewer: at
least 3 batches after 1 warm-up batch. Median and p95 are reported, not the mean, so one
descheduled call does not move them.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import onnx_files


def resolve_threads(threads: int) -> int:
    return threads if threads and threads > 0 else (os.cpu_count() or 1)


@contextmanager
def torch_threads(threads: int):
    """Fix torch's intra-op threads for the block; the previous setting comes back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def time_calls(fn: Callable[[], object], seconds: float = 0.1, min_reps: int = 20,
               max_reps: int = 200_000, min_warmup: int = 3) -> dict:
    """Time `fn` after warm-up; returns milliseconds (median, p95, mean, min) and counts.

    Calls are timed one by one until the time budget is spent (and at least `min_reps`), so
    the budget holds in wall time even when other processes slow some calls down.
    """
    clock = time.perf_counter
    start = clock()
    warmup = 0
    while warmup < min_warmup or clock() - start < 0.1 * seconds:
        fn()
        warmup += 1
    times: list[float] = []
    deadline = clock() + 0.9 * seconds
    while (len(times) < min_reps or clock() < deadline) and len(times) < max_reps:
        t = clock()
        fn()
        times.append(clock() - t)
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "reps": len(times), "warmup": warmup,
            "calls": len(times) + warmup}


def batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """`n` real samples (repeating the set if it is smaller than n)."""
    if len(x) >= n:
        return x[:n].contiguous()
    reps = -(-n // len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:n].contiguous()


def torch_latency(model: nn.Module, x: torch.Tensor, seconds: float = 0.1, min_reps: int = 20) -> dict:
    """Latency of model(x) under inference_mode (threads as set by the caller)."""
    model.eval()

    def call():
        with torch.inference_mode():
            model(x)

    return time_calls(call, seconds, min_reps, min_warmup=3 if min_reps >= 10 else 1)


def ort_session(path, threads: int, optimised_path=None):
    """An ONNX Runtime CPU session with intra-op threads fixed (and one inter-op thread);
    `optimised_path`: where to write the graph as ONNX Runtime optimised it."""
    return onnx_files.session(path, resolve_threads(threads), device="cpu", optimised_path=optimised_path)


def ort_latency(session, x: np.ndarray, seconds: float = 0.1, min_reps: int = 20) -> dict:
    name = session.get_inputs()[0].name
    feed = {name: np.ascontiguousarray(x, dtype=np.float32)}
    return time_calls(lambda: session.run(None, feed), seconds, min_reps, min_warmup=3 if min_reps >= 10 else 1)


def ort_predict(session, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: np.ascontiguousarray(x[i : i + batch], dtype=np.float32)})[0]
           for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.empty((0,))


def with_throughput(timing: dict, batch: int) -> dict:
    """Add samples per second at this batch size (from the median batch time)."""
    return {**timing, "batch": batch, "samples_per_s": batch / (timing["median_ms"] / 1e3)}
