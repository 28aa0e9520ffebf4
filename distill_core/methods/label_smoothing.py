"""Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, sec. 7):
the teacher-free baseline KD is often compared with (Yuan et al., CVPR 2020; Müller et al. 2019).

    q = (1 - eps) * onehot(y) + eps / K,    L = CE(q, p_s)
"""
import torch
import torch.nn.functional as F

from ..registry import Param
from . import register
from .base import Method


def label_smoothing_loss(student_logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    return F.cross_entropy(student_logits, targets, label_smoothing=epsilon)


@register
class LabelSmoothing(Method):
    name = "label-smoothing"
    description = "no teacher: cross-entropy against smoothed labels (uniform 'soft targets')"
    paper = "Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016"
    equation = r"\mathcal{L} = \mathrm{CE}\big((1-\varepsilon)\,\mathbb{1}_y + \varepsilon/K,\ p_s\big)"
    epsilon = Param("epsilon", 0.1, "probability mass spread uniformly over all classes", "float", 0.0, 0.99)
    uses_teacher = False

    def loss(self, student, teacher, targets, progress):
        loss = label_smoothing_loss(student.logits, targets, self.epsilon)
        return loss, {"ce_smoothed": loss.item()}
