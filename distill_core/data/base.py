"""What every data set loader returns, and the shared split / normalise step."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError


@dataclass
class DatasetInfo:
    name: str
    input_shape: tuple[int, ...]  # per sample: (d,) vector, (C, L) signal, (C, H, W) image
    num_classes: int
    class_names: list[str]
    kind: str  # "vector" | "signal" | "image"
    source: str = ""
    citation: str = ""
    augment: str = "none"  # what augmentation means here: "shift" (images), "noise" (signals, vectors)
    params: dict = field(default_factory=dict)  # the knobs it was loaded with


@dataclass
class RawImages:
    """The image splits as uint8 (N, C, H, W) and the per-channel statistics that normalise them.

    `normalise(raw)` gives exactly the float inputs of the bundle. A trainer may keep these on
    its device (a quarter of the memory) and crop or flip before normalising, as torchvision's
    pipeline does: the padding of a random crop is then black, not the mean colour.
    """

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    mean: torch.Tensor  # (C,), in pixel units 0..255
    std: torch.Tensor  # (C,)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = self.mean.to(x.device, torch.float32).view(shape)
        std = self.std.to(x.device, torch.float32).view(shape)
        return (x.to(torch.float32) - mean) / std

    def select(self, keep_train: torch.Tensor, keep_val: torch.Tensor) -> "RawImages":
        return RawImages(self.train[keep_train], self.val[keep_val], self.test, self.mean, self.std)


@dataclass
class DataBundle:
    """Train / validation / test tensors (float32 inputs, int64 labels) and metadata.

    `raw`, where a data set keeps it (CIFAR), holds the same images as uint8 (see RawImages).
    """

    info: DatasetInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    raw: RawImages | None = None
    # Where each split's samples are in the data set's original order (a data set with its own
    # test split lists its other samples first): a file of teacher outputs, one row per sample
    # in that order, is split the same way. `ids` are the rows' own ids where the data set has
    # an id column (a user's CSV), else None (the row numbers are the ids).
    index: dict[str, np.ndarray] | None = None
    ids: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Samples in the whole data set, all splits together."""
        return sum(self.sizes().values())

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, f"y_{s}")) for s in ("train", "val", "test")}


def validate_arrays(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check inputs/labels are usable; return float32 x and integer labels 0..K-1 (sorted)."""
    if len(x) != len(y):
        raise DataError(f"{where}: x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{where}: no samples")
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{where}: inputs are not numeric") from None
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum()) if x.ndim > 1 else int((~np.isfinite(x)).sum())
        raise DataError(f"{where}: {bad} sample(s) contain NaN or infinite values")
    return x, np.asarray(y)


def encode_labels(y: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    """Map arbitrary labels to 0..K-1; class names are the sorted original labels."""
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be one value per sample, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{where}: labels contain NaN or infinite values")
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{where}: need at least two classes, found {len(classes)}")
    return codes.astype(np.int64), [str(c) for c in classes]


def split_and_normalise(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    where: str,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    normalise: str = "global",
    order: dict[str, np.ndarray] | None = None,
) -> tuple[torch.Tensor, ...]:
    """Stratified, seeded split; normalisation statistics come from the training split only.

    `normalise`: "global" (one mean/std over all training values: images, signals),
    "feature" (per-feature mean/std: tabular data) or "none".
    If `x_test`/`y_test` are given, the data set has its own test split and only validation
    is carved out of `x`. `order`: the split as `split_indices` gives it, if already made.
    """
    own_test = x_test is not None
    if order is None:
        order = split_indices(y, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, where=where,
                              own_test=own_test)
    xs = {k: x[v] for k, v in order.items()}
    ys = {k: y[v] for k, v in order.items()}
    if own_test:
        xs["test"], ys["test"] = np.asarray(x_test, dtype=np.float32), np.asarray(y_test)
    train = xs["train"]
    if normalise == "global":
        mean, std = float(train.mean()), float(train.std()) or 1.0
    elif normalise == "feature":
        mean, std = train.mean(axis=0), train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
    else:
        mean, std = 0.0, 1.0
    out = []
    for k in ("train", "val", "test"):
        out.append(torch.from_numpy(((xs[k] - mean) / std).astype(np.float32)))
        out.append(torch.from_numpy(ys[k].astype(np.int64)))
    return tuple(out)


def split_indices(y: np.ndarray, *, seed: int, val_fraction: float, test_fraction: float, where: str,
                  own_test: bool = False) -> dict[str, np.ndarray]:
    """The stratified, seeded split as index arrays {"train", "val", "test"} into y (each shuffled).

    With `own_test` the data set has its own test split: only validation is carved out and
    "test" is empty.
    """
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        need = 2 if own_test else 3
        if len(idx) < need:
            raise DataError(
                f"{where}: class {c} has {len(idx)} sample(s); at least {need} are needed to split "
                "into train / validation" + ("" if own_test else " / test")
            )
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        n_test = 0 if own_test else max(1, int(round(len(idx) * test_fraction)))
        if len(idx) - n_val - n_test < 1:
            n_val, n_test = 1, 0 if own_test else 1
        parts["val"] += idx[:n_val].tolist()
        parts["test"] += idx[n_val : n_val + n_test].tolist()
        parts["train"] += idx[n_val + n_test :].tolist()
    return {k: rng.permutation(np.array(v, dtype=np.int64)) for k, v in parts.items()}


def make_bundle(info: DatasetInfo, x: np.ndarray, y: np.ndarray, split: dict, *, where: str, normalise: str,
                x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                ids: np.ndarray | None = None) -> DataBundle:
    """Split and normalise arrays into a DataBundle that remembers where each sample came from.

    `split`: the data set's split knobs (split_seed, val_fraction, test_fraction); errors name
    the data through `where`."""
    own_test = x_test is not None
    order = split_indices(y, seed=split["split_seed"], val_fraction=split["val_fraction"],
                          test_fraction=split["test_fraction"], where=where, own_test=own_test)
    tensors = split_and_normalise(x, y, seed=split["split_seed"], val_fraction=split["val_fraction"],
                                  test_fraction=split["test_fraction"], where=where, normalise=normalise,
                                  x_test=x_test, y_test=y_test, order=order)
    return DataBundle(info, *tensors, index=original_index(order, len(y), len(y_test) if own_test else None), ids=ids)


def original_index(order: dict[str, np.ndarray], n: int, n_own_test: int | None = None) -> dict[str, np.ndarray]:
    """`DataBundle.index` from a split (`split_indices`) of n samples; a data set's own test split
    of `n_own_test` samples follows them in its original order."""
    index = dict(order)
    if n_own_test is not None:
        index["test"] = n + np.arange(n_own_test, dtype=np.int64)
    return index
