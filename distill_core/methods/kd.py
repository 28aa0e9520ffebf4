"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", NIPS Deep Learning Workshop 2015, arXiv:1503.02531, section 2).

    L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, p_s)

where p^T = softmax(z / T). The T^2 factor keeps the soft term's gradients at the same scale
as T changes (the paper's section 2.1).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from . import register
from .base import ALPHA, TEMPERATURE, LogitsGradient, Method, distillation_terms


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (total, soft term with T^2, hard cross-entropy), computed in one fused pass
    (base.distillation_terms): equal to the formula written with autograd within float rounding.
    The gradient flows through the total; the two terms are its parts' values."""
    t2 = temperature * temperature
    total, kl, hard = distillation_terms(student_logits, teacher_logits, student_logits, targets, temperature,
                                         alpha * t2, 1 - alpha)
    return total, kl * t2, hard


def kd_soft_targets(teacher_logits: torch.Tensor, targets: torch.Tensor, temperature: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the KD loss needs of each training sample's teacher and label, computed once when the
    teacher's logits are cached: rows (N, 2, K) = [p_t^T ; onehot(y)], and (N, 2, K) =
    [log p_t^T ; 0], the teacher's side of both terms' log-ratios (cross-entropy has none)."""
    with torch.no_grad():
        log_p = torch.log_softmax(teacher_logits * (1.0 / temperature), dim=1)
        onehot = F.one_hot(targets, log_p.shape[1]).to(log_p.dtype)
        return torch.stack([log_p.exp(), onehot], dim=1), torch.stack([log_p, torch.zeros_like(log_p)], dim=1)


@lru_cache(maxsize=64)
def _scales(temperature: float, alpha: float, n: int, device: torch.device, dtype: torch.dtype
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The two rows' logit scales (1/T, 1) and gradient weights (alpha T / N, (1 - alpha) / N)."""
    return (torch.tensor([[1.0 / temperature], [1.0]], device=device, dtype=dtype),
            torch.tensor([[alpha * temperature / n], [(1.0 - alpha) / n]], device=device, dtype=dtype))


def kd_loss_from_soft(student_logits: torch.Tensor, soft: tuple[torch.Tensor, torch.Tensor], temperature: float,
                      alpha: float) -> tuple[LogitsGradient, float, float]:
    """kd_loss for a batch whose teacher came as `kd_soft_targets` rows: (loss, soft term with T^2,
    hard cross-entropy). One log-softmax over the logits at T and at 1 side by side gives both
    terms and, in closed form (base.distillation_terms), the gradient

        dL/dz = [alpha T (p_s^T - p_t^T) + (1 - alpha) (p_s - onehot(y))] / N

    Equal to kd_loss within float rounding (tests/test_methods.py). It records nothing for autograd
    and repeats nothing of the teacher's: on digits its cost over cross-entropy in the training
    loop is under half kd_loss's (bench/bench_engine.py, docs/benchmarks.md "Engine")."""
    rows, teacher_logs = soft
    n = student_logits.shape[0]
    scale, weight = _scales(temperature, alpha, n, student_logits.device, student_logits.dtype)
    with torch.no_grad():
        # (n, 2, k): [log p_s^T ; log p_s] per sample, the rows' layout
        log_probs = torch.log_softmax(student_logits.unsqueeze(1) * scale, dim=2)
        grad = log_probs.exp().sub_(rows).mul_(weight).sum(1)
        # both terms in one sum of the rows times log-ratios: sum p_t^T (log p_t^T - log p_s^T),
        # the KL, summed as small terms (not as the difference of two sums near -N log K, which
        # T^2 / N would magnify), and sum onehot (0 - log p_s), the cross-entropy
        kl, ce = (rows * (teacher_logs - log_probs)).sum((0, 2)).tolist()
    soft_term = temperature * temperature * kl / n
    hard = ce / n
    return LogitsGradient(alpha * soft_term + (1 - alpha) * hard, grad), soft_term, hard


def kd_batch_loss(student, teacher, targets: torch.Tensor, temperature: float, alpha: float):
    """(loss, parts) of a KD-loss method for one batch: from the teacher's soft-target rows when
    the engine gave them (cached logits), else from its logits."""
    if teacher.soft is not None:
        loss, soft, hard = kd_loss_from_soft(student.logits, teacher.soft, temperature, alpha)
        return loss, {"soft": soft, "ce": hard}
    total, soft, hard = kd_loss(student.logits, teacher.logits.detach(), targets, temperature, alpha)
    return total, {"soft": soft.item(), "ce": hard.item()}


@register
class KD(Method):
    name = "kd"
    description = "Hinton's knowledge distillation: match the teacher's softened outputs"
    paper = "Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, 2015 (arXiv:1503.02531)"
    equation = r"\mathcal{L} = \alpha T^2\,\mathrm{KL}(p_t^T \,\|\, p_s^T) + (1-\alpha)\,\mathrm{CE}(y, p_s)"
    temperature = TEMPERATURE
    alpha = ALPHA

    def soft_targets(self, teacher_logits, targets):
        return kd_soft_targets(teacher_logits, targets, self.temperature)

    def loss(self, student, teacher, targets, progress):
        return kd_batch_loss(student, teacher, targets, self.temperature, self.alpha)
