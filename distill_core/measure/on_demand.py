"""Exports made when someone asks for them, not for every run: the torch.export program (.pt2).

A sweep of twenty students needs their ONNX files (int8 and ONNX Runtime's latency come from
them), but rarely twenty `.pt2` programs; so `measure.pt2` is off by default and the program of
one run is made here, from the run folder's config and weights, on a click in its Files tab or
with `python -m distill_core export ID --pt2`. The run's result.json and model card then list it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import paths
from ..data.cache import load_data
from ..errors import ConfigError
from ..files import write_json
from ..models import build_model, is_network, load_weights
from .card import write_model_card
from .export import export_program


def make_pt2(folder: str | Path, dynamic: bool = False) -> dict:
    """Make the `.pt2` program of the run in `folder` and record it in its result.json and card.

    Returns the run's updated result (its measure["pt2"] says how it went: {"ok", "path",
    "bytes", "dynamic_batch"} or {"ok": False, "reason"}). ConfigError when the folder holds no
    finished run of a network (a black-box teacher has no program to make)."""
    folder = Path(folder)
    try:
        result = json.loads((folder / paths.RESULT).read_text(encoding="utf-8"))
        config = json.loads((folder / paths.CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{folder}: not a finished run's folder ({type(exc).__name__}: {exc})") from None
    if not is_network(config.get("model")):
        raise ConfigError(f"{folder}: this run's model is not a network of this lab ({config['model'].get('arch')}): "
                          "there is no PyTorch program to export")
    weights = folder / paths.WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{folder}: the run's weights ({paths.WEIGHTS}) are missing")
    data = load_data(config["dataset"])
    model = load_weights(build_model(config["model"], data.info.input_shape, data.info.num_classes, data.info.kind),
                         weights).eval()
    sample = data.x_test[:2] if dynamic else data.x_test[:1]
    pt2 = export_program(model, sample.contiguous(), folder / paths.PT2, dynamic)
    pt2["on_demand"] = True
    measure = result.setdefault("measure", {})
    measure["pt2"] = pt2
    errors = measure.setdefault("export_errors", {})
    if pt2.get("ok"):
        measure.setdefault("exports", {})["pt2"] = pt2["path"]
        result.setdefault("artifacts", {})["pt2"] = pt2["path"]
        errors.pop("pt2", None)
    else:
        errors["pt2"] = pt2.get("reason")
    if (folder / paths.CARD_MD).is_file():
        write_model_card(folder, result, data.info)
    write_json(folder / paths.RESULT, result)
    return result
