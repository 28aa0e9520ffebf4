"""Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation",
CVPR 2019, eq. 4-7).

The student's embeddings are asked to keep the *geometry* of the teacher's, not their values, so
the two embeddings may have any widths. With l_delta the Huber loss (delta = 1):

    distance:  psi_D(t_i, t_j) = ||t_i - t_j||_2 / mu,  mu = mean distance over pairs i != j
               L_D = mean over pairs i != j of l_delta(psi_D(s_i, s_j), psi_D(t_i, t_j))
    angle:     psi_A(t_i, t_j, t_k) = <e_ij, e_kj>,  e_ij = (t_i - t_j) / ||t_i - t_j||_2
               L_A = mean over triplets of distinct i, j, k of l_delta(psi_A(s), psi_A(t))
    L = CE(y, p_s) + lambda_D * L_D + lambda_A * L_A

The paper sums over the pairs / triplets; here they are averaged, as in the authors' code, so
the weights do not depend on the batch size (the authors' code also averages in the degenerate
pairs, which contribute zero; here they are left out).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Param
from . import register
from .base import EMBEDDING, Method


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(N, N) Euclidean distances; the clamp keeps the square root's gradient finite at 0."""
    sq = e.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp(min=eps).sqrt()


def rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    n = len(student)
    if n < 2:
        return student.sum() * 0.0
    off = ~torch.eye(n, dtype=torch.bool, device=student.device)
    d_s, d_t = pairwise_distances(student)[off], pairwise_distances(teacher)[off]
    return F.smooth_l1_loss(d_s / d_s.mean(), d_t / d_t.mean())


def _angles(e: torch.Tensor) -> torch.Tensor:
    """(N, N, N) tensor a[j, i, k] = <e_ij, e_kj>, the cosine of the angle at vertex j."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], dim=2)  # diff[j, i] = unit(e_i - e_j)
    return diff @ diff.transpose(1, 2)


def rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    n = len(student)
    if n < 3:
        return student.sum() * 0.0
    idx = torch.arange(n, device=student.device)
    distinct = ((idx[:, None, None] != idx[None, :, None]) & (idx[:, None, None] != idx[None, None, :])
                & (idx[None, :, None] != idx[None, None, :])).to(student.dtype)
    # A mask-weighted mean: several times faster than indexing the N^3 entries.
    per = F.smooth_l1_loss(_angles(student), _angles(teacher), reduction="none")
    return (per * distinct).sum() / distinct.sum()


def rkd_loss(student: torch.Tensor, teacher: torch.Tensor, distance_weight: float, angle_weight: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (weighted sum, L_D, L_A) for embeddings (N, D_s) and (N, D_t)."""
    dist, angle = rkd_distance(student, teacher), rkd_angle(student, teacher)
    return distance_weight * dist + angle_weight * angle, dist, angle


@register
class RKD(Method):
    name = "rkd"
    description = "relational KD: keep the distances and angles between the teacher's embeddings of a batch"
    paper = "Park, Kim, Lu & Cho, Relational Knowledge Distillation, CVPR 2019"
    equation = (r"\mathcal{L} = \mathrm{CE}(y, p_s) + \lambda_D\,\overline{\ell_\delta\big(\tfrac{\|s_i-s_j\|}{\mu_s},"
                r" \tfrac{\|t_i-t_j\|}{\mu_t}\big)} + \lambda_A\,\overline{\ell_\delta\big(\langle e^s_{ij}, e^s_{kj}\rangle,"
                r" \langle e^t_{ij}, e^t_{kj}\rangle\big)}")
    distance_weight = Param("distance_weight", 25.0, "weight lambda_D of the distance term (25 in the CRD benchmark / mdistiller)",
                            "float", 0.0, 1e4)
    angle_weight = Param("angle_weight", 50.0, "weight lambda_A of the angle term (50 in the CRD benchmark / mdistiller)",
                         "float", 0.0, 1e4)
    needs = EMBEDDING

    @classmethod
    def incompatibility(cls, student, teacher):
        return _embedding_incompatibility(student, teacher)

    def loss(self, student, teacher, targets, progress):
        rel, dist, angle = rkd_loss(student.embedding, teacher.embedding.detach(), self.distance_weight, self.angle_weight)
        ce = F.cross_entropy(student.logits, targets)
        return ce + rel, {"ce": ce.item(), "distance": dist.item(), "angle": angle.item()}


def _embedding_incompatibility(student, teacher) -> str | None:
    """Embedding methods need a learned representation in both models (a linear model has none)."""
    if not student.stages:
        return "the student has no hidden layer, so no embedding to shape (a linear model's embedding is its input)"
    if teacher is not None and not teacher.stages:
        return "the teacher has no hidden layer, so no learned embedding to pass on (a linear model's embedding is its input)"
    return None
