"""Small CIFAR files in the official layouts, for the tests (random images, a few hundred).

The python version is written as the official files are: a protocol-2 pickle from Python 2 with
numpy 1 (latin-1 strings, `numpy.core.multiarray._reconstruct`). Pixel (0, 0, 0) of every image
holds its fine label and pixel (0, 0, 1) its coarse label, so a test can check that images and
labels stay paired through loading and splitting.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

FOLDERS = {("cifar10", "python"): "cifar-10-batches-py", ("cifar10", "binary"): "cifar-10-batches-bin",
           ("cifar100", "python"): "cifar-100-python", ("cifar100", "binary"): "cifar-100-binary"}
ARCHIVES = {("cifar10", "python"): "cifar-10-python.tar.gz", ("cifar10", "binary"): "cifar-10-binary.tar.gz",
            ("cifar100", "python"): "cifar-100-python.tar.gz", ("cifar100", "binary"): "cifar-100-binary.tar.gz"}


class _Py2Pickler(pickle.Pickler):
    """Arrays as numpy 1 under Python 2 pickled them: their bytes as a (latin-1) string."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            fn, args, state = obj.__reduce__()
            return fn, (args[0], args[1], args[2].decode("latin1")), state[:4] + (state[4].decode("latin1"),)
        return NotImplemented


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def images(n: int, fine: np.ndarray, coarse: np.ndarray, rng) -> np.ndarray:
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = fine, coarse
    return x


def labels(n: int, k: int, rng) -> np.ndarray:
    y = np.concatenate([np.tile(np.arange(k), 2), rng.integers(0, k, max(0, n - 2 * k))])[:n]  # each class twice
    return rng.permutation(y)


def write_folder(root: Path, name: str = "cifar10", version: str = "python", n_train: int = 300, n_test: int = 60,
                 seed: int = 0) -> Path:
    """Write the set's folder (e.g. cifar-10-batches-py) under root and return it."""
    rng = np.random.default_rng(seed)
    k = 10 if name == "cifar10" else 100
    folder = root / FOLDERS[(name, version)]
    folder.mkdir(parents=True)
    fine_names = [f"class_{i}" for i in range(k)]
    coarse_names = [f"super_{i}" for i in range(20)]
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = labels(n, k, rng)
        c = y % 20
        splits[split] = (images(n, y, c, rng), y, c)
    if name == "cifar10":
        x, y, _ = splits["train"]
        parts = np.array_split(np.arange(n_train), 5)
        batches = [(f"data_batch_{i + 1}", x[p], y[p]) for i, p in enumerate(parts)] + [("test_batch", *splits["test"][:2])]
        for fname, xb, yb in batches:
            if version == "python":
                d = {"batch_label": fname, "labels": yb.tolist(), "data": xb.reshape(len(xb), -1),
                     "filenames": [f"img_{i}.png" for i in range(len(xb))]}
                (folder / fname).write_bytes(py2_pickle(d))
            else:
                rec = np.concatenate([yb[:, None].astype(np.uint8), xb.reshape(len(xb), -1)], 1)
                (folder / f"{fname}.bin").write_bytes(rec.tobytes())
        if version == "python":
            (folder / "batches.meta").write_bytes(py2_pickle({"num_cases_per_batch": 10000, "label_names": fine_names,
                                                             "num_vis": 3072}))
        else:
            (folder / "batches.meta.txt").write_text("\n".join(fine_names) + "\n\n")
    else:
        for split in ("train", "test"):
            x, y, c = splits[split]
            if version == "python":
                d = {"filenames": [f"img_{i}.png" for i in range(len(x))], "batch_label": split,
                     "fine_labels": y.tolist(), "coarse_labels": c.tolist(), "data": x.reshape(len(x), -1)}
                (folder / split).write_bytes(py2_pickle(d))
            else:
                rec = np.concatenate([c[:, None].astype(np.uint8), y[:, None].astype(np.uint8), x.reshape(len(x), -1)], 1)
                (folder / f"{split}.bin").write_bytes(rec.tobytes())
        if version == "python":
            (folder / "meta").write_bytes(py2_pickle({"fine_label_names": fine_names, "coarse_label_names": coarse_names}))
        else:
            (folder / "fine_label_names.txt").write_text("\n".join(fine_names) + "\n")
            (folder / "coarse_label_names.txt").write_text("\n".join(coarse_names) + "\n")
    return folder


def write_archive(root: Path, name: str = "cifar10", version: str = "python", **kw) -> Path:
    """The official .tar.gz of a small set (its folder is written under root/src first)."""
    folder = write_folder(root / f"src-{name}-{version}", name, version, **kw)
    archive = root / ARCHIVES[(name, version)]
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return archive
