"""The Learn page's figures: plain functions of logits.

    soften, entropy          a teacher's softmax at temperature T and its entropy
    dark_knowledge           the teacher's mean softened prediction per true class
    most_alike               the pairs of classes the teacher thinks most alike
    kd_anatomy               the KD loss's soft and hard terms on a batch
    class_bias_sweep         accuracy as a bias is added to one class's logit (omitted class)
    grid_points              a grid over 2-D inputs (saved_runs.decision_surface evaluates a model on it)
    int8_grid                a layer's weights on the int8 grid (per output channel, symmetric)
    int8_variants            fp32, dynamic, static and QAD int8 side by side, from a QAD run's result

Plain functions of tensors: nothing here trains, loads a model or imports streamlit.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .errors import ConfigError
from .methods.base import ALPHA, soft_kl
from .methods.kd import kd_loss

# -- teaching: temperature, entropy, dark knowledge, the KD loss ----------------------------------------------


def soften(logits, temperature: float) -> torch.Tensor:
    """softmax(z / T): T = 1 is the usual softmax, larger T spreads probability over the
    classes the teacher finds similar (Hinton et al. 2015, eq. 1)."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    z = torch.as_tensor(logits, dtype=torch.float32)
    return torch.softmax(z / float(temperature), dim=-1)


def entropy(probs, base: float = 2.0) -> torch.Tensor:
    """Shannon entropy along the last axis (bits by default); 0 log 0 counts as 0."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    h = -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1)
    return h / math.log(base)


def dark_knowledge(logits, targets, temperature: float, num_classes: int | None = None) -> np.ndarray:
    """K x K matrix: row i is the teacher's mean softened prediction over the samples whose
    true class is i. Off-diagonal mass shows which classes the teacher thinks alike. A class
    with no sample gives a row of NaN."""
    p = soften(logits, temperature)
    y = torch.as_tensor(targets, dtype=torch.long)
    k = num_classes or p.shape[1]
    out = np.full((k, p.shape[1]), np.nan)
    for c in range(k):
        m = y == c
        if m.any():
            out[c] = p[m].mean(0).numpy()
    return out


def most_alike(dark: np.ndarray, n: int = 3) -> list[tuple[int, int]]:
    """The `n` pairs of classes (i, j) with the most probability mass between them, both ways,
    in a dark-knowledge matrix (`dark_knowledge`); pairs with none are left out."""
    off = np.array(dark, dtype=float)
    np.fill_diagonal(off, np.nan)
    sym = np.nan_to_num(off + off.T, nan=-1)
    pairs = []
    for _ in range(n):
        a, b = np.unravel_index(np.argmax(sym), sym.shape)
        if sym[a, b] <= 0:
            break
        pairs.append((int(a), int(b)))
        sym[a, b] = sym[b, a] = -1
    return pairs


def kd_anatomy(student_logits, teacher_logits, targets, temperature: float, alpha: float) -> dict:
    """The KD loss on one batch, term by term (distill_core.methods.kd.kd_loss):
    kl (the soft term without T^2), soft (= T^2 * kl), hard (cross-entropy with the labels),
    weighted_soft (alpha * soft), weighted_hard ((1 - alpha) * hard) and total."""
    s = torch.as_tensor(student_logits, dtype=torch.float32)
    t = torch.as_tensor(teacher_logits, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.long)
    alpha = ALPHA.coerce(alpha)
    with torch.no_grad():
        total, soft, hard = kd_loss(s, t, y, float(temperature), float(alpha))
        kl = soft_kl(s, t, float(temperature))
    return {"kl": kl.item(), "soft": soft.item(), "hard": hard.item(), "weighted_soft": alpha * soft.item(),
            "weighted_hard": (1 - alpha) * hard.item(), "total": total.item(), "temperature": float(temperature),
            "alpha": float(alpha), "batch": len(y)}


def class_bias_sweep(logits, targets, cls: int, biases) -> pd.DataFrame:
    """Accuracy as a bias is added to one class's logit at inference (Hinton et al. 2015,
    section 3: a student that never saw class `cls` during distillation recovers it when that
    class's bias is raised). Columns: bias, class_accuracy, accuracy, predicted_share."""
    z = torch.as_tensor(logits, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.long)
    if not 0 <= cls < z.shape[1]:
        raise ConfigError(f"class {cls} is outside 0..{z.shape[1] - 1}")
    m = y == cls
    rows = []
    for b in biases:
        zz = z.clone()
        zz[:, cls] += float(b)
        pred = zz.argmax(1)
        rows.append({"bias": float(b),
                     "class_accuracy": (pred[m] == cls).float().mean().item() if m.any() else math.nan,
                     "accuracy": (pred == y).float().mean().item(),
                     "predicted_share": (pred == cls).float().mean().item()})
    return pd.DataFrame(rows)


def grid_points(x, steps: int = 150, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A grid over 2-D inputs (their range plus a margin): (xs, ys, points as an (N, 2) tensor)."""
    x = np.asarray(x, dtype="float64")
    if x.ndim != 2 or x.shape[1] != 2:
        raise ConfigError(f"decision boundaries need 2-D inputs, got shape {x.shape}")
    lo, hi = x.min(0), x.max(0)
    pad = (hi - lo) * margin + 1e-6
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], steps)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], steps)
    gx, gy = np.meshgrid(xs, ys)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    return xs, ys, pts


# -- int8 -------------------------------------------------------------------------------------------------------


def int8_grid(weights: np.ndarray) -> dict:
    """How static int8 stores a layer's weights: per output channel (axis 0) a step of
    max|w| / 127, each weight rounded to the nearest of the 255 multiples of it in [-127, 127]
    steps. Returns the steps, the rounded values, and the rounding error in steps (within 0.5)."""
    w = np.asarray(weights, dtype=np.float64)
    flat = w.reshape(len(w), -1)
    absmax = np.abs(flat).max(1)
    step = np.where(absmax > 0, absmax / 127, 1.0)
    q = np.clip(np.round(flat / step[:, None]), -127, 127)
    error = flat / step[:, None] - q
    return {"step": step, "q": q.reshape(w.shape), "dequantised": (q * step[:, None]).reshape(w.shape),
            "error_steps": error.reshape(w.shape), "max_error_steps": float(np.abs(error).max()) if error.size else 0.0,
            "levels_used": [int(len(np.unique(row))) for row in q]}


VARIANT_ORDER = ("fp32", "dynamic", "static", "qad")


def int8_variants(result: dict) -> pd.DataFrame:
    """One row per variant of a QAD run's student: the fp32 model it started from, its dynamic
    and static (PTQ) int8, and the QAD int8 model; accuracy, change from fp32 (points), file bytes,
    batch-1 median (ms) and batch throughput in ONNX Runtime. A figure the run did not measure
    is NaN."""
    m = result.get("measure") or {}
    variants = m.get("int8_variants") or {}
    lat = m.get("latency") or {}
    i8 = m.get("int8") or {}
    fp32_acc = i8.get("fp32_accuracy")
    rows = [{"variant": "fp32", "accuracy": fp32_acc, "bytes": (m.get("onnx") or {}).get("bytes"),
             "batch1_ms": (lat.get("onnx") or {}).get("median_ms"),
             "samples_per_s": (lat.get("onnx_batch") or {}).get("samples_per_s")}]
    for name in VARIANT_ORDER[1:]:
        v = variants.get(name) or {}
        rows.append({"variant": name, "accuracy": v.get("accuracy"), "bytes": v.get("bytes"),
                     "batch1_ms": (v.get("latency") or {}).get("median_ms"),
                     "samples_per_s": (v.get("latency_batch") or {}).get("samples_per_s")})
    out = pd.DataFrame(rows).astype({"accuracy": "float64", "bytes": "float64", "batch1_ms": "float64",
                                     "samples_per_s": "float64"})
    out["change_pts"] = 100 * (out["accuracy"] - (fp32_acc if fp32_acc is not None else math.nan))
    return out
