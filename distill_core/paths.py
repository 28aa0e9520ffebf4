"""Where the lab keeps its files: the home folder (DISTILL_HOME, default ~/.distill_lab)."""
from __future__ import annotations

import os
from pathlib import Path


def home_dir(home: str | Path | None = None) -> Path:
    """The home folder, created if needed."""
    path = Path(home or os.environ.get("DISTILL_HOME") or Path.home() / ".distill_lab").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
