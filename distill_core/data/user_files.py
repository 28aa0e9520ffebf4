"""The user's own data: a CSV table, a NumPy .npz file, or a folder (or .zip) of images.

Every problem with a file raises a DataError that names the file and says what is wrong, before
anything is returned: a loader gives back a complete DataBundle or nothing.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PureWindowsPath

import numpy as np

from ..errors import DataError
from ..registry import Param
from . import register
from .base import DataBundle, DatasetInfo, encode_labels, make_bundle, validate_arrays

MB = 1024 * 1024
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

PATH = Param("path", "", "path of the file on this machine", "str")
MAX_MB = Param("max_mb", 200.0, "refuse files (and unpacked archives) larger than this many MB", "float", 0.001, 100000)


# ---------------------------------------------------------------------------------------------
# Shared checks


def _existing(path: str) -> str:
    """The path with ~ expanded, or DataError if it is empty or does not exist."""
    if not str(path).strip():
        raise DataError("no file given: set path to a file on this machine")
    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    return path


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:.3g} MB"


def _check_size(path: str, n_bytes: int, max_mb: float, what: str = "the file is") -> None:
    if n_bytes > max_mb * MB:
        raise DataError(f"{path}: {what} {_mb(n_bytes)}, more than max_mb={max_mb:g} MB (raise max_mb to load it)")


def _check_file(path: str, max_mb: float) -> str:
    """An existing, plain file no larger than max_mb (checked before anything is read)."""
    path = _existing(path)
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, not a file")
    _check_size(path, os.path.getsize(path), max_mb)
    return path


def _names(items, limit: int = 20) -> str:
    """'a, b, c' with a tail count when the list is long."""
    items = [str(i) for i in items]
    more = f" ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _bundle(info: DatasetInfo, where: str, x, y, split: dict, normalise: str, x_test=None, y_test=None,
            ids=None) -> DataBundle:
    """Split and normalise (training statistics only); errors name the file through `where`."""
    return make_bundle(info, x, y, split, where=where, normalise=normalise, x_test=x_test, y_test=y_test, ids=ids)


# ---------------------------------------------------------------------------------------------
# CSV


@register(
    "csv", "your own table: a CSV file with one numeric column per feature and a label column",
    (PATH, Param("label_column", "label", "name of the column that holds the class", "str"), MAX_MB,
     Param("id_column", "", "a column of row ids, not a feature (optional): a file of teacher outputs can "
           "name its rows by them", "str")),
    kind="vector", user_file=True,
)
def load_csv(path: str, label_column: str, max_mb: float, id_column: str, **split) -> DataBundle:
    """Features = every column except the label (and id) column; all must be numeric."""
    import pandas as pd

    path = _check_file(path, max_mb)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (ValueError, OSError) as e:  # ParserError and UnicodeDecodeError are ValueErrors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot be read as CSV ({reason})") from None
    df.columns = [str(c).strip() for c in df.columns]
    label = label_column.strip()
    if label not in df.columns:
        hint = " (is it comma-separated?)" if len(df.columns) == 1 and any(s in df.columns[0] for s in ";\t|") else ""
        raise DataError(
            f"{path}: no column named {label!r}; the columns are: {_names(df.columns)}{hint}. "
            "Set label_column to the column that holds the class."
        )
    if len(df) == 0:
        raise DataError(f"{path}: has a header but no data rows")
    id_col = id_column.strip()
    ids = None
    if id_col:
        if id_col not in df.columns:
            raise DataError(f"{path}: no column named {id_col!r} for the ids; the columns are: {_names(df.columns)}")
        ids = df[id_col].astype(str).str.strip().to_numpy()
        repeated = df[id_col][df[id_col].duplicated()].astype(str).unique()
        if len(repeated):
            raise DataError(f"{path}: the id column {id_col!r} repeats id(s) {_names(repeated, 5)}; each row needs its own id")
    features = [c for c in df.columns if c not in (label, id_col)]
    if not features:
        raise DataError(f"{path}: has only the label column {label!r}; at least one feature column is needed")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if text:
        raise DataError(
            f"{path}: feature column(s) {_names(text)} are not numeric; every column except "
            f"{label!r} must hold numbers"
        )
    x = df[features].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(x).all(axis=1) | df[label].isna().to_numpy()
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} row(s) have empty, NaN or infinite values "
            f"(the first is data row {int(np.flatnonzero(bad)[0]) + 1}); remove or fill them"
        )
    x, y = validate_arrays(x, df[label].to_numpy(), path)
    y, names = encode_labels(y, path)
    info = DatasetInfo(
        "csv", (x.shape[1],), len(names), names, "vector",
        source=f"CSV file {path} ({len(df)} rows, label column {label!r})", augment="noise",
    )
    return _bundle(info, path, x, y, split, "feature", ids=ids)


# ---------------------------------------------------------------------------------------------
# NPZ


def _read_npz(path: str, max_mb: float) -> dict[str, np.ndarray]:
    """x, y (and x_test, y_test when both are there) from an .npz, never unpickling anything."""
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error):
        raise DataError(f"{path}: not a valid .npz file (save one with numpy.savez(path, x=..., y=...))") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array (.npy); save x and y together with numpy.savez(path, x=..., y=...)")
    with data:
        _check_size(path, sum(i.file_size for i in data.zip.infolist()), max_mb, "the arrays unpack to")
        missing = [k for k in ("x", "y") if k not in data.files]
        if missing:
            raise DataError(
                f"{path}: no array named {' or '.join(repr(k) for k in missing)}; the file holds: "
                f"{_names(data.files) or 'nothing'}. Save it with numpy.savez(path, x=..., y=...)"
            )
        if ("x_test" in data.files) != ("y_test" in data.files):
            have, lack = ("x_test", "y_test") if "x_test" in data.files else ("y_test", "x_test")
            raise DataError(f"{path}: has {have} but no {lack}; give both or neither")
        out = {}
        for key in ("x", "y", "x_test", "y_test"):
            if key in data.files:
                try:
                    out[key] = data[key]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                    raise DataError(f"{path}: array {key!r} cannot be read ({e})") from None
    return out


def _layout(x: np.ndarray, path: str, key: str) -> tuple[np.ndarray, str]:
    """(N, d) -> vector; (N, H, W) -> (N, 1, H, W); (N, H, W, C) -> (N, C, H, W)."""
    if x.ndim == 2:
        return x, "vector"
    if x.ndim == 3:
        return x[:, None], "image"
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x, "image"
    raise DataError(
        f"{path}: {key} has shape {x.shape}; expected (N, features), (N, H, W), (N, C, H, W) or (N, H, W, C)"
    )


@register(
    "npz", "your own arrays: a NumPy .npz with x (N, d) or images (N, H, W[, C]) and labels y; "
    "optional x_test / y_test", (PATH, MAX_MB), user_file=True,
)
def load_npz(path: str, max_mb: float, **split) -> DataBundle:
    """Vectors or images from x / y; x_test / y_test, when present, are the test split."""
    path = _check_file(path, max_mb)
    a = _read_npz(path, max_mb)
    x, kind = _layout(a["x"], path, "x")
    x, y = validate_arrays(x, a["y"], path)
    x_test = y_test = None
    if "x_test" in a:
        x_test, _ = _layout(a["x_test"], path, "x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(f"{path}: x_test samples have shape {x_test.shape[1:]} but x samples have {x.shape[1:]}")
        x_test, y_test = validate_arrays(x_test, a["y_test"], f"{path} (x_test / y_test)")
        if y.ndim != 1 or y_test.ndim != 1:
            raise DataError(f"{path}: y and y_test must hold one label per sample, got shapes {y.shape} and {y_test.shape}")
        # Encode both together so a label means the same class in train and test.
        codes, names = encode_labels(np.concatenate([y, y_test]), path)
        y, y_test = codes[: len(y)], codes[len(y):]
        unseen = sorted(set(y_test.tolist()) - set(y.tolist()))
        if unseen:
            raise DataError(f"{path}: y_test has label(s) {_names(names[i] for i in unseen)} that never occur in y")
    else:
        y, names = encode_labels(y, path)
    info = DatasetInfo(
        "npz", tuple(x.shape[1:]), len(names), names, kind,
        source=f"NumPy file {path} ({len(x)} samples" + (f", {len(x_test)} test samples)" if x_test is not None else ")"),
        augment="shift" if kind == "image" else "noise",
    )
    return _bundle(info, path, x, y, split, "global" if kind == "image" else "feature", x_test, y_test)


# ---------------------------------------------------------------------------------------------
# Image folders and zips


def _hidden(name: str) -> bool:
    """Files and folders to ignore: dot-files and macOS's __MACOSX."""
    return name.startswith(".") or name == "__MACOSX"


def _unsafe(info: zipfile.ZipInfo, root: Path) -> str | None:
    """Why this zip entry must not be unpacked into root, or None if it is safe."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "has an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "contains '..'"
    if not (root / name).resolve().is_relative_to(root):
        return "points outside the archive"
    return None


def _safe_extract(zip_path: str, target: str, max_mb: float, max_files: int) -> None:
    """Unpack the image files (and folders) of a zip into target, refusing anything unsafe.

    Every entry is checked before anything is written: "zip slip" paths, absolute paths, ".."
    and symbolic links are refused, and so is an archive that unpacks to more than max_mb.
    """
    root = Path(target).resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            for info in infos:
                reason = _unsafe(info, root)
                if reason:
                    raise DataError(f"{zip_path}: unsafe entry {info.filename!r} {reason}; refusing to unpack the archive")
            _check_size(zip_path, sum(i.file_size for i in infos), max_mb, "the archive unpacks to")
            wanted = [
                i for i in infos
                if not any(_hidden(p) for p in i.filename.replace("\\", "/").split("/") if p)
                and (i.is_dir() or Path(i.filename).suffix.lower() in IMAGE_EXTS)
            ]
            if sum(not i.is_dir() for i in wanted) > max_files:
                raise DataError(f"{zip_path}: holds more than max_files={max_files} images")
            for info in wanted:
                dest = root / info.filename
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as e:
        raise DataError(f"{zip_path}: not a valid zip file or cannot be unpacked ({e})") from None


def _class_root(folder: Path) -> Path:
    """The folder holding the class folders: folder itself, or its single top-level folder."""
    visible = [p for p in folder.iterdir() if not _hidden(p.name)]
    if len(visible) == 1 and visible[0].is_dir():
        if any(q.is_dir() and not _hidden(q.name) for q in visible[0].iterdir()):
            return visible[0]
    return folder


def _scan(root: Path, where: str) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), with a DataError for each kind of bad layout."""
    entries = [p for p in root.iterdir() if not _hidden(p.name)]
    if not entries:
        raise DataError(f"{where}: is empty; expected one sub-folder of images per class")
    classes = sorted(p for p in entries if p.is_dir())
    if not classes:
        raise DataError(f"{where}: has no class sub-folders; put the images of each class in a sub-folder named after it")
    if len(classes) < 2:
        raise DataError(f"{where}: need at least two classes (sub-folders), found one: {classes[0].name!r}")
    files = {}
    for c in classes:
        images = sorted(
            p for p in c.iterdir() if p.is_file() and not _hidden(p.name) and p.suffix.lower() in IMAGE_EXTS
        )
        if not images:
            raise DataError(f"{where}: class folder {c.name!r} has no images ({', '.join(IMAGE_EXTS)})")
        files[c.name] = images
    return files


def _read_image(p: Path, size: int, mode: str, shown: str) -> np.ndarray:
    """One image as float32 in [0, 1], (H, W) for grey or (H, W, 3) for RGB."""
    from PIL import Image

    try:
        with Image.open(p) as im:
            im = im.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = str(e).replace(str(p), p.name)  # never show the temporary folder's path
        raise DataError(f"{shown}: cannot read the image ({reason})") from None


def _read_folder(base: Path, root: Path, where: str, shown, size, color, max_mb, max_files):
    """Read every image under root's class folders: (x NCHW, y, class names)."""
    files = _scan(root, where)
    paths = [p for ps in files.values() for p in ps]
    if len(paths) > max_files:
        raise DataError(f"{where}: holds {len(paths)} images, more than max_files={max_files}")
    _check_size(where, sum(p.stat().st_size for p in paths), max_mb, "the images take")
    mode = "L" if color == "grey" else "RGB"
    xs, ys = [], []
    for label, name in enumerate(files):
        for p in files[name]:
            a = _read_image(p, size, mode, shown(p.relative_to(base)))
            xs.append(a[None] if mode == "L" else a.transpose(2, 0, 1))
            ys.append(label)
    return np.stack(xs), np.array(ys, dtype=np.int64), list(files)


@register(
    "images", "your own images: a folder (or .zip) with one sub-folder of PNG/JPEG/BMP/GIF images per class",
    (PATH,
     Param("size", 28, "images are resized to size x size pixels", "int", 4, 512),
     Param("color", "grey", "read images as grey (1 channel) or rgb (3 channels)", "choice", choices=("grey", "rgb")),
     MAX_MB,
     Param("max_files", 20000, "refuse folders with more images than this", "int", 1, 10_000_000)),
    kind="image", user_file=True,
)
def load_images(path: str, size: int, color: str, max_mb: float, max_files: int, **split) -> DataBundle:
    """Class names are the sub-folder names, sorted; a zip is unpacked to a temporary folder."""
    path = _existing(path)
    args = (size, color, max_mb, max_files)
    if os.path.isdir(path):
        base = Path(path)
        x, y, names = _read_folder(base, base, path, lambda rel: os.path.join(path, rel), *args)
    else:
        _check_size(path, os.path.getsize(path), max_mb)
        if not zipfile.is_zipfile(path):
            if path.lower().endswith(".zip"):
                raise DataError(f"{path}: not a valid zip file")
            raise DataError(f"{path}: expected a folder with one sub-folder of images per class, or a .zip of one")
        with tempfile.TemporaryDirectory(prefix="distill-images-") as tmp:
            _safe_extract(path, tmp, max_mb, max_files)
            base = Path(tmp).resolve()
            x, y, names = _read_folder(base, _class_root(base), path, lambda rel: f"{path}: {rel.as_posix()}", *args)
    info = DatasetInfo(
        "images", tuple(x.shape[1:]), len(names), names, "image",
        source=f"image {'folder' if os.path.isdir(path) else 'zip'} {path} ({len(x)} images, {color}, {size}x{size})",
        augment="shift",
    )
    x, y = validate_arrays(x, y, path)
    return _bundle(info, path, x, y, split, "global")
