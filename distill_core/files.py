"""Files: content hashes (of a user's data, uploaded weights, JSON-able configs), atomic writes and
lock files."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(obj) -> str:
    """16 hex digits of the sha256 of `obj` as canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write a file so that a reader sees the old one or the new one, never half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj) -> Path:
    """Atomic JSON write: a half-written file is never taken for a result."""
    return write_atomic(path, json.dumps(obj, indent=1, default=float).encode())


def try_lock(path: str | Path):
    """Take an exclusive lock on a file without waiting: the open file (keep it open to hold
    the lock), or None when another process holds it. Where file locks are missing, always the file."""
    f = open(path, "a+")
    try:
        import fcntl  # POSIX only: imported here so that the rest of the module works elsewhere

        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:
        return f
    except OSError:
        f.close()
        return None
    return f
