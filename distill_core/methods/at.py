"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
Performance of Convolutional Neural Networks via Attention Transfer", ICLR 2017, eq. 2).

A feature map A (C channels) gives a spatial attention map F(A) = mean_c |A_c|^p (p = 2), which
is flattened and L2-normalised: Q = F(A) / ||F(A)||_2. The student's maps are pulled towards the
teacher's at paired stages j:

    L = CE(y, p_s) + beta / 2 * sum_j mean((Q_s^j - Q_t^j)^2)

The paper writes the distance as a p-norm; its authors' code (and the reference libraries) uses
the mean of squared differences over batch and positions, which is what is implemented; the
paper's beta = 1000 (per element of the map and per sample) is for this mean on CIFAR's 32x32 to
8x8 maps. The maps of the small images here are far smaller (2x2 to 4x4 on digits), where 1000
swamps the cross-entropy (the student barely learns its labels), so the default is 10.

Channel counts need not match (channels are averaged away). Where the spatial sizes differ, the
larger attention map is average-pooled to the smaller one. Stages are paired evenly by depth, the
last stage of each model always paired with the other's last.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Param
from . import register
from .base import FEATURES, Method


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """F(A) = mean over channels of |A|^p: (N, C, *S) -> (N, *S), not yet normalised."""
    return feature.abs().pow(p).mean(1)


def _pool_map(a: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    if tuple(a.shape[1:]) == size:
        return a
    pool = F.adaptive_avg_pool1d if a.dim() == 2 else F.adaptive_avg_pool2d
    return pool(a.unsqueeze(1), size).squeeze(1)


def at_pair_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """mean((Q_s - Q_t)^2) for one pair of feature maps (spatial sizes pooled to the smaller)."""
    a_s, a_t = attention_map(student_feature, p), attention_map(teacher_feature, p)
    size = tuple(min(x, y) for x, y in zip(a_s.shape[1:], a_t.shape[1:]))
    q_s = F.normalize(_pool_map(a_s, size).flatten(1), dim=1)
    q_t = F.normalize(_pool_map(a_t, size).flatten(1), dim=1)
    return (q_s - q_t).pow(2).mean()


def pair_stages(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """min(n_s, n_t) pairs of stage indices, spread evenly by depth, the last stages paired."""
    k = min(n_student, n_teacher)
    return [(round((j + 1) * n_student / k) - 1, round((j + 1) * n_teacher / k) - 1) for j in range(k)]


def at_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor],
            pairs: list[tuple[int, int]], beta: float, p: float = 2.0) -> torch.Tensor:
    """beta / 2 * sum over the paired stages of mean((Q_s - Q_t)^2)."""
    return beta / 2 * sum(at_pair_loss(student_features[i], teacher_features[j], p) for i, j in pairs)


@register
class AT(Method):
    name = "at"
    description = "attention transfer: match where the teacher's feature maps are active, stage by stage"
    paper = ("Zagoruyko & Komodakis, Paying More Attention to Attention: Improving the Performance of "
             "Convolutional Neural Networks via Attention Transfer, ICLR 2017")
    equation = (r"\mathcal{L} = \mathrm{CE}(y, p_s) + \frac{\beta}{2}\sum_j \overline{\Big(\frac{Q_s^j}{\|Q_s^j\|_2}"
                r" - \frac{Q_t^j}{\|Q_t^j\|_2}\Big)^2},\quad Q = \tfrac1C\textstyle\sum_c |A_c|^p")
    beta = Param("beta", 10.0, "weight of the attention term; the paper's 1000 suits CIFAR's 32x32 maps and swamps "
                 "the labels on the small maps here", "float", 0.0, 1e6)
    p = Param("p", 2.0, "exponent in the attention map mean_c |A_c|^p (the paper: 2)", "float", 1.0, 4.0)
    stages = Param("stages", "all", "which stages are paired: all (evenly by depth) or the last of each", "choice",
                   choices=("all", "last"))
    needs = FEATURES

    @classmethod
    def incompatibility(cls, student, teacher):
        for who, model in (("student", student), ("teacher", teacher)):
            if model is not None and not model.has_feature_maps:
                return (f"attention transfer needs spatial feature maps in both models, and the {who} is a "
                        f"vector model (MLP or linear) without any; use a convolutional {who} (cnn, resnet, mobile)")
        if teacher is not None and student.feature_kind != teacher.feature_kind:
            return "attention transfer needs both models' feature maps to have the same dimensionality (1-D or 2-D)"
        return None

    def loss(self, student, teacher, targets, progress):
        pairs = pair_stages(len(student.features), len(teacher.features))
        if self.stages == "last":
            pairs = pairs[-1:]
        t_features = [f.detach() for f in teacher.features]
        transfer = at_loss(student.features, t_features, pairs, self.beta, self.p)
        ce = F.cross_entropy(student.logits, targets)
        return ce + transfer, {"ce": ce.item(), "attention": transfer.item()}
