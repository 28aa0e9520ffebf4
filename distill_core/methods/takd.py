"""Teacher-assistant KD (Mirzadeh, Farajtabar, Li, Levine, Matsukawa & Ghasemzadeh, "Improved
Knowledge Distillation via Teacher Assistant", AAAI 2020).

When the teacher is much larger than the student, distilling through an intermediate-size
"teacher assistant" closes the gap in two steps: the assistant is trained with KD from the
teacher, then the student with KD from the assistant. Each step is Hinton's loss:

    L = alpha * T^2 * KL(p_a^T || p_s^T) + (1 - alpha) * CE(y, p_s)

The assistant is not a learnable part of this method: the `teacher_for` hook turns it into a
run of its own (role "assistant", whose teacher is the real teacher) and makes it the student's
teacher, so it is trained once and cached like any teacher.
"""
from __future__ import annotations

import copy

from ..constants import ASSISTANT
from ..errors import ConfigError, DistillError
from ..models import check_input_kind, is_network, normalise_spec
from ..registry import Param
from ..run_config import RunConfig
from . import register
from .base import ALPHA, TEMPERATURE, Method
from .kd import kd_batch_loss, kd_soft_targets


def auto_assistant(teacher_model: dict) -> dict:
    """The teacher's architecture at half its width: a same-family assistant, as in the paper."""
    spec = copy.deepcopy(teacher_model)
    arch = spec["arch"]
    if arch == "mlp":
        spec["hidden"] = [max(1, h // 2) for h in spec["hidden"]]
    elif arch == "cnn":
        spec["channels"] = [max(1, c // 2) for c in spec["channels"]]
    elif arch == "resnet":
        spec["width"] = max(2, spec["width"] // 2)
    elif arch == "mobile":
        spec["width_mult"] = max(0.125, spec["width_mult"] / 2)
    return spec


@register
class TAKD(Method):
    name = "takd"
    description = "teacher-assistant KD: distil into an intermediate-size assistant first, then from it into the student"
    paper = ("Mirzadeh, Farajtabar, Li, Levine, Matsukawa & Ghasemzadeh, Improved Knowledge Distillation via "
             "Teacher Assistant, AAAI 2020")
    equation = (r"\mathcal{L}_a = \alpha T^2\,\mathrm{KL}(p_t^T \,\|\, p_a^T) + (1-\alpha)\,\mathrm{CE}(y, p_a),\quad"
                r"\mathcal{L}_s = \alpha T^2\,\mathrm{KL}(p_a^T \,\|\, p_s^T) + (1-\alpha)\,\mathrm{CE}(y, p_s)")
    assistant = Param("assistant", "auto", "the assistant's model: a named size or architecture (e.g. cnn-small, "
                      "mlp-medium), or 'auto' for the teacher's architecture at half its width", "str")
    temperature = TEMPERATURE
    alpha = ALPHA

    @classmethod
    def teacher_for(cls, knobs: dict, teacher: RunConfig, input_kind: str) -> RunConfig:
        """The assistant: trained like the teacher (same data, training settings and seed 0)
        with KD from the teacher at the student's temperature and alpha."""
        name = knobs["assistant"].strip()
        if not is_network(teacher.model):  # an ONNX file, a file of outputs, a scikit-learn model, an ensemble
            if name == "auto":
                raise ConfigError("method takd: assistant 'auto' is the teacher's architecture at half its width, and "
                                  "this teacher is not a network of this lab; name the assistant, e.g. mlp-medium")
            if teacher.train.get("augment"):
                raise ConfigError("method takd: the assistant learns from this teacher's outputs on the data set's own "
                                  "samples; turn augment off in the teacher's training settings")
        try:
            model = auto_assistant(teacher.model) if name == "auto" else normalise_spec(name)
            check_input_kind(model, input_kind)
        except DistillError as exc:
            raise ConfigError(f"method takd: assistant {name!r}: {exc}") from None
        kd = {"name": "kd", "temperature": knobs["temperature"], "alpha": knobs["alpha"]}
        return RunConfig(role=ASSISTANT, dataset=teacher.dataset, model=model, method=kd, train=teacher.train,
                         seed=0, teacher=teacher)

    def soft_targets(self, teacher_logits, targets):
        return kd_soft_targets(teacher_logits, targets, self.temperature)

    def loss(self, student, teacher, targets, progress):
        # `teacher` is the assistant here: the experiment made it this run's teacher.
        return kd_batch_loss(student, teacher, targets, self.temperature, self.alpha)
