"""Sweeps typed on a page: a list of values ("2, 4, 8") or a range (from, to, how many, log-spaced).

Each value is checked by its Param (config.sweep), so the range of a temperature is written once,
in methods.base.TEMPERATURE.
"""
from __future__ import annotations

import re

import numpy as np

from .config import sweep
from .errors import ConfigError
from .registry import Param

MAX_RANGE_VALUES = 50


def parse_values(text: str, param: Param, what: str) -> list:
    """'2, 4, 8' (commas, semicolons or spaces) -> [2.0, 4.0, 8.0]; a bad entry raises
    ConfigError naming `what` and the entry."""
    parts = [t for t in re.split(r"[,;\s]+", str(text)) if t]
    if not parts:
        raise ConfigError(f"{what}: give at least one value")
    values = []
    for t in parts:
        try:
            v = float(t)
        except ValueError:
            raise ConfigError(f"{what}: {t!r} is not a number") from None
        if param.kind == "int":
            if not v.is_integer():
                raise ConfigError(f"{what}: {t!r} is not a whole number")
            v = int(v)
        values.append(v)
    return sweep(values, param, what)


def value_range(lo: float, hi: float, count: int, log: bool, param: Param, what: str) -> list[float]:
    """`count` values from `lo` to `hi`, evenly or log-spaced, to 3 significant digits."""
    if not 1 <= count <= MAX_RANGE_VALUES:
        raise ConfigError(f"{what}: between 1 and {MAX_RANGE_VALUES} values")
    if lo <= 0 or hi <= 0:
        raise ConfigError(f"{what}: must be above 0")
    grid = np.geomspace(lo, hi, int(count)) if log else np.linspace(lo, hi, int(count))
    return sweep([float(f"{v:.3g}") for v in grid], param, what)
