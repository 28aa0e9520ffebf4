"""What a distillation method is.

A method module holds a pure loss function of tensors (checkable against its paper) and a small
`Method` subclass that declares its knobs, what it needs from the models, and computes the
training loss for one batch. Adding a method = adding one module to this package.

Knobs are declared as class attributes holding their `Param`; an instance reads its own value
under the same name (`self.temperature`), validated by that Param when the method is made:

    class KD(Method):
        temperature = TEMPERATURE
        alpha = ALPHA
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import DistillNet, ModelOutput
from ..registry import Param, coerce_knobs
from ..run_config import RunConfig

# What a method needs from the models; the engine only computes what is needed.
LOGITS, EMBEDDING, FEATURES = "logits", "embedding", "features"

TEMPERATURE = Param("temperature", 4.0, "softmax temperature T: higher shows more of the teacher's 'dark knowledge'", "float", 0.1, 100.0)
ALPHA = Param("alpha", 0.9, "weight of the distillation term; 1 - alpha goes to the hard-label cross-entropy", "float", 0.0, 1.0)


@dataclass
class LogitsGradient:
    """A batch's loss given as its value and its gradient with respect to the student's logits,
    both worked out in closed form. The engine starts the backward pass at the logits
    (`logits.backward(grad)`): nothing of the loss itself is recorded for autograd, which on a
    small student is a fifth of the step (docs/benchmarks.md, Engine)."""

    value: float
    grad: torch.Tensor

    def item(self) -> float:
        return self.value


class Method:
    """Base class. Subclasses set the class attributes and implement `loss`."""

    name: ClassVar[str]
    description: ClassVar[str]
    paper: ClassVar[str] = ""
    equation: ClassVar[str] = ""  # LaTeX, shown on the page
    params: ClassVar[tuple[Param, ...]] = ()  # the Param attributes, in the order declared
    needs: ClassVar[str] = LOGITS  # LOGITS, EMBEDDING or FEATURES (from teacher and student)
    uses_teacher: ClassVar[bool] = True
    # Trains the static int8 simulation of the student it starts from (QAD), not the fp32 network.
    trains_int8: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        declared: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, Param):
                    if attr != value.name:
                        raise TypeError(f"{cls.__name__}.{attr} declares the knob {value.name!r}: give both one name")
                    declared[attr] = value
        cls.params = tuple(declared.values())

    def __init__(self, **knobs):
        self.knobs = self.coerce(knobs)  # each Param reads its value from here (registry.Param.__get__)
        self.extra: nn.Module | None = None  # learnable parts (adapters), trained with the student

    @classmethod
    def coerce(cls, knobs: dict) -> dict:
        """Every knob validated by its Param, defaults filled in; ConfigError naming a bad one."""
        return coerce_knobs(cls.params, knobs, f"method {cls.name}")

    @classmethod
    def teacher_for(cls, knobs: dict, teacher: RunConfig, input_kind: str) -> RunConfig:
        """The teacher a student with these (validated) knobs learns from: the experiment's own,
        unless the method puts another model in between (TAKD's assistant)."""
        return teacher

    @classmethod
    def start_from(cls, knobs: dict, run: RunConfig) -> RunConfig | None:
        """The run whose trained weights this student starts from (None: a fresh initialisation).
        It becomes a run of the experiment that this one waits for (QAD's fp32 student)."""
        return None

    @classmethod
    def train_for(cls, knobs: dict, train: dict) -> dict:
        """The training settings this method trains with (QAD: a short fine-tuning)."""
        return train

    @property
    def distils_from_start(self) -> bool:
        """Whether the soft targets come from the run it starts from instead of the teacher."""
        return False

    @classmethod
    def needs_network(cls) -> bool:
        """Whether it needs more of the teacher than its outputs (a network of this lab)."""
        return cls.uses_teacher and cls.needs in (EMBEDDING, FEATURES)

    @classmethod
    def incompatibility(cls, student: DistillNet, teacher: DistillNet | None) -> str | None:
        """Why this method cannot run with these models, or None if it can."""
        return None

    def setup(self, student: DistillNet, teacher: DistillNet | None, sample: torch.Tensor) -> nn.Module | None:
        """Create learnable extras (adapters) given a sample batch; returns them (or None)."""
        return None

    def soft_targets(self, teacher_logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        """Per-sample tensors derived once from a cached teacher's logits on the whole training
        split (and its labels), when they save work in every step; the engine hands each batch its
        rows as `teacher.soft`, and then no logits (`teacher.logits` is None: the loss reads the rows
        only). None (the default): the loss reads the logits."""
        return None

    def loss(self, student: ModelOutput, teacher: ModelOutput | None, targets: torch.Tensor,
             progress: float) -> tuple[torch.Tensor | LogitsGradient, dict[str, float]]:
        """Total loss for a batch (a tensor to call backward on, or a LogitsGradient) and its
        named parts (floats, for the curves).

        `progress` is the fraction of training done, in [0, 1] (for warm-ups).
        """
        raise NotImplementedError


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch-mean KL(p_teacher^T || p_student^T) (no T^2 factor)."""
    return distillation_terms(student_logits, teacher_logits, None, None, temperature, 1.0, 0.0)[0]


def distillation_terms(soft_logits: torch.Tensor, teacher_logits: torch.Tensor, hard_logits: torch.Tensor | None,
                       targets: torch.Tensor | None, temperature: float, w_soft: float, w_hard: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(w_soft * KL(p_t^T || p_s^T) + w_hard * CE(y, p_h), KL, CE) of one batch, with the
    gradient in closed form:

        KL = mean_n sum_k p_t^T (log p_t^T - log p_s^T),   d KL / d z_s = (p_s^T - p_t^T) / (T N)
        CE = -mean_n log p_h[y],                            d CE / d z_h = (p_h - onehot(y)) / N

    (Hinton et al. 2015, section 2.1). p_s^T comes from `soft_logits`, the cross-entropy from
    `hard_logits` (KD passes the same student logits twice; logit-std its standardised ones, then
    the raw ones). Without targets the CE term is left out (None). KL and CE are the terms'
    values, for the curves; the gradient flows through the total only, the teacher's logits get
    none (they must not need one).

    Everything is computed once without autograd (one log-softmax per temperature, the student's
    shared when T = 1 and both terms read the same logits); the total then carries the gradient
    through sum(z * dL/dz), whose gradient in z is dL/dz, plus that sum's value taken away again
    (x - x is exactly 0), so its value is the loss's own. Written out with autograd, the loss is a
    dozen small tensor ops each recorded for the backward; in the training loop this form was the
    fastest of three (docs/benchmarks.md, Engine). tests/test_methods.py checks values and
    gradients against the autograd formula.
    """
    if teacher_logits.requires_grad:
        raise ValueError("the teacher's logits carry gradients; detach them (the teacher is not trained here)")
    n = soft_logits.shape[0]
    same = hard_logits is soft_logits
    with torch.no_grad():
        log_q = torch.log_softmax(soft_logits * (1.0 / temperature), dim=1)
        log_p = torch.log_softmax(teacher_logits * (1.0 / temperature), dim=1)
        p = log_p.exp()
        kl = torch.sum(p * (log_p - log_q)).div_(n)
        grad_soft = (log_q.exp() - p).mul_(w_soft / (temperature * n))
        total, ce, grad_hard = kl * w_soft, None, None
        if targets is not None:
            log_h = log_q if (same and temperature == 1.0) else torch.log_softmax(hard_logits, dim=1)
            ce = F.nll_loss(log_h, targets)
            total.add_(ce, alpha=w_hard)
            grad_hard = log_h.exp()
            grad_hard[torch.arange(n, device=grad_hard.device), targets] -= 1.0
            grad_hard.mul_(w_hard / n)
            if same:
                grad_soft.add_(grad_hard)
                grad_hard = None
    carrier = torch.sum(soft_logits * grad_soft)
    if grad_hard is not None:
        carrier = carrier + torch.sum(hard_logits * grad_hard)
    return (carrier - carrier.detach()) + total, kl, ce
