"""The home folder's layout: every folder and file name the lab reads or writes.

    <home>/                     DISTILL_HOME, default ~/.distill_lab
      lab.sqlite                the store (jobs/store.py)
      settings.json             the dashboard's settings (settings.py)
      budgets.json              the user's deployment profiles (measure/budgets.py)
      runs/<run hash>/          one folder per run: config.json, result.json, weights.safetensors,
                                model.onnx, model.int8.onnx, model.pt2, model_card.md/.json, emissions.csv
      teachers/<teacher hash>/  the teacher cache (teachers.py): config.json, meta.json,
                                logits.safetensors, and weights.safetensors (a network) or
                                model.onnx (a scikit-learn model, never pickled)
      uploads/                  files given on the New experiment page (uploads.py)
      measure/<name>/           what `python -m distill_core measure` writes
      logs/pool.log, pool.lock  the background worker pool (jobs/executor.py)
      cache/archives/<sha256>/  a user's archive unpacked once (data/cifar.py); safe to delete
      cache/measure/<key>.json  figures shared by the runs of one architecture (measure/shared.py); safe to delete
      search.sqlite             the searches: Optuna studies (search/study.py)
      logs/search-<name>.log, search-<name>.lock   a search's driver process (search/driver.py)

Nothing else spells these names out: ask this module.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

DB = "lab.sqlite"
SETTINGS = "settings.json"
BUDGETS = "budgets.json"
RUNS, TEACHERS, UPLOADS, MEASURE, LOGS, CACHE = "runs", "teachers", "uploads", "measure", "logs", "cache"
POOL_LOG, POOL_LOCK = "pool.log", "pool.lock"
SEARCH_DB = "search.sqlite"

# Files inside a run folder (and, for the first four, a teacher's cache folder).
CONFIG, RESULT, META = "config.json", "result.json", "meta.json"
WEIGHTS, LOGITS = "weights.safetensors", "logits.safetensors"
ONNX, INT8, PT2 = "model.onnx", "model.int8.onnx", "model.pt2"  # INT8: the deployed int8 variant
CARD_MD, CARD_JSON = "model_card.md", "model_card.json"
EMISSIONS = "emissions.csv"  # CodeCarbon's log
MEASURED = "measure.json"  # what the `measure` command found


def int8_variant(name: str) -> str:
    """The file of an int8 variant ("static", "dynamic", "qad") that is measured but not deployed."""
    return f"model.int8-{name}.onnx"


def home_dir(home: str | Path | None = None) -> Path:
    """The home folder, created if needed."""
    path = Path(home or os.environ.get("DISTILL_HOME") or Path.home() / ".distill_lab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def usable_home(raw: str) -> Path:
    """A folder given as a home (created if needed), checked to be writable; ConfigError naming
    it and why otherwise."""
    if not raw.strip():
        raise ConfigError("give a folder")
    path = Path(raw.strip()).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot use this folder ({exc.strerror or exc})") from None
    return path.resolve()


def run_folder(home: str | Path, run_hash: str) -> Path:
    """Where a run's files are: <home>/runs/<hash>/ (not created)."""
    return Path(home) / RUNS / run_hash


def teachers_root(home: str | Path) -> Path:
    return Path(home) / TEACHERS


def teacher_folder(home: str | Path, key: str) -> Path:
    """Where a cached teacher is: <home>/teachers/<its hash>/ (not created)."""
    return teachers_root(home) / key


def search_log(home: str | Path, name: str) -> Path:
    """The log of a search's background driver: <home>/logs/search-<name>.log (not created)."""
    return Path(home) / LOGS / f"search-{name}.log"


def search_lock(home: str | Path, name: str) -> Path:
    """Held by the one driver of a search: <home>/search-<name>.lock."""
    return Path(home) / f"search-{name}.lock"


def shared_measures(home: str | Path) -> Path:
    """Where the figures that runs of one architecture share are kept: <home>/cache/measure/ (not created)."""
    return Path(home) / CACHE / MEASURE


def cache_dir(*parts: str, home: str | Path | None = None) -> Path:
    """A folder under <home>/cache/ for things derived from the user's files (unpacked archives),
    created if needed; deleting it only costs the time to rebuild it."""
    path = home_dir(home).joinpath(CACHE, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
