"""The static int8 model as a trainable PyTorch module, for quantisation-aware distillation.

`QDQSim` runs the QDQ graph that ONNX Runtime's static quantiser made (measure/int8.py) with
PyTorch operations, every QuantizeLinear / DequantizeLinear included: rounding, clamping and
zero points exactly as the standard defines them, the rounding passed through by the
straight-through estimator. Its parameters are the fp32 weights (quantised per output channel on
every forward, symmetric int8, as the quantiser does) and the activation scales (learned, in log
space, from their calibrated values; or kept as calibrated). `write` puts the trained weights,
their scales, the int32 biases and the activation scales back into the same graph, so the file
ONNX Runtime runs is the network that was trained: deployed == simulated, to the rounding of
int8 kernels. Placement of the quantisers is ONNX Runtime's own, so its fused int8 kernels apply;
the speed edits static int8 deploys are simulated as ONNX Runtime runs them: the first
convolution in float (int8.float_first_block: weights decoded by Cast x scale, a float bias), and
the pooling folded into the classifier (int8.pooling_in_classifier: the map's scale divided by
its positions, the weights tiled over them). Constants that no layer trains (a pre-activation
network's batch-norm scale and shift, which the quantiser stores in int8 / int32 per tensor) are
run as the file decodes them.

Only the operators the lab's architectures export are simulated; another one is a ModelError
naming it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..models.base import ModelOutput
from .int8 import reduced_range


def weight_qmax() -> int:
    """Symmetric int8 weights span [-127, 127], or [-64, 64] where the quantiser reduces their
    range (int8.reduced_range: a CPU without VNNI), as ONNX Runtime's quantiser does."""
    return 64 if reduced_range() else 127


# The activation scales' learning rate as a multiple of the weights' (their logs are learned): Adam
# moves every parameter by about its rate per step, so the logs need a larger one to travel from a
# range stretched by outliers to a useful one in a few epochs; SGD's steps grow with the gradient.
SCALE_LR = {"adam": 300.0, "sgd": 1.0}
INT_RANGES = {2: (0, 255), 3: (-128, 127)}  # ONNX TensorProto UINT8, INT8


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even forward (as QuantizeLinear), identity backward."""
    return x + (torch.round(x) - x).detach()


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: float, qmin: int, qmax: int) -> torch.Tensor:
    """DequantizeLinear(QuantizeLinear(x)): the value x has after a round trip through int8."""
    q = torch.clamp(round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def weight_scale(w: torch.Tensor) -> torch.Tensor:
    """Per output channel: max |w| / 127 (1 for an all-zero channel), as ONNX Runtime's quantiser
    (max |w| / 64 with a reduced range)."""
    absmax = w.detach().abs().flatten(1).amax(1)
    return torch.where(absmax > 0, absmax / weight_qmax(), torch.ones_like(absmax))


class QDQSim(nn.Module):
    """A QDQ ONNX graph (ModelProto) as a module: forward(x) gives its logits."""

    feature_kind = "vector"  # for the training loop: no channels-last layout

    def __init__(self, qdq, fp32_weights: dict[str, np.ndarray], learn_ranges: bool = True):
        super().__init__()
        from onnx import numpy_helper

        self.proto = qdq
        g = qdq.graph
        self.consts = {i.name: numpy_helper.to_array(i).copy() for i in g.initializer}  # writable, for torch
        self.nodes = list(g.node)
        self.attrs = [{a.name: _attr(a) for a in n.attribute} for n in self.nodes]
        self.input_name, self.output_name = g.input[0].name, g.output[0].name
        made = {o: n for n in self.nodes for o in n.output}
        self.weights = nn.ParameterDict()
        self.log_scales = nn.ParameterDict()
        self._weight_of: dict[str, str] = {}  # DQ output (or int8.float_first_block's Mul) -> weight key
        self._repeats: dict[str, int] = {}  # DQ output -> how often its weights are tiled (int8.pooling_in_classifier)
        self._bias_of: dict[str, str] = {}  # DQ output -> bias key
        self._float_bias_of: dict[str, str] = {}  # float bias initializer (int8.float_first_block) -> bias key
        self._act_scale: dict[str, str] = {}  # scale initializer -> parameter key
        self._derived: dict[str, tuple[str, int]] = {}  # scale initializer -> (a QuantizeLinear's scale, divisor)
        self._weight_sources: set[str] = set()  # what those weights are decoded from (Cast, Tile outputs)
        self._fixed: dict[str, torch.Tensor] = {}  # DQ output -> its value, for a constant no layer trains
        self.key = {}
        layer_inputs = {i for n in self.nodes if n.op_type in ("Conv", "Gemm") for i in n.input[1:3]}
        for n in self.nodes:
            decoded = _decoded_weight(n, made, self.consts)
            if decoded is not None and decoded[2] is None and n.output[0] not in layer_inputs:
                # e.g. a pre-activation BatchNormalization's scale and shift, which the quantiser
                # stores int8 / int32 per tensor: run as the file decodes them, not trained
                self._fixed[n.output[0]] = torch.as_tensor(_dequantised(n, self.consts), dtype=torch.float32)
            elif decoded is not None:  # DequantizeLinear of an int8 initializer, or its Cast x scale
                q_name, scale_name, source, repeats = decoded
                name = q_name.removesuffix("_pooled").removesuffix("_quantized")
                if name not in fp32_weights:
                    raise ModelError(f"QAD: the int8 graph's weight {q_name!r} has no fp32 tensor {name!r}")
                w = fp32_weights[name]
                is_bias = self.consts[q_name].dtype == np.int32
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1) if n.op_type == "DequantizeLinear" else 0
                if not is_bias and (axis != 0 or np.asarray(self.consts[scale_name]).size != len(w)):
                    raise ModelError(f"QAD simulates int8 weights per output channel (axis 0); {name!r} is not")
                k = self._param_key(name)
                self.weights[k] = nn.Parameter(torch.tensor(w, dtype=torch.float32))
                (self._bias_of if is_bias else self._weight_of)[n.output[0]] = k
                if source is not None:
                    self._weight_sources.add(source)
                if repeats > 1:
                    self._repeats[n.output[0]] = repeats
            elif n.op_type in ("Conv", "Gemm") and len(n.input) > 2 and n.input[2] in self.consts:
                # a bias left in float (int8.float_first_block): trained as it is, never quantised
                name = n.input[2].removesuffix("_float").removesuffix("_quantized")
                if name not in fp32_weights:
                    raise ModelError(f"QAD: the int8 graph's bias {n.input[2]!r} has no fp32 tensor {name!r}")
                k = self._param_key(name)
                self.weights[k] = nn.Parameter(torch.tensor(fp32_weights[name], dtype=torch.float32))
                self._float_bias_of[n.input[2]] = k
            elif n.op_type == "QuantizeLinear":
                s = n.input[1]
                if s not in self._act_scale:
                    k = self._param_key(s)
                    self._act_scale[s] = k
                    value = float(np.asarray(self.consts[s]).reshape(-1)[0])
                    self.log_scales[k] = nn.Parameter(torch.tensor(math.log(value)), requires_grad=learn_ranges)
        for n in self.nodes:  # every activation DequantizeLinear reads the scale of its QuantizeLinear
            if n.op_type == "DequantizeLinear" and n.input[0] not in self.consts and n.output[0] not in self._weight_of:
                src = made.get(n.input[0])
                while src is not None and src.op_type in ("Transpose", "Flatten"):  # moved, not changed
                    src = made.get(src.input[0])
                if src is None or src.op_type != "QuantizeLinear":
                    raise ModelError("QAD: a DequantizeLinear of the int8 graph does not follow its QuantizeLinear")
                if src.input[1] != n.input[1]:
                    # int8.pooling_in_classifier: the map's scale divided by its positions
                    ratio = float(np.asarray(self.consts[src.input[1]]).reshape(-1)[0]
                                  / np.asarray(self.consts[n.input[1]]).reshape(-1)[0])
                    if round(ratio) < 1 or abs(ratio - round(ratio)) > 1e-3 * ratio:
                        raise ModelError("QAD: a DequantizeLinear of the int8 graph reads another scale than its QuantizeLinear")
                    self._derived[n.input[1]] = (src.input[1], round(ratio))
        self._made = made

    def _param_key(self, name: str) -> str:
        k = name.replace(".", "_").replace(":", "_").replace("/", "_")
        while k in self.key.values():
            k += "_"
        self.key[name] = k
        return k

    # -- quantisation parameters ---------------------------------------------------------------------

    def act_scale(self, name: str) -> torch.Tensor:
        if name in self._derived:
            base, divisor = self._derived[name]
            return self.act_scale(base) / divisor
        return self.log_scales[self._act_scale[name]].exp()

    def _zp(self, name: str | None) -> float:
        return float(np.asarray(self.consts[name]).reshape(-1)[0]) if name else 0.0

    def _range(self, node) -> tuple[int, int]:
        zp = self.consts.get(node.input[2]) if len(node.input) > 2 else None
        return (0, 255) if zp is None or zp.dtype == np.uint8 else (-128, 127)

    def _input_scale(self, activation: str) -> torch.Tensor:
        """The scale of an activation that a DequantizeLinear made (a convolution's input)."""
        dq = self._made[activation]
        return self.act_scale(dq.input[1])

    # -- running the graph ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._device = x.device
        v: dict[str, torch.Tensor] = {self.input_name: x}
        for n, a in zip(self.nodes, self.attrs):
            v.update(zip(n.output, self._op(n, a, v)))
        return v[self.output_name]

    def optimizer_groups(self, lr: float, optimizer: str) -> list[dict]:
        """The weights at the run's rate; the activation scales (their logs) at SCALE_LR times it
        and without weight decay, which would pull every scale towards 1."""
        scales = [p for p in self.log_scales.values() if p.requires_grad]
        groups = [{"params": list(self.weights.values())}]
        if scales:
            f = SCALE_LR[optimizer]
            groups.append({"params": scales, "lr": lr * f, "lr_factor": f, "weight_decay": 0.0})
        return groups

    def forward_all(self, x: torch.Tensor) -> ModelOutput:
        """Logits only: the int8 graph has no named embedding or feature maps (QAD needs logits)."""
        return ModelOutput(self(x), None, [])

    def _const(self, name: str) -> np.ndarray:
        return self.consts[name]

    def _op(self, n, a: dict, v: dict) -> tuple:
        op = n.op_type
        ins = [v.get(i) if i else None for i in n.input]
        if op == "QuantizeLinear":
            qmin, qmax = self._range(n)
            scale, zp = self.act_scale(n.input[1]), self._zp(n.input[2] if len(n.input) > 2 else None)
            return (torch.clamp(round_ste(ins[0] / scale) + zp, qmin, qmax),)
        if n.output[0] in self._fixed:
            return (self._fixed[n.output[0]].to(self._device),)
        if n.output[0] in self._weight_of or n.output[0] in self._bias_of or n.output[0] in self._weight_sources:
            return (None,)  # read by the layer that uses it (its scale depends on the layer's input)
        if op == "DequantizeLinear":
            zp = self._zp(n.input[2] if len(n.input) > 2 else None)
            return ((ins[0] - zp) * self.act_scale(n.input[1]),)
        if op in ("Conv", "Gemm"):
            return (self._layer(n, op, a, ins),)
        if op == "Relu":
            return (F.relu(ins[0]),)
        if op == "Clip":
            lo = float(self._const(n.input[1])) if len(n.input) > 1 and n.input[1] else a.get("min", -math.inf)
            hi = float(self._const(n.input[2])) if len(n.input) > 2 and n.input[2] else a.get("max", math.inf)
            return (torch.clamp(ins[0], lo, hi),)
        if op == "Add":
            return (ins[0] + self._value(n.input[1], ins[1], ins[0]),)
        if op == "Mul":
            return (ins[0] * self._value(n.input[1], ins[1], ins[0]),)
        if op in ("MaxPool", "AveragePool"):
            return (_pool(op, ins[0], a),)
        if op == "GlobalAveragePool":
            return (ins[0].mean(tuple(range(2, ins[0].dim())), keepdim=True),)
        if op == "Flatten":
            axis = a.get("axis", 1)
            return (ins[0].reshape(int(np.prod(ins[0].shape[:axis])), -1),)
        if op == "Reshape":
            shape = [int(s) for s in self._const(n.input[1])]
            shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return (ins[0].reshape(shape),)
        if op == "Transpose":
            return (ins[0].permute(*a["perm"]),)
        if op == "Concat":
            return (torch.cat(ins, a["axis"]),)
        if op == "Split":
            sizes = [int(s) for s in self._const(n.input[1])] if len(n.input) > 1 else None
            axis = a.get("axis", 0)
            sizes = sizes or [ins[0].shape[axis] // len(n.output)] * len(n.output)
            return tuple(torch.split(ins[0], sizes, axis))
        if op in ("Squeeze", "Unsqueeze"):
            axes = [int(s) for s in self._const(n.input[1])] if len(n.input) > 1 else a.get("axes")
            out = ins[0]
            if op == "Squeeze":
                return (out.squeeze(tuple(x % out.dim() for x in axes)),)
            for ax in sorted(x % (out.dim() + len(axes)) for x in axes):
                out = out.unsqueeze(ax)
            return (out,)
        if op == "BatchNormalization":
            scale, bias, mean, var = (self._value(i, got, ins[0]) for i, got in zip(n.input[1:5], ins[1:5]))
            shape = (1, -1) + (1,) * (ins[0].dim() - 2)
            return ((ins[0] - mean.view(shape)) / torch.sqrt(var.view(shape) + a.get("epsilon", 1e-5))
                    * scale.view(shape) + bias.view(shape),)
        if op == "Identity":
            return (ins[0],)
        raise ModelError(f"QAD cannot simulate the ONNX operator {op} yet (in the int8 graph of this architecture)")

    def _value(self, name: str, got, like: torch.Tensor):
        return got if got is not None else torch.as_tensor(self._const(name), device=like.device)

    def _quantised_weight(self, dq_out: str) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weights[self._weight_of[dq_out]]
        s = weight_scale(w)
        shape = (-1,) + (1,) * (w.dim() - 1)
        q = torch.clamp(round_ste(w / s.view(shape)), -weight_qmax(), weight_qmax()) * s.view(shape)
        repeats = self._repeats.get(dq_out, 1)
        return (q.repeat(1, repeats) if repeats > 1 else q), s

    def _bias(self, dq_out: str | None, x: str, w_scale: torch.Tensor):
        """A layer's bias: in float where the graph keeps it so, else int32 at input scale x weight scale."""
        if not dq_out:
            return None
        if dq_out in self._float_bias_of:
            return self.weights[self._float_bias_of[dq_out]]
        if dq_out not in self._bias_of:
            raise ModelError("QAD: a layer's bias is not quantised in the int8 graph")
        b = self.weights[self._bias_of[dq_out]]
        s = self._input_scale(x) * w_scale
        return torch.clamp(round_ste(b / s), -(2**31), 2**31 - 1) * s

    def _layer(self, n, op, a, ins):
        x = ins[0]
        if n.input[1] not in self._weight_of:
            raise ModelError(f"QAD: the weights of a {op} are not quantised in the int8 graph")
        w, w_scale = self._quantised_weight(n.input[1])
        bias = self._bias(n.input[2] if len(n.input) > 2 else None, n.input[0], w_scale)
        if op == "Gemm":
            if a.get("transA", 0):
                x = x.t()
            return F.linear(x, w if a.get("transB", 0) else w.t(), bias)
        conv = F.conv1d if x.dim() == 3 else F.conv2d
        k = len(a.get("kernel_shape", w.shape[2:]))
        pads = a.get("pads", [0] * 2 * k)
        if pads[:k] != pads[k:]:
            x = F.pad(x, [p for i in reversed(range(k)) for p in (pads[i], pads[i + k])])
            pads = [0] * 2 * k
        return conv(x, w, bias, a.get("strides", [1] * k), pads[:k], a.get("dilations", [1] * k), a.get("group", 1))

    # -- writing the trained graph ---------------------------------------------------------------------

    @torch.no_grad()
    def write(self, path: str | Path) -> None:
        """The graph with the trained weights and scales: int8 weights and their per-channel scales,
        int32 biases at input scale x weight scale, the learned activation scales."""
        import onnx
        from onnx import numpy_helper

        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        g = proto.graph
        inits = {i.name: i for i in g.initializer}

        def put(name: str, value: np.ndarray) -> None:
            inits[name].CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(inits[name]).dtype), name))

        for scale_name, key in self._act_scale.items():
            put(scale_name, np.asarray(self.log_scales[key].exp().item(), np.float32).reshape(self.consts[scale_name].shape))
        for scale_name in self._derived:
            put(scale_name, np.asarray(self.act_scale(scale_name).item(), np.float32).reshape(self.consts[scale_name].shape))
        made = {o: n for n in g.node for o in n.output}
        for n in g.node:
            if n.op_type not in ("Conv", "Gemm") or n.input[1] not in self._weight_of:
                continue
            w = self.weights[self._weight_of[n.input[1]]].detach().cpu()
            s = weight_scale(w)
            shape = (-1,) + (1,) * (w.dim() - 1)
            q_name, scale_name, _, _ = _decoded_weight(made[n.input[1]], made, self.consts)
            put(q_name, torch.clamp(torch.round(w / s.view(shape)), -weight_qmax(), weight_qmax()).numpy())
            put(scale_name, s.numpy().reshape(self.consts[scale_name].shape))
            if len(n.input) > 2 and n.input[2] in self._float_bias_of:
                put(n.input[2], self.weights[self._float_bias_of[n.input[2]]].detach().cpu().numpy())
            elif len(n.input) > 2 and n.input[2]:
                b_dq = made[n.input[2]]
                bs = (self._input_scale(n.input[0]).detach().cpu() * s).numpy().astype(np.float32)
                b = self.weights[self._bias_of[n.input[2]]].detach().cpu().numpy()
                put(b_dq.input[0], np.clip(np.round(b / bs), -(2**31), 2**31 - 1))
                put(b_dq.input[1], bs)
        onnx.save(proto, str(path))

    def float_weights(self) -> dict[str, np.ndarray]:
        """The trained fp32 weights under their names in the fp32 graph."""
        return {name: self.weights[k].detach().cpu().numpy().copy() for name, k in self.key.items() if k in self.weights}


def _decoded_weight(node, made: dict, consts: dict) -> tuple[str, str, str | None, int] | None:
    """(int8 initializer, scale initializer, the node between them or None, repeats) where `node`
    decodes a constant int8 tensor: a DequantizeLinear of it; of its Tile along the columns
    (int8.pooling_in_classifier: the weights repeated over the map's positions); or its Cast to
    float times the per-channel scale (int8.float_first_block). None for any other node."""
    if node.op_type == "DequantizeLinear":
        if node.input[0] in consts:
            return node.input[0], node.input[1], None, 1
        tile = made.get(node.input[0])
        if tile is not None and tile.op_type == "Tile" and all(i in consts for i in tile.input[:2]):
            repeats = [int(r) for r in consts[tile.input[1]]]
            if len(repeats) == 2 and repeats[0] == 1:
                return tile.input[0], node.input[1], tile.output[0], repeats[1]
    if node.op_type == "Mul" and node.input[1] in consts:
        cast = made.get(node.input[0])
        if cast is not None and cast.op_type == "Cast" and cast.input[0] in consts and consts[cast.input[0]].dtype == np.int8:
            return cast.input[0], node.input[1], cast.output[0], 1
    return None


def _dequantised(node, consts: dict) -> np.ndarray:
    """What a DequantizeLinear of constants gives: (q - zero point) x scale, per tensor or along its axis."""
    q, scale = consts[node.input[0]].astype(np.float32), np.asarray(consts[node.input[1]], np.float32)
    zp = np.asarray(consts[node.input[2]], np.float32) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
    if scale.size > 1:  # per axis
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % q.ndim
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q - zp) * scale


def _attr(a):
    from onnx import helper

    value = helper.get_attribute_value(a)
    return value.decode() if isinstance(value, bytes) else (list(value) if isinstance(value, (list, tuple)) else value)


def _pool(op: str, x: torch.Tensor, a: dict) -> torch.Tensor:
    k = a["kernel_shape"]
    d = len(k)
    pads = a.get("pads", [0] * 2 * d)
    strides = a.get("strides", [1] * d)
    if pads[:d] != pads[d:]:
        fill = -math.inf if op == "MaxPool" else 0.0
        x = F.pad(x, [p for i in reversed(range(d)) for p in (pads[i], pads[i + d])], value=fill)
        pads = [0] * 2 * d
    ceil = bool(a.get("ceil_mode", 0))
    if op == "MaxPool":
        fn = F.max_pool1d if d == 1 else F.max_pool2d
        return fn(x, k, strides, pads[:d], a.get("dilations", [1] * d), ceil)
    fn = F.avg_pool1d if d == 1 else F.avg_pool2d
    return fn(x, k, strides, pads[:d], ceil, bool(a.get("count_include_pad", 0)))
