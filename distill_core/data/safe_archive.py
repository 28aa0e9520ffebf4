"""Unpacking a user's .tar.gz once, safely, into the lab's cache.

An archive is untrusted input. Every member is checked before anything is written: no absolute
path, no "..", nothing that lands outside the target folder, no symbolic or hard link, no device
or pipe, and no more than `max_mb` in all. Extraction then also runs through tarfile's "data"
filter (Python 3.11.4+), which refuses the same things again. The archive unpacks into a
temporary folder that is renamed into place when complete, under `<home>/cache/archives/`,
keyed by the archive's sha256: it is unpacked once, and an edited archive unpacks anew.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import DataError
from ..files import file_sha256
from ..paths import cache_dir

MB = 1024 * 1024


def member_problem(member: tarfile.TarInfo, root: Path) -> str | None:
    """Why this member must not be unpacked into root, or None if it is safe."""
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "has an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "contains '..'"
    if not (root / name).resolve().is_relative_to(root):
        return "points outside the archive's folder"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a named pipe"
    if not (member.isreg() or member.isdir()):
        return "is neither a regular file nor a folder"
    return None


def check_members(members: list[tarfile.TarInfo], root: Path, archive: str, max_mb: float) -> None:
    """DataError naming the archive and the first unsafe member, or when it unpacks too large."""
    for m in members:
        reason = member_problem(m, root)
        if reason:
            raise DataError(f"{archive}: unsafe member {m.name!r} {reason}; refusing to unpack the archive")
    total = sum(m.size for m in members if m.isreg())
    if total > max_mb * MB:
        raise DataError(f"{archive}: unpacks to {total / MB:.3g} MB, more than max_mb={max_mb:g} MB "
                        "(raise max_mb to load it)")


def unpack_tar(archive: str | Path, max_mb: float, sha256: str | None = None) -> Path:
    """The folder `archive` (a .tar, .tar.gz or .tgz) unpacks to, unpacking it if not done before."""

    archive = Path(archive)
    root = cache_dir("archives")
    final = root / (sha256 or file_sha256(archive))[:24]
    if final.is_dir():
        return final
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                check_members(members, tmp.resolve(), str(archive), max_mb)
                tf.extractall(tmp, members=members, filter="data")
        except tarfile.FilterError as e:
            reason = str(e).replace(str(tmp), "<folder>")
            raise DataError(f"{archive}: unsafe member refused by tarfile's data filter ({reason}); "
                            "refusing to unpack the archive") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            reason = str(e).replace(str(tmp), "<folder>") or type(e).__name__
            raise DataError(f"{archive}: not a valid .tar.gz archive, or truncated ({reason})") from None
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # not another process that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
