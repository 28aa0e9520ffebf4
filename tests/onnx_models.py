"""Small ONNX models the tests write by hand (no exporter involved)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear_onnx(path, n_in=64, n_out=10, input_shape=("N", 1, 8, 8), softmax=False, domain="", batch=None, seed=0):
    """A linear model in ONNX: Flatten -> MatMul -> Add (-> Softmax); `domain` for its MatMul;
    `batch` fixes the batch dimension. Shaped for digits by default."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(n_out, np.float32), "B")
    shape = [batch or input_shape[0], *input_shape[1:]]
    nodes = [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["mm"], domain=domain),
             helper.make_node("Add", ["mm", "B"], ["logits"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("probs" if softmax else "logits", TensorProto.FLOAT,
                                                             [shape[0], n_out])], [w, b])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
