"""The student alone, trained on the hard labels: the baseline every method is compared with."""
import torch.nn.functional as F

from . import register
from .base import Method


@register
class Scratch(Method):
    name = "scratch"
    description = "no teacher: cross-entropy on the hard labels (the baseline)"
    equation = r"\mathcal{L} = \mathrm{CE}(y, \sigma(z_s))"
    uses_teacher = False

    def loss(self, student, teacher, targets, progress):
        ce = F.cross_entropy(student.logits, targets)
        return ce, {"ce": ce.item()}
