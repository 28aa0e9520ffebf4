"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018, eq. 5-10).

Each model's embeddings of a batch define conditional probabilities through the cosine kernel
K(a, b) = (cos(a, b) + 1) / 2:  p_{j|i} = K(t_i, t_j) / sum_{k != i} K(t_i, t_k), and q_{j|i}
likewise from the student. The student minimises the divergence between the two:

    L = CE(y, p_s) + weight * (1/N) sum_i sum_{j != i} p_{j|i} log(p_{j|i} / q_{j|i})

(the paper's sum over i, divided by the batch size so the weight does not depend on it). Only
similarities are compared, so the embeddings may have different widths.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Param
from . import register
from .base import EMBEDDING, Method
from .rkd import _embedding_incompatibility


def conditional_probabilities(e: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(N, N) matrix P[i, j] = p_{j|i} from the cosine kernel, zero on the diagonal."""
    e = F.normalize(e, dim=1, eps=eps)
    k = ((e @ e.T) + 1) / 2
    k = k * (1 - torch.eye(len(e), dtype=e.dtype, device=e.device))
    return k / (k.sum(1, keepdim=True) + eps)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over anchors i of KL(p_{.|i} || q_{.|i}) for embeddings (N, D_s) and (N, D_t)."""
    if len(student) < 2:
        return student.sum() * 0.0
    p, q = conditional_probabilities(teacher), conditional_probabilities(student)
    return (p * torch.log((p + eps) / (q + eps))).sum(1).mean()


@register
class PKT(Method):
    name = "pkt"
    description = "probabilistic knowledge transfer: match the teacher's distribution of similarities between samples"
    paper = "Passalis & Tefas, Learning Deep Representations with Probabilistic Knowledge Transfer, ECCV 2018"
    equation = (r"\mathcal{L} = \mathrm{CE}(y, p_s) + \lambda\,\frac1N\sum_i\sum_{j\ne i} p_{j|i}\log\frac{p_{j|i}}{q_{j|i}},"
                r"\quad p_{j|i} = \frac{K(t_i, t_j)}{\sum_{k\ne i} K(t_i, t_k)},\ K(a,b) = \tfrac12(\cos(a,b) + 1)")
    weight = Param("weight", 100.0, "weight lambda of the PKT term", "float", 0.0, 1e6)
    needs = EMBEDDING

    @classmethod
    def incompatibility(cls, student, teacher):
        return _embedding_incompatibility(student, teacher)

    def loss(self, student, teacher, targets, progress):
        transfer = pkt_loss(student.embedding, teacher.embedding.detach())
        ce = F.cross_entropy(student.logits, targets)
        return ce + self.weight * transfer, {"ce": ce.item(), "pkt": transfer.item()}
