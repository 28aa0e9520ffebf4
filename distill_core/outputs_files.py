"""A teacher given only as its outputs: an NPZ or CSV file with one row per sample of the data
set, in the data set's original order (before splitting), and one column per class, holding
logits or probabilities. A user's CSV data set with an id column (its `id_column` knob) may be
matched by id instead: the outputs file then names each row's id in a column of its own.

Every problem is a DataError naming the file, raised before anything trains. Probabilities
become log-probabilities (clipped at EPS): logit distillation only needs scores whose softmax
is the teacher's distribution, and softmax(log p) = p.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .data import DataBundle
from .errors import DataError
from .registry import Param

EPS = 1e-7  # probabilities are clipped to [EPS, 1] before the log: a 0 is not a -inf logit
SUM_TOLERANCE = 1e-3  # a row of probabilities must sum to 1 within this
VALUES = ("auto", "logits", "probabilities")
NPZ_KEYS = ("logits", "probabilities", "outputs")  # the array an NPZ's outputs may be named by

VALUES_PARAM = Param("values", "auto", "what the file holds: logits, probabilities, or auto (probabilities when every "
                     "row lies in [0, 1] and sums to 1, else logits)", "choice", choices=VALUES)
ID_PARAM = Param("id_column", "", "a CSV column naming each row's sample (the data set's id column, or its row "
                 "number from 0); empty: rows in the data set's order", "str")
MAX_MB_PARAM = Param("max_mb", 200.0, "refuse larger files", "float", 0.001, 100000)
OUTPUTS_PARAMS = (VALUES_PARAM, ID_PARAM, MAX_MB_PARAM)


def log_probabilities(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, EPS, 1.0)).astype(np.float32)


def _rows(mask: np.ndarray) -> str:
    bad = np.flatnonzero(mask)
    return f"{len(bad)} row(s) (the first is row {int(bad[0])})"


def to_logits(scores: np.ndarray, values: str, where: str) -> tuple[np.ndarray, str]:
    """Scores (N, K) as logits a student can learn from, and what they were taken for."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(scores).all(axis=1)
    if not finite.all():
        raise DataError(f"{where}: {_rows(~finite)} hold NaN or infinite values")
    in_unit = bool(((scores >= 0) & (scores <= 1)).all())
    sums = scores.sum(axis=1)
    off = np.abs(sums - 1) > SUM_TOLERANCE
    if values == "logits":
        return scores.astype(np.float32), "logits"
    if values == "probabilities" and not in_unit:
        raise DataError(f"{where}: probabilities must lie in [0, 1]; the values run from {scores.min():.4g} to "
                        f"{scores.max():.4g} (logits? then say values=logits)")
    if values == "probabilities" or in_unit:
        if off.any():
            first = int(np.flatnonzero(off)[0])
            hint = "" if values == "probabilities" else " (if they are logits, say so: values=logits)"
            raise DataError(f"{where}: probabilities do not sum to 1 in {_rows(off)}: row {first} sums to "
                            f"{sums[first]:.4g}{hint}")
        how = "probabilities" if values == "probabilities" else "probabilities (detected: every row lies in [0, 1] and sums to 1)"
        return log_probabilities(scores), how + ", taken as log-probabilities"
    return scores.astype(np.float32), "logits (detected: the rows are not probabilities)"


def _read_npz(path: str) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error):
        raise DataError(f"{path}: not a valid .npz file (save one with numpy.savez(path, logits=...))") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        return np.asarray(data)  # a plain .npy saved under another name
    with data:
        names = list(data.files)
        key = next((k for k in NPZ_KEYS if k in names), names[0] if len(names) == 1 else None)
        if key is None:
            raise DataError(f"{path}: holds {', '.join(names) or 'no arrays'}; name the outputs "
                            f"{' or '.join(NPZ_KEYS)} (numpy.savez(path, logits=...))")
        try:
            return data[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{path}: array {key!r} cannot be read ({exc})") from None


def _read_csv(path: str, id_column: str) -> tuple[np.ndarray, np.ndarray | None]:
    import pandas as pd  # heavy: only when a CSV is read

    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    ids = None
    if id_column:
        if id_column not in df.columns:
            raise DataError(f"{path}: no column named {id_column!r} for the ids; the columns are: {', '.join(df.columns)}")
        ids = df.pop(id_column).astype(str).str.strip().to_numpy()
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if text:
        raise DataError(f"{path}: column(s) {', '.join(text)} are not numeric; every column but the id column is a class's "
                        "output" + ("" if id_column else " (name an id column with id_column)"))
    return df.to_numpy(dtype=np.float64), ids


def _align(scores: np.ndarray, ids: np.ndarray, data: DataBundle, where: str) -> np.ndarray:
    """Rows reordered into the data set's order by their ids."""
    known = data.ids if data.ids is not None else np.arange(data.n_rows).astype(str)
    position = {str(k): i for i, k in enumerate(known)}
    names, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{where}: id(s) {', '.join(map(str, names[counts > 1][:5]))} appear more than once")
    seen = set(ids)
    unknown = [i for i in ids if i not in position]
    if unknown:
        what = "ids of its id column" if data.ids is not None else "row numbers 0 to " + str(data.n_rows - 1)
        raise DataError(f"{where}: {len(unknown)} unknown id(s), e.g. {', '.join(map(str, unknown[:5]))}; the data set's "
                        f"samples are named by the {what}")
    missing = [k for k in position if k not in seen]
    if missing:
        raise DataError(f"{where}: no outputs for {len(missing)} sample(s), e.g. id(s) {', '.join(missing[:5])}")
    out = np.empty_like(scores)
    out[[position[i] for i in ids]] = scores
    return out


def read_outputs(path: str | Path, data: DataBundle, values: str = "auto", id_column: str = "",
                 max_mb: float = MAX_MB_PARAM.default) -> tuple[np.ndarray, str]:
    """The file's outputs as logits (N, K) in the data set's original order, and what they were
    taken for (see `to_logits`)."""
    path = str(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such outputs file")
    size = os.path.getsize(path)
    if size > max_mb * 1024 * 1024:
        raise DataError(f"{path}: {size / 1024 / 1024:.3g} MB, more than max_mb={max_mb:g} MB")
    suffix = Path(path).suffix.lower()
    ids = None
    if suffix in (".npz", ".npy"):
        scores = _read_npz(path)
        if id_column:
            raise DataError(f"{path}: id_column is for CSV files; an NPZ's rows are in the data set's order")
    elif suffix == ".csv":
        scores, ids = _read_csv(path, id_column.strip())
    else:
        raise DataError(f"{path}: give an .npz or a .csv file of outputs")
    if scores.ndim != 2:
        raise DataError(f"{path}: outputs of shape {scores.shape}; expected one row per sample and one column per class")
    if scores.dtype.kind not in "fiu":
        raise DataError(f"{path}: the outputs are not numbers ({scores.dtype})")
    n, k = data.n_rows, data.info.num_classes
    if scores.shape[1] != k:
        raise DataError(f"{path}: {scores.shape[1]} column(s) of outputs, but {data.info.name} has {k} classes "
                        f"({', '.join(data.info.class_names[:12])}{' ...' if k > 12 else ''}): one column per class")
    if ids is not None:
        scores = _align(scores, ids, data, path)
    elif scores.shape[0] != n:
        raise DataError(f"{path}: {scores.shape[0]} row(s), but {data.info.name} has {n} samples: one row per sample, "
                        "in the data set's original order (before splitting)")
    return to_logits(scores, values, path)


def per_split(full: np.ndarray | torch.Tensor, data: DataBundle) -> dict[str, torch.Tensor]:
    """Rows of the whole data set (original order) cut into its train / val / test splits."""
    full = torch.as_tensor(full)
    return {s: full[torch.as_tensor(np.asarray(data.index[s]).copy())].contiguous() for s in ("train", "val", "test")}


def in_data_order(logits: dict[str, torch.Tensor], data: DataBundle) -> np.ndarray:
    """The inverse of `per_split`: per-split rows back in the data set's original order."""
    first = next(iter(logits.values()))
    out = np.empty((data.n_rows, first.shape[1]), dtype=first.numpy().dtype)
    for s, rows in logits.items():
        out[data.index[s]] = rows.numpy()
    return out
