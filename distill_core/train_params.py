"""Training settings: one `Param` each, for the CLI, the forms, validation and the loop.

Below both `config` (which validates an experiment's settings) and `engine` (which trains with
them), so neither has to import the other.
"""
from __future__ import annotations

from .registry import Param, coerce_knobs

TRAIN_PARAMS = (
    Param("epochs", 30, "passes over the training set", "int", 1, 10000),
    Param("batch_size", 64, "samples per step", "int", 1, 65536),
    Param("lr", 1e-3, "learning rate", "float", 1e-7, 10.0),
    Param("optimizer", "adam", "optimiser", "choice", choices=("adam", "sgd")),
    Param("momentum", 0.9, "SGD momentum", "float", 0.0, 0.999),
    Param("weight_decay", 0.0, "L2 weight decay", "float", 0.0, 1.0),
    Param("schedule", "cosine", "learning-rate schedule: cosine (per step, to 0), constant, or multistep (x0.1 at "
          "62.5%, 75% and 87.5% of the epochs: 150, 180, 210 of 240)", "choice", choices=("cosine", "constant", "multistep")),
    Param("patience", 0, "early stopping: epochs without a better validation accuracy (0 = off); the best epoch's weights are kept", "int", 0, 10000),
    Param("augment", False, "augment training batches as the data set says: random crops and flips for CIFAR, "
          "small shifts for other images, noise for signals and vectors", "bool"),
    Param("threads", 0, "CPU threads for torch (0 = all cores)", "int", 0, 256),
    Param("device", "auto", "where to train", "choice", choices=("auto", "cpu", "cuda", "mps")),
    # The training recipe (recipes.py) and the device fast path (engine/fastpath.py):
    Param("recipe", "default",
          "default: the settings below as given. cifar: the CIFAR distillation papers' recipe, which sets optimizer "
          "sgd, momentum 0.9, weight decay 5e-4, lr 0.05 (0.01 for mobilenetv2 / shufflenet), schedule multistep "
          "(lr x0.1 at epochs 150, 180, 210 of 240, scaled to the epochs given) and augment on (random crop of the "
          "4-pixel padded image, horizontal flip); those settings are then ignored",
          "choice", choices=("default", "cifar")),
    Param("precision", "auto", "arithmetic of training: auto (bf16 on a CUDA GPU that has it, else fp16 with a "
          "gradient scaler; fp32 elsewhere), fp32, bf16 (autocast, also on the CPU) or fp16 (CUDA only). "
          "Losses and accuracies are always computed in fp32", "choice", choices=("auto", "fp32", "bf16", "fp16")),
    Param("channels_last", "auto", "channels-last memory for 2-D convolutional models: auto (as on: faster on the CPU as "
          "on CUDA), on, off", "choice", choices=("auto", "on", "off")),
    Param("compile", False, "compile the models' forward passes with torch.compile (slow to start, faster per step)",
          "bool"),
)
# Settings that do not change the numbers a run produces (left out of its hash). Of the fast
# path's, only precision can change a run's numbers beyond rounding order.
NON_SEMANTIC = ("threads", "device", "channels_last", "compile")
# Knobs added after runs were first stored. At their default they do what the lab did before
# they existed, so there they stay out of a run's identity: an existing home folder keeps its
# runs and its teacher cache. A knob added later goes here too.
ADDED_LATER = ("recipe", "precision")
DEFAULTS = {p.name: p.default for p in TRAIN_PARAMS}


def train_settings(given: dict | None = None) -> dict:
    """Validated training settings with defaults filled in."""
    return coerce_knobs(TRAIN_PARAMS, dict(given or {}), "training")
