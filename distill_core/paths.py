"""Where the lab keeps its files: the home folder (DISTILL_HOME, default ~/.distill_lab)."""
from __future__ import annotations

import os
from pathlib import Path


def home_dir(home: str | Path | None = None) -> Path:
    """The home folder, created if needed."""
    path = Path(home or os.environ.get("DISTILL_HOME") or Path.home() / ".distill_lab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str, home: str | Path | None = None) -> Path:
    """A folder under <home>/cache/ for things derived from the user's files (unpacked archives),
    created if needed; deleting it only costs the time to rebuild it."""
    path = home_dir(home).joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
