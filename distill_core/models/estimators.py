"""scikit-learn teachers: tree ensembles trained here on tables, kept only as ONNX files.

They are entries of the architecture registry (vector inputs only), so the forms and the CLI
list them with their knobs, but they are not networks: they can teach a student, never be one,
and `build_model` refuses them. A fitted estimator is stored as its ONNX file (skl2onnx), never
as a pickle: a cached teacher loads without unpickling anything. Its log-probabilities are the
logits a student learns from.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from ..outputs_files import log_probabilities as clipped_log
from ..registry import Param
from . import register


def _depth(value: int) -> int | None:
    return value or None  # 0 means no limit


@register(
    "random-forest", "scikit-learn RandomForestClassifier: averaged decision trees (a teacher for tables)",
    (Param("n_estimators", 100, "number of trees", "int", 1, 5000),
     Param("max_depth", 0, "largest depth of a tree (0 = grow until the leaves are pure)", "int", 0, 1000),
     Param("min_samples_leaf", 1, "fewest training samples in a leaf", "int", 1, 100000),
     Param("max_features", "sqrt", "features tried at each split", "choice", choices=("sqrt", "log2", "all"))),
    kinds=("vector",), estimator=True,
)
def random_forest(input_shape, num_classes, n_estimators, max_depth, min_samples_leaf, max_features):
    from sklearn.ensemble import RandomForestClassifier  # heavy: only when a forest is fitted

    return RandomForestClassifier(n_estimators=n_estimators, max_depth=_depth(max_depth), min_samples_leaf=min_samples_leaf,
                                  max_features=None if max_features == "all" else max_features)


@register(
    "gradient-boosting", "scikit-learn HistGradientBoostingClassifier: boosted trees, the usual strong teacher for tables",
    (Param("max_iter", 100, "boosting rounds (trees per class)", "int", 1, 10000),
     Param("learning_rate", 0.1, "shrinkage of each tree's contribution", "float", 1e-4, 1.0),
     Param("max_leaf_nodes", 31, "leaves per tree", "int", 2, 4096),
     Param("max_depth", 0, "largest depth of a tree (0 = limited by the leaves only)", "int", 0, 1000),
     Param("l2_regularization", 0.0, "L2 penalty on the leaf values", "float", 0.0, 1e6)),
    kinds=("vector",), estimator=True,
)
def gradient_boosting(input_shape, num_classes, max_iter, learning_rate, max_leaf_nodes, max_depth, l2_regularization):
    from sklearn.ensemble import HistGradientBoostingClassifier

    # No internal early stopping: it would carve its own validation split out of the training
    # data; the lab's validation split stays the lab's.
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                                          max_depth=_depth(max_depth), l2_regularization=l2_regularization,
                                          early_stopping=False)


def fit_estimator(spec: dict, x: np.ndarray, y: np.ndarray, seed: int, threads: int = 1):
    """A fitted estimator for a normalised model spec, on flat float32 inputs (N, d)."""
    from . import ARCHITECTURES

    knobs = {k: v for k, v in spec.items() if k != "arch"}
    est = ARCHITECTURES.get(spec["arch"]).factory((x.shape[1],), int(y.max()) + 1, **knobs)
    est.set_params(random_state=seed)
    if "n_jobs" in est.get_params():
        est.set_params(n_jobs=max(1, threads))
    return est.fit(x, y)


def log_probabilities(est, x: np.ndarray) -> np.ndarray:
    """(N, K) float32 log-probabilities, clipped as any teacher's probabilities are (outputs_files.EPS)."""
    return clipped_log(est.predict_proba(x))


_patch_lock = threading.Lock()


@contextlib.contextmanager
def _int_missing_flags():
    """skl2onnx 1.20 passes Python's False for a leaf's missing-value flag of a histogram
    gradient-boosting tree, and current protobuf refuses a bool in ONNX's ints attribute ("Expected
    an int, got a boolean"). Turn the flag into an int while converting, nothing else."""
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args, nodes_missing_value_tracks_true=0, **kwargs):
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    with _patch_lock:
        tree_ensemble.add_node = add_node
        try:
            yield
        finally:
            tree_ensemble.add_node = original


def to_onnx_bytes(est, n_features: int) -> bytes:
    """The fitted estimator as an ONNX model: input (N, n_features) float32, outputs the label and
    the probabilities (N, K) (no ZipMap), opsets that ONNX Runtime runs without extras."""
    from skl2onnx import to_onnx

    sample = np.zeros((1, n_features), dtype=np.float32)
    with _int_missing_flags():
        model = to_onnx(est, sample, options={id(est): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    return model.SerializeToString()
