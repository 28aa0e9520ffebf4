"""The dashboard's settings, kept in <home>/settings.json (paths.SETTINGS).

Device and threads go into the training settings of the runs launched from the dashboard;
workers, threads and the CodeCarbon country are the worker pool's arguments when it starts, and
so are the executor (local processes or a Ray cluster) and, for Ray, the cluster's address.
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
from .jobs.ray_executor import ADDRESS_HELP, INSTALL_HINT, check_address, ray_installed
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
        *EXECUTOR_PARAMS,
    )


def _ray_if_chosen(executor: str) -> str:
    if executor == "ray" and not ray_installed():
        raise ValueError(f"ray needs Ray, which is not installed here: {INSTALL_HINT}")
    return executor


# Who trains the runs (docs/cluster.md); the Settings page shows these in their own section.
EXECUTOR_PARAMS = (
    Param("executor", "local", "who trains the runs: worker processes on this machine, or a Ray cluster", "choice",
          choices=("local", "ray"), check=_ray_if_chosen),
    Param("ray_address", "", "the Ray cluster: " + ADDRESS_HELP, "str", check=check_address),
    Param("ray_retries", 1, "times a run is run again (on another node) when its node or worker process dies",
          "int", 0, 10),
    Param("ray_gpus", 0.0, "GPUs each run asks Ray for (a run whose device is cuda asks for 1 at least)", "float", 0, 16),
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
    args = {"workers": settings["workers"], "threads": settings["threads"] or None, "country": settings["country"]}
    if settings["executor"] == "ray":
        args.update(executor="ray", address=settings["ray_address"], retries=settings["ray_retries"],
                    gpus=settings["ray_gpus"])
    return args


def pool_matches(info: dict, settings: dict) -> bool:
    """Whether a running pool (its registry info) was started with these settings."""
    args = pool_arguments(settings)
    if info.get("executor", "local") != args.get("executor", "local") or info.get("address", "") != args.get("address", ""):
        return False
    return all(info.get(k) in (None, v) for k, v in args.items() if v)
