"""The dashboard's settings, kept in <home>/settings.json (paths.SETTINGS).

Device and threads go into the training settings of the runs launched from the dashboard;
workers, threads and the CodeCarbon country are the worker pool's arguments when it starts.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from . import paths
from .config import ExperimentSpec
from .errors import DistillError
from .files import write_json
from .jobs.executor import default_workers
from .measure.settings import default_country, iso_country
from .registry import Param, coerce_knobs


def settings_params() -> tuple[Param, ...]:
    """One Param per setting; the defaults depend on this machine and $DISTILL_COUNTRY."""
    return (
        Param("device", "auto", "where runs train: auto picks a GPU when there is one", "choice",
              choices=("auto", "cpu", "cuda", "mps")),
        Param("workers", default_workers(), "runs trained side by side (worker processes)", "int", 1, 64),
        Param("threads", 0, "torch threads per worker (0 = cores / workers)", "int", 0, 256),
        Param("country", default_country(), "ISO 3166 alpha-3 code CodeCarbon uses for carbon intensity (USA, FRA, DEU...)",
              "str", check=iso_country),
        Param("upload_mb", 200, "largest file accepted on the New experiment page, in MB", "int", 1, 10000),
        Param("autostart", True, "start the worker pool when runs are launched from the dashboard", "bool"),
        Param("refresh_seconds", 2.0, "how often pages refresh while runs are active", "float", 0.5, 60.0),
    )


def validate_settings(values: dict) -> dict:
    """Typed settings with defaults; ConfigError naming the bad one."""
    return coerce_knobs(settings_params(), values, "settings")


def load_settings(home: str | Path) -> tuple[dict, str | None]:
    """(settings, problem): settings.json over the defaults; a broken file gives the defaults and
    says why it was ignored. Settings this release does not know are left out."""
    path = Path(home) / paths.SETTINGS
    if not path.is_file():
        return validate_settings({}), None
    try:
        given = json.loads(path.read_text(encoding="utf-8"))
        known = {p.name for p in settings_params()}
        given = {k: v for k, v in given.items() if k in known} if isinstance(given, dict) else {}
        return validate_settings(given), None
    except (ValueError, DistillError) as exc:
        return validate_settings({}), f"{path}: ignored ({exc}); using the default settings"


def save_settings(home: str | Path, values: dict) -> dict:
    s = validate_settings(values)
    write_json(Path(home) / paths.SETTINGS, s)
    return s


def with_run_settings(spec: ExperimentSpec, settings: dict) -> ExperimentSpec:
    """The experiment with the device and thread settings in its training settings (they do not
    change a run's numbers, so they are left out of its hash)."""
    def apply(train: dict) -> dict:
        return {**train, "device": settings["device"], **({"threads": settings["threads"]} if settings["threads"] else {})}

    teacher_train = apply(spec.teacher_train) if spec.teacher_train is not None else None
    return dataclasses.replace(spec, train=apply(spec.train or {}), teacher_train=teacher_train)


def pool_arguments(settings: dict) -> dict:
    """What `jobs.ensure_workers` starts a pool with."""
    return {"workers": settings["workers"], "threads": settings["threads"] or None, "country": settings["country"]}


def pool_matches(info: dict, settings: dict) -> bool:
    """Whether a running pool (its registry info) was started with these settings."""
    args = pool_arguments(settings)
    return all(info.get(k) in (None, v) for k, v in args.items() if v)
