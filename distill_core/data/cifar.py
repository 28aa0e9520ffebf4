"""CIFAR-10 and CIFAR-100 from the user's own copy: the official archives or their folders.

Both "python version" (pickled batches) and "binary version" (fixed-size records) are read;
nothing is downloaded. The pickles are read with a restricted unpickler that can build only
what those files hold (dicts, lists, strings, numbers and numpy arrays), so a hostile file cannot
run code. Archives are unpacked once, safely, into the lab's cache (safe_archive.py).

The official test split is the test split; validation is carved from the training images with
the lab's seeded, stratified split. Inputs are normalised per channel with the training split's
statistics; the uint8 images travel along (DataBundle.raw) for augmentation and the GPU path.
"""
from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import Param
from . import register
from .base import DataBundle, DatasetInfo, RawImages, original_index, split_indices
from .safe_archive import unpack_tar

TITLE = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
CITATION = "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, University of Toronto, 2009"
PIXELS = 3 * 32 * 32

# What each version of each set holds, inside its archive's single top folder.
LAYOUTS = {
    ("cifar10", "python"): {"folder": "cifar-10-batches-py", "archive": "cifar-10-python.tar.gz",
                            "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"],
                            "meta": "batches.meta"},
    ("cifar10", "binary"): {"folder": "cifar-10-batches-bin", "archive": "cifar-10-binary.tar.gz",
                            "train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"],
                            "meta": "batches.meta.txt"},
    ("cifar100", "python"): {"folder": "cifar-100-python", "archive": "cifar-100-python.tar.gz",
                             "train": ["train"], "test": ["test"], "meta": "meta"},
    ("cifar100", "binary"): {"folder": "cifar-100-binary", "archive": "cifar-100-binary.tar.gz",
                             "train": ["train.bin"], "test": ["test.bin"],
                             "meta": {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"}},
}


# ---------------------------------------------------------------------------------------------
# Restricted unpickling


def _numpy_reconstruct():
    return np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, wherever this numpy keeps it


# The only globals a CIFAR pickle names: numpy's array reconstruction (under numpy 1's module
# name, which the official files use, and numpy 2's), ndarray and dtype. Dicts, lists, strings,
# bytes and numbers are built by pickle opcodes without any global.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        make = _ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return make()

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent reference")


def load_pickle(path: Path, shown: str) -> dict:
    """A CIFAR python-version file as a dict (latin-1 strings, as the Python 2 files need)."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("refused"):
            raise DataError(f"{shown}: {e}: a CIFAR batch holds only dicts, lists, strings, numbers and numpy "
                            "arrays, so this file is not one (it may be malicious); nothing in it was run") from None
        raise DataError(f"{shown}: not a valid CIFAR pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, OSError) as e:
        raise DataError(f"{shown}: not a valid CIFAR pickle, or truncated ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{shown}: holds a {type(obj).__name__}, not the dict of a CIFAR batch")
    return obj


# ---------------------------------------------------------------------------------------------
# Reading the files


def _images(data, n_labels: int, shown: str) -> np.ndarray:
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{shown}: 'data' should be a uint8 array of shape (N, {PIXELS}), got a {what}")
    if len(data) != n_labels:
        raise DataError(f"{shown}: {len(data)} images but {n_labels} labels")
    return data.reshape(-1, 3, 32, 32)


def _labels(d: dict, key: str, shown: str) -> np.ndarray:
    if key not in d:
        raise DataError(f"{shown}: no {key!r} in the batch; it holds: {', '.join(map(str, d)) or 'nothing'}")
    try:
        y = np.asarray(d[key], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{shown}: {key!r} are not whole numbers") from None
    if y.ndim != 1:
        raise DataError(f"{shown}: {key!r} should be one label per image, got shape {y.shape}")
    return y


def read_python_batch(path: Path, label_key: str, shown: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path, shown)
    y = _labels(d, label_key, shown)
    if "data" not in d:
        raise DataError(f"{shown}: no 'data' in the batch; it holds: {', '.join(map(str, d))}")
    return _images(d["data"], len(y), shown), y


def read_binary_batch(path: Path, label_bytes: int, label_index: int, shown: str) -> tuple[np.ndarray, np.ndarray]:
    """Records of `label_bytes` label bytes then 3,072 pixel bytes; the label at `label_index`."""
    raw = np.fromfile(path, dtype=np.uint8)
    record = label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{shown}: {raw.size:,} bytes is not a whole number of {record:,}-byte records "
                        "(truncated, or not a CIFAR binary batch)")
    raw = raw.reshape(-1, record)
    return np.ascontiguousarray(raw[:, label_bytes:]).reshape(-1, 3, 32, 32), raw[:, label_index].astype(np.int64)


def read_names(path: Path, key: str | None, shown: str) -> list[str]:
    """Class names from a meta pickle (`key`) or a text file (one name a line)."""
    if key is None:
        names = [s.strip() for s in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        return [s for s in names if s]
    d = load_pickle(path, shown)
    names = d.get(key)
    if not isinstance(names, list) or not all(isinstance(n, (str, bytes)) for n in names):
        raise DataError(f"{shown}: no list of class names {key!r}")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


# ---------------------------------------------------------------------------------------------
# Finding the files


def _detect(folder: Path, name: str) -> tuple[str, Path] | None:
    """(version, folder holding the batches) if `folder` is, or directly holds, a version of `name`."""
    for (set_name, version), lay in LAYOUTS.items():
        for candidate in (folder / lay["folder"], folder):
            if set_name == name and (candidate / lay["train"][0]).is_file():
                return version, candidate
    return None


def _other_set(folder: Path, name: str) -> str | None:
    """The other CIFAR set's name if `folder` holds it instead of `name`."""
    for (set_name, _), lay in LAYOUTS.items():
        if set_name != name and any((c / lay["train"][0]).is_file() for c in (folder / lay["folder"], folder)):
            return set_name
    return None


def locate(path: str, name: str, max_mb: float) -> tuple[str, Path, str]:
    """(version, batch folder, what to call it in messages) for the user's path."""
    if not str(path).strip():
        lay = LAYOUTS[(name, "python")]
        raise DataError(f"no file given: set path to your {lay['archive']} (or the folder it unpacks to)")
    given = Path(os.path.expanduser(str(path)))
    if not given.exists():
        raise DataError(f"{given}: file not found")
    if given.is_dir():
        folder, shown = given, str(given)
    else:
        if not _is_tar(given):
            if given.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
                raise DataError(f"{given}: not a valid .tar.gz archive (truncated or corrupt?)")
            raise DataError(f"{given}: expected an official CIFAR archive (e.g. {LAYOUTS[(name, 'python')]['archive']}) "
                            "or the folder it unpacks to")
        folder, shown = unpack_tar(given, max_mb), str(given)
    found = _detect(folder, name)
    if found is None:
        other = _other_set(folder, name)
        if other:
            raise DataError(f"{shown}: holds {TITLE[other]}, not {TITLE[name]}; choose the {other} data set")
        expected = " or ".join(f"{lay['folder']}/{lay['train'][0]}" for (n, _), lay in LAYOUTS.items() if n == name)
        raise DataError(f"{shown}: not a {TITLE[name]} folder or archive: found no {expected}")
    return found[0], found[1], shown


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def read_split(folder: Path, shown: str, version: str, name: str, files: list[str], labels: str):
    """(images, labels) of one split, concatenated over its batch files."""
    xs, ys = [], []
    for f in files:
        p = folder / f
        where = f"{shown}: {folder.name}/{f}"
        if not p.is_file():
            raise DataError(f"{shown}: the batch file {folder.name}/{f} is missing")
        if version == "python":
            key = "labels" if name == "cifar10" else f"{labels}_labels"
            x, y = read_python_batch(p, key, where)
        elif name == "cifar10":
            x, y = read_binary_batch(p, 1, 0, where)
        else:
            x, y = read_binary_batch(p, 2, 0 if labels == "coarse" else 1, where)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def class_names(folder: Path, shown: str, version: str, name: str, labels: str) -> list[str]:
    meta = LAYOUTS[(name, version)]["meta"]
    file = meta[labels] if isinstance(meta, dict) else meta
    p = folder / file
    if not p.is_file():
        raise DataError(f"{shown}: the meta file {folder.name}/{file} with the class names is missing")
    key = None if version == "binary" else ("label_names" if name == "cifar10" else f"{labels}_label_names")
    return read_names(p, key, f"{shown}: {folder.name}/{file}")


# ---------------------------------------------------------------------------------------------
# The data sets


def first_per_class(y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first k samples of each class, in file order."""
    keep = np.zeros(len(y), bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:k]] = True
    return np.flatnonzero(keep)


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of uint8 images, accumulated in float64 by chunks
    (a float64 copy of CIFAR's training set would take 1.2 GB)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, len(x), chunk):
        c = x[i : i + chunk].to(torch.float64)
        total += c.sum((0, 2, 3))
        squares += (c * c).sum((0, 2, 3))
    n = len(x) * x.shape[2] * x.shape[3]
    mean = total / n
    std = (squares / n - mean**2).clamp(min=0).sqrt().clamp(min=1e-3)
    return mean.to(torch.float32), std.to(torch.float32)


def load_cifar(name: str, path: str, labels: str, subset: int, max_mb: float, split_seed: int,
               val_fraction: float, test_fraction: float) -> DataBundle:
    version, folder, shown = locate(path, name, max_mb)
    lay = LAYOUTS[(name, version)]
    names = class_names(folder, shown, version, name, labels)
    x, y = read_split(folder, shown, version, name, lay["train"], labels)
    x_test, y_test = read_split(folder, shown, version, name, lay["test"], labels)
    k = len(names)
    for what, lab in (("training", y), ("test", y_test)):
        if lab.size and (lab.min() < 0 or lab.max() >= k):
            raise DataError(f"{shown}: {what} labels run from {lab.min()} to {lab.max()}, but the meta file names "
                            f"{k} classes")
    n_files = len(x), len(x_test)
    if subset:
        keep = first_per_class(y, subset)
        x, y = x[keep], y[keep]
        keep = first_per_class(y_test, max(1, subset // 5))
        x_test, y_test = x_test[keep], y_test[keep]
    missing = sorted(set(range(k)) - set(y.tolist()))
    if missing:
        raise DataError(f"{shown}: no training images of class(es) {', '.join(names[i] for i in missing[:10])}")
    parts = split_indices(y, seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction,
                          where=shown, own_test=True)
    u8 = {s: torch.from_numpy(np.ascontiguousarray(x[parts[s]])) for s in ("train", "val")}
    u8["test"] = torch.from_numpy(np.ascontiguousarray(x_test))
    mean, std = channel_stats(u8["train"])
    raw = RawImages(u8["train"], u8["val"], u8["test"], mean, std)
    ys = {"train": y[parts["train"]], "val": y[parts["val"]], "test": y_test}
    info = DatasetInfo(
        name, (3, 32, 32), k, names, "image",
        source=f"{TITLE[name]} {version} version from {shown} ({n_files[0]:,} training / {n_files[1]:,} test images"
               + (f"; subset: {len(y):,} / {len(y_test):,}" if subset else "")
               + (f"; {labels} labels" if name == "cifar100" else "") + ")",
        citation=CITATION, augment="crop-flip",
    )
    tensors = []
    for s in ("train", "val", "test"):
        tensors += [raw.normalise(u8[s]), torch.from_numpy(ys[s].astype(np.int64))]
    return DataBundle(info, *tensors, raw=raw, index=original_index(parts, len(y), len(y_test)))


PATH = Param("path", "", "your copy: the official archive (python or binary version, .tar.gz) or the folder it "
             "unpacks to; nothing is downloaded", "str")
SUBSET = Param("subset", 0, "keep only the first N training images of each class (0 = all) and a fifth as many "
               "test images per class: a CPU-sized smoke run", "int", 0, 6000)
MAX_MB = Param("max_mb", 1000.0, "refuse archives that unpack to more than this many MB", "float", 1.0, 100000)


@register("cifar10", "CIFAR-10 from your own copy (official archive or folder, python or binary version): "
          "32x32 colour images, 10 classes", (PATH, SUBSET, MAX_MB), kind="image", user_file=True)
def cifar10(path: str, subset: int, max_mb: float, **split) -> DataBundle:
    return load_cifar("cifar10", path, "fine", subset, max_mb, **split)


@register("cifar100", "CIFAR-100 from your own copy (official archive or folder, python or binary version): "
          "32x32 colour images, 100 classes (or 20 superclasses)",
          (PATH, Param("labels", "fine", "fine: the 100 classes; coarse: the 20 superclasses", "choice",
                       choices=("fine", "coarse")), SUBSET, MAX_MB), kind="image", user_file=True)
def cifar100(path: str, labels: str, subset: int, max_mb: float, **split) -> DataBundle:
    return load_cifar("cifar100", path, labels, subset, max_mb, **split)
