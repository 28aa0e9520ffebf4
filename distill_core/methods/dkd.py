"""Decoupled knowledge distillation (Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge
Distillation", CVPR 2022, eq. 1 and 2).

The KD loss splits into a target-class term (TCKD: KL between the binary distributions
b = [p_target, 1 - p_target]) and a non-target-class term (NCKD: KL between the distributions
over the non-target classes, renormalised). DKD weights them independently:

    L = CE(y, p_s) + w(progress) * T^2 * (alpha * KL(b_t || b_s) + beta * KL(p^_t || p^_s))

where p = softmax(z / T), p^ = softmax over the non-target logits / T, and w ramps linearly from 0
to 1 over the first `warmup` fraction of training (the paper: 20 of 240 epochs).
"""
import torch
import torch.nn.functional as F

from ..registry import Param
from . import register
from .base import TEMPERATURE, Method


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
             temperature: float, alpha: float, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (alpha * TCKD + beta * NCKD, TCKD, NCKD), each batch-mean and scaled by T^2."""
    t2 = temperature**2
    gt = F.one_hot(targets, student_logits.shape[1]).bool()
    zs, zt = student_logits / temperature, teacher_logits / temperature
    # Binary (target, rest) distributions, in log space for stability.
    log_ps, log_pt = F.log_softmax(zs, 1), F.log_softmax(zt, 1)
    log_bs = torch.stack([log_ps[gt], torch.logsumexp(log_ps.masked_fill(gt, -torch.inf), 1)], 1)
    log_bt = torch.stack([log_pt[gt], torch.logsumexp(log_pt.masked_fill(gt, -torch.inf), 1)], 1)
    tckd = t2 * F.kl_div(log_bs, log_bt, reduction="batchmean", log_target=True)
    # Non-target distributions: the target logit is removed (-inf), the rest renormalised.
    log_qs = F.log_softmax(zs.masked_fill(gt, -torch.inf), 1).masked_fill(gt, 0.0)
    log_qt = F.log_softmax(zt.masked_fill(gt, -torch.inf), 1).masked_fill(gt, 0.0)
    nckd = t2 * (log_qt.exp() * (log_qt - log_qs)).sum(1).mean()
    return alpha * tckd + beta * nckd, tckd, nckd


@register
class DKD(Method):
    name = "dkd"
    description = "decoupled KD: weight the target-class and non-target-class parts of KD separately"
    paper = "Zhao, Cui, Song, Qiu & Liang, Decoupled Knowledge Distillation, CVPR 2022"
    equation = (r"\mathcal{L} = \mathrm{CE}(y, p_s) + w\,T^2\big(\alpha\,\mathrm{KL}(b_t \,\|\, b_s)"
                r" + \beta\,\mathrm{KL}(\hat p_t \,\|\, \hat p_s)\big),\quad w = \min(1, \mathrm{progress}/\mathrm{warmup})")
    temperature = TEMPERATURE
    alpha = Param("alpha", 1.0, "weight of the target-class term TCKD (the paper's alpha)", "float", 0.0, 10.0)
    beta = Param("beta", 8.0, "weight of the non-target-class term NCKD (the paper: 8 on CIFAR-100, 0.5 on ImageNet)",
                 "float", 0.0, 100.0)
    warmup = Param("warmup", 0.08, "fraction of training over which the distillation weight rises linearly from 0 to 1 "
                   "(the paper: 20 of 240 epochs)", "float", 0.0, 1.0)

    def loss(self, student, teacher, targets, progress):
        kd, tckd, nckd = dkd_loss(student.logits, teacher.logits.detach(), targets, self.temperature,
                                  self.alpha, self.beta)
        w = min(1.0, progress / self.warmup) if self.warmup > 0 else 1.0
        ce = F.cross_entropy(student.logits, targets)
        return ce + w * kd, {"ce": ce.item(), "tckd": tckd.item(), "nckd": nckd.item()}
