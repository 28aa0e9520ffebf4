"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network", NIPS Deep Learning Workshop 2015, arXiv:1503.02531, section 2).

    L = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(y, p_s)

where p^T = softmax(z / T). The T^2 factor keeps the soft term's gradients at the same scale
as T changes (the paper's section 2.1).
"""
import torch

from . import register
from .base import ALPHA, TEMPERATURE, Method, distillation_terms


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (total, soft term with T^2, hard cross-entropy), computed in one fused pass
    (base.distillation_terms): equal to the formula written with autograd within float rounding.
    The gradient flows through the total; the two terms are its parts' values."""
    t2 = temperature * temperature
    total, kl, hard = distillation_terms(student_logits, teacher_logits, student_logits, targets, temperature,
                                         alpha * t2, 1 - alpha)
    return total, kl * t2, hard


@register
class KD(Method):
    name = "kd"
    description = "Hinton's knowledge distillation: match the teacher's softened outputs"
    paper = "Hinton, Vinyals & Dean, Distilling the Knowledge in a Neural Network, 2015 (arXiv:1503.02531)"
    equation = r"\mathcal{L} = \alpha T^2\,\mathrm{KL}(p_t^T \,\|\, p_s^T) + (1-\alpha)\,\mathrm{CE}(y, p_s)"
    temperature = TEMPERATURE
    alpha = ALPHA

    def loss(self, student, teacher, targets, progress):
        total, soft, hard = kd_loss(student.logits, teacher.logits, targets, self.temperature, self.alpha)
        return total, {"soft": soft.item(), "ce": hard.item()}
