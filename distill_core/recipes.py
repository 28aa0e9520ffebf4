"""Training recipes: the settings a paper trains with, chosen by the `recipe` knob (train_params.py).

"cifar" is the recipe of the CIFAR distillation benchmarks (CRD / RepDistiller, mdistiller, DKD):
SGD with momentum 0.9 and weight decay 5e-4, lr 0.05 (0.01 for MobileNetV2 and ShuffleNet),
multiplied by 0.1 at epochs 150, 180 and 210 of 240, and the standard augmentation: a random
32x32 crop of the image padded by 4 pixels, and a horizontal flip. With fewer or more epochs the
milestones keep their place (62.5%, 75% and 87.5% of the run).

`apply_recipe` runs where an experiment is expanded, so a run's config shows the settings it
really trains with (and its hash covers them).
"""
from __future__ import annotations

from .errors import ConfigError
from .models import ARCHITECTURES, normalise_spec

CIFAR = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "schedule": "multistep", "augment": True}
CIFAR_LR = 0.05
MILESTONES = (150 / 240, 180 / 240, 210 / 240)  # fractions of the run where the lr drops x0.1


def apply_recipe(settings: dict, model: dict | str, kind: str) -> dict:
    """The training settings of `model` (a model spec or named size) on `kind` inputs under the recipe."""
    if settings.get("recipe", "default") != "cifar":
        return settings
    if kind != "image":
        raise ConfigError(f"training: recipe cifar is for images (its augmentation crops and flips them); "
                          f"this data set gives {kind} inputs. Use recipe default.")
    lr = ARCHITECTURES.get(normalise_spec(model)["arch"]).extra.get("recipe_lr", CIFAR_LR)
    return {**settings, **CIFAR, "lr": lr}


def milestones(epochs: int) -> list[int]:
    """The epochs after which the multistep schedule divides the lr by 10: 150, 180, 210 of 240."""
    return [round(f * epochs) for f in MILESTONES]


def multistep_lr(base: float, epoch: int, epochs: int) -> float:
    """The lr of `epoch` (1-based): base x 0.1 for each milestone already passed (RepDistiller's rule)."""
    return base * 0.1 ** sum(epoch > m for m in milestones(epochs))
