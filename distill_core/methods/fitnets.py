"""FitNets hints (Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin Deep
Nets", ICLR 2015, eq. 3).

A student layer (the "guided" layer) is regressed onto a teacher layer (the "hint") through a
learned regressor r, trained together with the student:

    L = CE(y, p_s) + weight * mean((u_t - r(v_s))^2)

The paper's 1/2 ||u_h - r(v_g)||^2 is taken here as a mean over the batch and every element, so
`weight` does not depend on the layer's size; as in the common one-stage variant (mdistiller,
CRD's benchmark) the hint is trained jointly with the cross-entropy rather than as a separate
first stage. The paper's convolutional regressor, sized to match the spatial shapes, is replaced
by average-pooling both maps to a common size and a 1x1 (channel-wise) linear map followed by a
ReLU (the paper asks r to end in the hint layer's non-linearity; every hint layer here is a ReLU
output). A vector layer (MLP hidden layer or embedding) paired with a map is compared after
global pooling of the map, so the method also pairs an MLP with a CNN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Param
from . import register
from .base import FEATURES, Method

LAYERS = ("middle", "last", "embedding")


def hint_loss(regressed: torch.Tensor, hint: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the regressed student layer and the teacher's hint layer."""
    return F.mse_loss(regressed, hint)


def pick_layer(out, n_stages: int, which: str) -> torch.Tensor:
    """The output paired by `which`: the middle stage (index n // 2), the last stage, or the embedding."""
    if which == "embedding" or n_stages == 0:
        return out.embedding
    return out.features[n_stages // 2 if which == "middle" else n_stages - 1]


def common_shape(a: torch.Size, b: torch.Size) -> tuple[int, ...]:
    """Spatial size both maps are pooled to: the smaller along each axis; () = pool to a vector."""
    if len(a) != len(b) or len(a) <= 2:
        return ()
    return tuple(min(x, y) for x, y in zip(a[2:], b[2:]))


def pool_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Adaptive average pooling of a (N, C, *S) map to `size`; () gives (N, C)."""
    if x.dim() == 2:
        return x
    if not size:
        return x.flatten(2).mean(2)
    if tuple(x.shape[2:]) == size:
        return x
    return (F.adaptive_avg_pool1d if x.dim() == 3 else F.adaptive_avg_pool2d)(x, size)


class HintRegressor(nn.Module):
    """Pools the student layer to the common shape and maps its channels to the teacher's."""

    def __init__(self, c_in: int, c_out: int, size: tuple[int, ...]):
        super().__init__()
        self.size = size
        self.proj = nn.Linear(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pool_to(x, self.size)
        return F.relu(self.proj(x.movedim(1, -1)).movedim(-1, 1))  # a 1x1 convolution for maps


@register
class FitNets(Method):
    name = "fitnets"
    description = "FitNets hints: regress a student layer onto a teacher layer through a learned adapter"
    paper = "Romero, Ballas, Kahou, Chassang, Gatta & Bengio, FitNets: Hints for Thin Deep Nets, ICLR 2015"
    equation = r"\mathcal{L} = \mathrm{CE}(y, p_s) + \lambda\,\overline{\big(u_t(x) - r(v_s(x))\big)^2}"
    layers = Param("layers", "middle", "which layers are paired: the middle stage of each model (the paper's choice), "
                   "the last stage of each, or the penultimate embeddings", "choice", choices=LAYERS)
    weight = Param("weight", 1.0, "weight lambda of the hint term", "float", 0.0, 1e4)
    needs = FEATURES

    @classmethod
    def incompatibility(cls, student, teacher):
        if not student.stages:
            return "the student has no hidden layer to guide (a linear model's only representation is its input)"
        if teacher is not None and not teacher.stages:
            return "the teacher has no hidden layer to give hints (a linear model's only representation is its input)"
        return None

    def setup(self, student, teacher, sample):
        """Builds the regressor from the shapes the paired layers have on a sample batch."""
        with torch.no_grad(), _eval(student):
            s = pick_layer(student.forward_all(sample), len(student.stages), self.layers)
            t = pick_layer(teacher.forward_all(sample), len(teacher.stages), self.layers)
        self.size = common_shape(s.shape, t.shape)
        self.extra = HintRegressor(s.shape[1], t.shape[1], self.size).to(device=t.device, dtype=t.dtype)
        return self.extra

    def loss(self, student, teacher, targets, progress):
        s = pick_layer(student, len(student.features), self.layers)
        t = pool_to(pick_layer(teacher, len(teacher.features), self.layers).detach(), self.size)
        hint = hint_loss(self.extra(s), t)
        ce = F.cross_entropy(student.logits, targets)
        return ce + self.weight * hint, {"ce": ce.item(), "hint": hint.item()}


class _eval:
    """Context manager: a model in eval mode (no batch-norm statistics update), then restored."""

    def __init__(self, model: nn.Module):
        self.model, self.was = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was)
