"""KD with logit standardisation (Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge
Distillation", CVPR 2024, eq. 9 and Algorithm 1).

Both models' logits are z-scored per sample before the softmax, so the student only has to match
the *shape* of the teacher's logits, not their scale or offset:

    Z(z) = (z - mean(z)) / std(z)     (std over the classes, 1/K normalisation as in the paper)
    L = alpha * T^2 * KL(softmax(Z(z_t)/T) || softmax(Z(z_s)/T)) + (1 - alpha) * CE(y, p_s)

The paper's base temperature tau plays the role of T here. The authors' code divides by the
(K-1)-normalised std; that only rescales T by sqrt(K/(K-1)).
"""
import torch

from . import register
from .base import ALPHA, TEMPERATURE, Method, distillation_terms


def standardise(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-sample z-score of the logits (population std)."""
    mean = logits.mean(1, keepdim=True)
    std = logits.std(1, keepdim=True, correction=0)
    return (logits - mean) / (std + eps)


def logit_std_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                   temperature: float, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (total, soft term with T^2, hard cross-entropy)."""
    t2 = temperature * temperature
    total, kl, hard = distillation_terms(standardise(student_logits), standardise(teacher_logits), student_logits,
                                         targets, temperature, alpha * t2, 1 - alpha)
    return total, kl * t2, hard


@register
class LogitStd(Method):
    name = "logit-std"
    description = "KD on z-scored logits: the student matches the shape of the teacher's logits, not their scale"
    paper = "Sun, Ren, Li, Wang & Cao, Logit Standardization in Knowledge Distillation, CVPR 2024"
    equation = (r"\mathcal{L} = \alpha T^2\,\mathrm{KL}\big(\sigma(\mathcal{Z}(z_t)/T) \,\|\, \sigma(\mathcal{Z}(z_s)/T)\big)"
                r" + (1-\alpha)\,\mathrm{CE}(y, p_s),\quad \mathcal{Z}(z) = \frac{z - \bar z}{\mathrm{std}(z)}")
    temperature = TEMPERATURE
    alpha = ALPHA

    def loss(self, student, teacher, targets, progress):
        total, soft, hard = logit_std_loss(student.logits, teacher.logits.detach(), targets, self.temperature, self.alpha)
        return total, {"soft": soft.item(), "ce": hard.item()}
