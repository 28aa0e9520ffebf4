"""Files: content hashes (of a user's data, uploaded weights, JSON-able configs), atomic writes,
lock files, folders sent between machines, and where a file a run names is on this machine."""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from .errors import DataError


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


@contextmanager
def held_lock(path: str | Path, timeout: float = 60.0):
    """Hold an exclusive lock on a file for the block, waiting up to `timeout` seconds for
    another process to release it. Yields True when held, False when the wait timed out (the
    block then runs without it: callers use the lock to save work, not for correctness)."""
    deadline = time.monotonic() + timeout
    f = try_lock(path)
    while f is None and time.monotonic() < deadline:
        time.sleep(0.05)
        f = try_lock(path)
    try:
        yield f is not None
    finally:
        if f is not None:
            f.close()  # closing the file releases the lock


def read_tree(folder: str | Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative POSIX path: a folder to send to another machine."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_tree(folder: str | Path, files: dict[str, bytes]) -> Path:
    """Write what `read_tree` gave into `folder` (created). The names come from another process,
    so they are checked as an archive's are, all before anything is written: a relative path
    with no ".." and no hidden trick lands inside `folder`; any other is refused (DataError)."""
    folder = Path(folder)
    root = folder.resolve()
    targets = []
    for name, data in files.items():
        rel = PurePosixPath(name)
        if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name or ":" in name:
            raise DataError(f"refusing to write {name!r}: not a plain relative path inside the folder")
        target = (root / rel).resolve()
        if root not in target.parents:
            raise DataError(f"refusing to write {name!r}: it would land outside {folder}")
        targets.append((target, data))
    for target, data in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


# A machine that does not see the user's files (a Ray node) gets a copy of each file a run names,
# checked against its sha256; readers ask `locate` where a named file is here.
_copies: dict[str, Path] = {}


def locate(path: str | Path, sha256: str | None = None) -> Path:
    """Where a file a run config names ({"path", "sha256"}) is on this machine: the copy an
    executor brought here (found by its sha256), else its own path."""
    return _copies.get(sha256 or "", Path(path))


@contextmanager
def local_copies(copies: dict[str, Path]):
    """Within the block, `locate` finds these files (sha256 -> path of the local copy)."""
    _copies.update(copies)
    try:
        yield
    finally:
        for sha in copies:
            _copies.pop(sha, None)
