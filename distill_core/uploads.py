"""Files a user gives on the New experiment page, kept in <home>/uploads/ (paths.UPLOADS)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from . import paths
from .errors import DataError
from .files import write_atomic


def save_upload(home: str | Path, name: str, data: bytes, limit_mb: float) -> Path:
    """Keep an uploaded file under a content-hashed name and return its path; DataError when it
    is empty or larger than the limit."""
    if not data:
        raise DataError(f"{name}: the file is empty")
    if len(data) > limit_mb * 1024 * 1024:
        raise DataError(f"{name}: {len(data) / 1024 / 1024:.1f} MB, more than the {limit_mb:g} MB upload limit "
                        "(raise it on the Settings page)")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "upload"
    target = Path(home) / paths.UPLOADS / f"{hashlib.sha256(data).hexdigest()[:12]}-{safe}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        write_atomic(target, data)
    return target
