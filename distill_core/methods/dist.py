"""DIST (Huang, You, Wang, Qian & Xu, "Knowledge Distillation from A Stronger Teacher",
NeurIPS 2022, eq. 4-8).

Instead of matching probabilities exactly (KL), DIST matches their *relations* with the Pearson
correlation rho: across the classes of each sample (inter-class relation) and across the
samples of each class within the batch (intra-class relation). With Y = softmax(Z / T) for a
batch (rows = samples, columns = classes):

    inter = T^2 * (1 - mean_i rho(Y_s[i, :], Y_t[i, :]))
    intra = T^2 * (1 - mean_j rho(Y_s[:, j], Y_t[:, j]))
    L = CE(y, p_s) + beta * inter + gamma * intra
"""
import torch
import torch.nn.functional as F

from ..registry import Param
from . import register
from .base import TEMPERATURE, Method


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of `a` with the same row of `b`."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
              beta: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (beta * inter + gamma * intra, inter, intra), the relation terms scaled by T^2."""
    ys = F.softmax(student_logits / temperature, 1)
    yt = F.softmax(teacher_logits / temperature, 1)
    inter = temperature**2 * (1 - pearson_rows(ys, yt).mean())
    intra = temperature**2 * (1 - pearson_rows(ys.T, yt.T).mean())
    return beta * inter + gamma * intra, inter, intra


@register
class DIST(Method):
    name = "dist"
    description = "DIST: match the teacher's class relations (Pearson correlation) within each sample and across the batch"
    paper = "Huang, You, Wang, Qian & Xu, Knowledge Distillation from A Stronger Teacher, NeurIPS 2022"
    equation = (r"\mathcal{L} = \mathrm{CE}(y, p_s) + \beta\,T^2\big(1 - \tfrac1B\sum_i \rho(Y_{s,i:}, Y_{t,i:})\big)"
                r" + \gamma\,T^2\big(1 - \tfrac1C\sum_j \rho(Y_{s,:j}, Y_{t,:j})\big)")
    temperature = TEMPERATURE
    beta = Param("beta", 2.0, "weight of the inter-class relation (per sample, across classes); the paper: 2 on CIFAR-100, 1 on ImageNet",
                 "float", 0.0, 100.0)
    gamma = Param("gamma", 2.0, "weight of the intra-class relation (per class, across the batch); the paper: 2 on CIFAR-100, 1 on ImageNet",
                  "float", 0.0, 100.0)

    def loss(self, student, teacher, targets, progress):
        kd, inter, intra = dist_loss(student.logits, teacher.logits.detach(), self.temperature, self.beta, self.gamma)
        ce = F.cross_entropy(student.logits, targets)
        return ce + kd, {"ce": ce.item(), "inter": inter.item(), "intra": intra.item()}
