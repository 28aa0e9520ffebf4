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
    Param("schedule", "cosine", "learning-rate schedule", "choice", choices=("cosine", "constant")),
    Param("patience", 0, "early stopping: epochs without a better validation accuracy (0 = off); the best epoch's weights are kept", "int", 0, 10000),
    Param("augment", False, "augment training batches (small shifts for images, noise for signals)", "bool"),
    Param("threads", 0, "CPU threads for torch (0 = all cores)", "int", 0, 256),
    Param("device", "auto", "where to train", "choice", choices=("auto", "cpu", "cuda", "mps")),
)
# Settings that do not change the numbers a run produces (left out of its hash).
NON_SEMANTIC = ("threads", "device")


def train_settings(given: dict | None = None) -> dict:
    """Validated training settings with defaults filled in."""
    return coerce_knobs(TRAIN_PARAMS, dict(given or {}), "training")
