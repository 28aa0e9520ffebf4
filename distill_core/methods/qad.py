"""Quantisation-aware distillation: fine-tune a trained student as the int8 model it deploys as,
with the fp32 teacher (or the fp32 student itself) as the teacher.

Post-training static quantisation (PTQ) rounds a trained network's weights to int8 per output
channel and its activations to uint8 with ranges calibrated on training samples; where that
loses accuracy (an activation with outliers stretches its range and coarsens its steps), the
network is fine-tuned with the quantisers in the loop, learning weights that survive the
rounding and activation ranges that clip the outliers. The loss is Hinton's KD from an fp32
model (by default the student's own fp32 self; the experiment's teacher on request), as NVIDIA's
Model Optimizer and Intel's Neural Compressor do it for their users:

    L = alpha * T^2 * KL(p_fp32^T || p_int8^T) + (1 - alpha) * CE(y, p_int8)

The quantisers are ONNX Runtime's static QDQ graph of the student, simulated in PyTorch
(measure/qdq_sim.py): what is trained is what deploys. The run starts from the trained student
(`start_from`: a run of its own, which this one waits for) and never changes it.
References: Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018; Esser et al., "Learned Step Size Quantization",
ICLR 2020 (the learned ranges); Mishra & Marr, "Apprentice", ICLR 2018 (distillation into a
low-precision student).
"""
from __future__ import annotations

import dataclasses

from ..constants import SCRATCH
from ..registry import Param
from ..run_config import RunConfig
from . import register
from .base import ALPHA, TEMPERATURE, Method
from .kd import kd_batch_loss, kd_soft_targets

STARTS = (SCRATCH, "kd")


@register
class QAD(Method):
    name = "qad"
    description = ("quantisation-aware distillation: fine-tune a trained student as its static int8 model, "
                   "distilled from the fp32 teacher (or the fp32 student)")
    paper = ("Jacob et al., Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only "
             "Inference, CVPR 2018; Esser et al., Learned Step Size Quantization, ICLR 2020")
    equation = (r"\mathcal{L} = \alpha T^2\,\mathrm{KL}(p_{\mathrm{fp32}}^T \,\|\, p_{\mathrm{int8}}^T)"
                r" + (1-\alpha)\,\mathrm{CE}(y, p_{\mathrm{int8}})")
    trains_int8 = True
    start = Param("start", "kd", "the trained fp32 student it starts from: the same student trained with this "
                  "method (kd at this run's temperature and alpha, or scratch)", "choice", choices=STARTS)
    kd_from = Param("kd_from", "start", "the soft targets: the fp32 student it starts from (its own fp32 self, "
                    "what int8 should keep), or the experiment's fp32 teacher", "choice", choices=("start", "teacher"))
    epochs = Param("epochs", 5, "fine-tuning epochs (the experiment's epochs are the fp32 student's)", "int", 1, 1000)
    lr_factor = Param("lr_factor", 0.1, "the fine-tuning's learning rate, as a fraction of the experiment's",
                      "float", 1e-4, 1.0)
    ranges = Param("ranges", "learned", "activation ranges: learned from their calibrated values (LSQ), or "
                   "kept as calibrated (only the weights adapt)", "choice", choices=("learned", "calibrated"))
    temperature = TEMPERATURE
    alpha = ALPHA

    @classmethod
    def start_from(cls, knobs: dict, run: RunConfig) -> RunConfig:
        """The same student, teacher, data and seed, trained with `start` (KD at this run's
        temperature and alpha) on the experiment's training settings."""
        if knobs["start"] == SCRATCH:
            method = {"name": SCRATCH}
        else:
            method = {"name": "kd", "temperature": knobs["temperature"], "alpha": knobs["alpha"]}
        return dataclasses.replace(run, method=method, start=None)

    @classmethod
    def train_for(cls, knobs: dict, train: dict) -> dict:
        """A short fine-tuning at a fraction of the rate, keeping the epoch of best validation
        accuracy (patience = epochs: it never stops early, it keeps the best)."""
        return {**train, "epochs": knobs["epochs"], "lr": train["lr"] * knobs["lr_factor"], "patience": knobs["epochs"]}

    @property
    def distils_from_start(self) -> bool:
        return self.kd_from == "start"

    def soft_targets(self, teacher_logits, targets):
        return kd_soft_targets(teacher_logits, targets, self.temperature)

    def loss(self, student, teacher, targets, progress):
        # `student` is the simulated int8 model's output; `teacher` the fp32 teacher's or the start's.
        return kd_batch_loss(student, teacher, targets, self.temperature, self.alpha)
