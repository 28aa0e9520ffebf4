"""Evaluation: accuracy, top-5, NLL, calibration, confusion, and agreement with the teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2048,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """The model's logits on `x`, in eval mode, batch by batch. A 2-D CNN runs channels-last, as it
    trains (engine/fastpath.py; 1.3-2.7x faster for the lab's CNNs on a CPU: bench/bench_layout.py),
    and is handed back in the default layout, which exports and checkpoints expect."""
    model.eval()
    channels_last = x.dim() == 4 and getattr(model, "feature_kind", None) == "map2d"
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=layout)
    try:
        out = [model(x[i : i + batch_size].to(device).contiguous(memory_format=layout)).float().cpu()
               for i in range(0, len(x), batch_size)]
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
    return torch.cat(out) if out else torch.empty(0)


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE (Guo et al. 2017) with equal-width confidence bins; also the per-bin table for a
    reliability diagram."""
    conf, pred = probs.max(1)
    correct = (pred == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece, table = 0.0, []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        n = int(mask.sum())
        if n:
            acc, avg_conf = correct[mask].mean().item(), conf[mask].mean().item()
            ece += n / len(targets) * abs(acc - avg_conf)
        else:
            acc = avg_conf = None
        table.append({"lo": lo.item(), "hi": hi.item(), "count": n, "accuracy": acc, "confidence": avg_conf})
    return ece, table


def evaluate_logits(logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None = None) -> dict:
    """All test metrics from logits. Agreement and KL are against the teacher at T=1."""
    k = logits.shape[1]
    probs = logits.softmax(1)
    pred = probs.argmax(1)
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((targets, pred), torch.ones_like(targets), accumulate=True)
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist()
    ece, reliability = expected_calibration_error(probs, targets)
    m = {
        "accuracy": (pred == targets).float().mean().item(),
        "nll": F.cross_entropy(logits, targets).item(),
        "ece": ece,
        "errors": int((pred != targets).sum()),
        "n_test": len(targets),
        "confusion": confusion.tolist(),
        "per_class_accuracy": per_class,
        "reliability": reliability,
    }
    if k >= 10:
        top5 = logits.topk(5, dim=1).indices
        m["top5_accuracy"] = (top5 == targets[:, None]).any(1).float().mean().item()
    if teacher_logits is not None:
        m["teacher_agreement"] = (teacher_logits.argmax(1) == pred).float().mean().item()
        m["teacher_kl"] = F.kl_div(F.log_softmax(logits, 1), F.log_softmax(teacher_logits, 1),
                                   reduction="batchmean", log_target=True).item()
    return m
