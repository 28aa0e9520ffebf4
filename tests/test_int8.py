"""int8 that deploys: static QDQ quantisation (calibrated, made deployable), the exporter and its
fallback, and quantisation-aware distillation (QAD) from the simulated int8 graph to the file
ONNX Runtime runs. Budget: about 60 s on two shared cores (two dynamo exports, the rest TorchScript)."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from distill_core import paths
from distill_core.config import ExperimentSpec, expand
from distill_core.data.cache import load_data
from distill_core.engine.runner import run_one
from distill_core.engine.train import train_model
from distill_core.evaluate import predict_logits
from distill_core.measure import export as export_mod
from distill_core.measure import measure_run, measure_settings
from distill_core.measure.export import export_onnx, fold_batchnorm, unfold_batchnorm, float_state
from distill_core.measure.int8 import (EDITS, FLOAT_FIRST, FLOAT_OUTPUT, POOLING_IN_CLASSIFIER, SPEED_EDIT_TOLERANCE,
                                      SPEED_EDITS, _about_as_close_to_fp32, _reference, calibrated_qdq,
                                      calibration_sample, deployable, float_output, pooling_in_classifier,
                                      quantize_static_qdq)
from distill_core.measure.latency import ort_predict, ort_session
from distill_core.measure.qad import prepare
from distill_core.methods import make_method
from distill_core.models import build_model
from distill_core.train_params import train_settings

FAST = {"exporter": "torchscript", "energy": False, "pt2": False, "card": False, "budgets": False, "threads": 1,
        "latency_seconds": 0.01, "inference_seconds": 0.05, "throughput_batch": 16, "calibration_samples": 128}


def _randomise_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Batch-norm statistics and affine parameters that are not the identity, as after training."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.2, generator=g)
    return model.eval()


def _ort(path, x: np.ndarray) -> np.ndarray:
    return ort_predict(ort_session(path, 1), x)


# ------------------------------------------------------------------ static int8
def test_static_qdq_is_close_to_fp32_on_its_calibration_data_and_deterministic_per_seed(tmp_path):
    data = load_data({"name": "digits"})
    torch.manual_seed(0)
    model = _randomise_bn(build_model("cnn-small", data.info.input_shape, data.info.num_classes))
    onnx_out = export_onnx(model, data.x_test[:2], tmp_path / "m.onnx", data.x_test[:64], exporter="torchscript")
    assert onnx_out["ok"] and onnx_out["exporter"] == "torchscript" and "fallback_from" not in onnx_out
    calib = calibration_sample(data.x_train, 128, seed=3)
    q = quantize_static_qdq(onnx_out["path"], tmp_path / "s.onnx", calib, "minmax", seed=3)
    assert q["ok"] and q["variant"] == "static" and q["calibration"] == {"method": "minmax", "samples": 128, "split": "train", "seed": 3}
    # the first convolution (one input channel) runs in float where that is no further from fp32,
    # else its input channel is padded to four; nothing else changed the outputs
    assert (FLOAT_FIRST in q["edits"]) != ("input channels padded to a multiple of 4" in q["edits"])
    assert q["bytes"] < 0.45 * onnx_out["bytes"]
    want, got = model(torch.from_numpy(calib)).detach().numpy(), _ort(q["path"], calib)
    assert np.abs(got - want).max() < 0.1 * (want.max() - want.min())
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    # activations are quantised ahead of time: QDQ pairs in the file, and calibration is reproducible
    ops = {n.op_type for n in onnx.load(q["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and ("Pad" in ops or FLOAT_FIRST in q["edits"])
    assert np.array_equal(calib, calibration_sample(data.x_train, 128, seed=3))
    assert not np.array_equal(calib, calibration_sample(data.x_train, 128, seed=4))
    again = quantize_static_qdq(onnx_out["path"], tmp_path / "s2.onnx", calibration_sample(data.x_train, 128, 3), seed=3)
    assert (tmp_path / "s.onnx").read_bytes() == (tmp_path / "s2.onnx").read_bytes()
    other = quantize_static_qdq(onnx_out["path"], tmp_path / "s3.onnx", calibration_sample(data.x_train, 128, 4), seed=4)
    assert other["ok"] and (tmp_path / "s.onnx").read_bytes() != (tmp_path / "s3.onnx").read_bytes()
    entropy = quantize_static_qdq(onnx_out["path"], tmp_path / "e.onnx", calib, "entropy", seed=3)
    assert entropy["ok"] and entropy["calibration"]["method"] == "entropy"


PADDED = "input channels padded to a multiple of 4"


def test_deployable_cnn_small_is_under_30_percent_of_fp32_and_its_edits_keep_what_is_computed(tmp_path, monkeypatch):
    """Issue 17's size target, on the file the lab compares (the dynamo export, as measure_int8's
    "bytes"). Static int8 (with fp32 to compare): the first block in float (and the output, where
    that is no further from fp32), under 30 %, no further from fp32 than the quantiser's file. Without fp32 (as QAD calls it): padded, under 30 % too,
    the function the QDQ graph defines unchanged and ONNX Runtime's outputs no further from it."""
    monkeypatch.setattr(export_mod, "_GRAPHS", type(export_mod._GRAPHS)())  # leave the dynamo cache as it was
    data = load_data({"name": "digits"})
    torch.manual_seed(0)
    model = _randomise_bn(build_model("cnn-small", data.info.input_shape, data.info.num_classes))
    fp32 = export_onnx(model, data.x_test[:2], tmp_path / "m.onnx", data.x_test[:64])
    assert fp32["ok"] and fp32["exporter"] == "dynamo"
    calib = calibration_sample(data.x_train, 128, seed=0)
    x = data.x_test.numpy()
    calibrated_qdq(fp32["path"], tmp_path / "raw.onnx", calib)
    raw = onnx.load(str(tmp_path / "raw.onnx"))
    want, fused_raw, fp32_out = _reference(raw, x), _ort(tmp_path / "raw.onnx", x), _ort(fp32["path"], x)

    q = quantize_static_qdq(fp32["path"], tmp_path / "s.onnx", calib, seed=0)
    # Which edits pass their checks depends on the CPU's int8 kernels (saturation without VNNI, the
    # 7-bit weights of int8.reduced_range): the float first block or the padding, not both; the
    # compaction always.
    assert q["ok"] and set(q["edits"]) <= {n for n, _ in EDITS} and (FLOAT_FIRST in q["edits"]) != (PADDED in q["edits"])
    assert q["edits"][-1] == EDITS[-1][0]
    assert q["bytes"] < 0.30 * fp32["bytes"], (q["bytes"], fp32["bytes"], q["bytes"] / fp32["bytes"], q["edits"])
    got = _ort(q["path"], x)
    # the float first block and output keep within a tenth of the unedited file's distance from fp32
    # on the check samples; on the test set, twice that leaves room for which samples were checked
    assert np.abs(got - fp32_out).mean() <= (1 + 2 * SPEED_EDIT_TOLERANCE) * np.abs(fused_raw - fp32_out).mean()
    assert (got.argmax(1) == fp32_out.argmax(1)).mean() >= (fused_raw.argmax(1) == fp32_out.argmax(1)).mean()
    if FLOAT_FIRST in q["edits"]:
        # the first Conv reads the float input, its weights int8 in the file (Cast, Mul); every other
        # Conv and the Gemm read dequantised int8 weights and activations; biases are float tensors
        g = onnx.load(q["path"]).graph
        made, inits = {o: n for n in g.node for o in n.output}, {i.name: i for i in g.initializer}
        convs = [n for n in g.node if n.op_type in ("Conv", "Gemm")]
        assert convs[0].op_type == "Conv" and convs[0].input[0] == g.input[0].name
        mul = made[convs[0].input[1]]
        assert mul.op_type == "Mul" and made[mul.input[0]].op_type == "Cast"
        assert inits[made[mul.input[0]].input[0]].data_type == onnx.TensorProto.INT8
        for n in convs[1:]:
            assert made[n.input[0]].op_type == made[n.input[1]].op_type == "DequantizeLinear"
        assert all(n.input[2] in inits for n in convs[:-1])
        assert (convs[-1].output[0] == g.output[0].name) == (FLOAT_OUTPUT in q["edits"])  # no Q -> DQ after the Gemm
        assert not any(n.name or n.HasField("doc_string") for n in g.node)

    edits = deployable(tmp_path / "raw.onnx", tmp_path / "d.onnx", calib)  # no fp32: QAD's call
    assert edits == [name for name, fn in EDITS if fn not in SPEED_EDITS], edits
    assert (tmp_path / "d.onnx").stat().st_size < 0.30 * fp32["bytes"]
    deployed = onnx.load(str(tmp_path / "d.onnx"))
    got = _reference(deployed, x)  # the function the graph defines, each operator in float
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max() + 1e-6
    # what ONNX Runtime's int8 kernels compute is as close to it as the unedited file's
    # (identical where the u8s8 kernels do not saturate, closer where padding stops it)
    fused = _ort(tmp_path / "d.onnx", x)
    assert np.abs(fused - want).max() <= np.abs(fused_raw - want).max()
    assert (fused.argmax(1) == want.argmax(1)).mean() >= (fused_raw.argmax(1) == want.argmax(1)).mean()
    for n in deployed.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            assert n.input[2] in {i.name for i in deployed.graph.initializer}


def _kernels(path) -> list[str]:
    """The operators of the graph ONNX Runtime runs for the file at `path`."""
    optimised = path.with_suffix(".opt.onnx")
    ort_session(path, 1, optimised_path=optimised)
    return [n.op_type for n in onnx.load(str(optimised)).graph.node]


def test_pooling_folds_into_the_classifier_on_small_maps_only(tmp_path):
    """On a 4 x 4 map (digits' cnn-small) the Gemm reads the quantised map with its weights
    repeated over the positions: the function of the graph with the pooled features left in float
    (the one rounding the fold takes out), and fewer kernels in ONNX Runtime. On an 8 x 8 map
    (16 x 16 inputs) the graph is left as it was."""
    data = load_data({"name": "digits"})
    torch.manual_seed(0)
    model = _randomise_bn(build_model("cnn-small", data.info.input_shape, data.info.num_classes))
    fp32 = export_onnx(model, data.x_test[:2], tmp_path / "m.onnx", data.x_test[:64], exporter="torchscript")
    calibrated_qdq(fp32["path"], tmp_path / "raw.onnx", calibration_sample(data.x_train, 128, seed=0))
    raw = onnx.load(str(tmp_path / "raw.onnx"))
    assert float_output(raw)  # logits compared before their rounding to uint8
    onnx.save(raw, str(tmp_path / "raw.onnx"))
    folded = copy.deepcopy(raw)
    assert pooling_in_classifier(folded)
    assert "GlobalAveragePool" not in {n.op_type for n in folded.graph.node}
    # the unedited graph with the pooled features in float: the Gemm reads Flatten(pooling)
    pooled_in_float = copy.deepcopy(raw)
    g = pooled_in_float.graph
    pool = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    g.node.insert(list(g.node).index(gemm), onnx.helper.make_node("Flatten", [pool.output[0]], ["pooled_flat"], axis=1))
    gemm.input[0] = "pooled_flat"
    x = data.x_test[:256].numpy()
    want, rounded, got = _reference(pooled_in_float, x), _reference(raw, x), _reference(folded, x)
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())  # the bias at its new scale
    assert np.abs(rounded - want).max() > 10 * np.abs(got - want).max()  # the rounding it took out
    onnx.save(folded, str(tmp_path / "folded.onnx"))
    assert len(_kernels(tmp_path / "folded.onnx")) < len(_kernels(tmp_path / "raw.onnx"))
    assert "QLinearGlobalAveragePool" not in _kernels(tmp_path / "folded.onnx")

    big = _randomise_bn(build_model("cnn-small", (1, 16, 16), data.info.num_classes))
    fp32 = export_onnx(big, torch.randn(2, 1, 16, 16), tmp_path / "big.onnx", torch.randn(8, 1, 16, 16),
                       exporter="torchscript")
    calibrated_qdq(fp32["path"], tmp_path / "big_raw.onnx", np.random.default_rng(0).normal(size=(64, 1, 16, 16)).astype(np.float32))
    assert not pooling_in_classifier(onnx.load(str(tmp_path / "big_raw.onnx")))


def test_a_speed_edit_may_bring_the_logits_a_little_further_from_fp32_but_never_change_a_class():
    rng = np.random.default_rng(0)
    fp32 = rng.normal(size=(128, 10)).astype(np.float32)
    fp32[np.arange(128), rng.integers(0, 10, 128)] += 5  # a clear class per sample
    noise = rng.normal(size=fp32.shape).astype(np.float32) * 0.1
    want = fp32 + noise
    assert _about_as_close_to_fp32(fp32 + 0.5 * noise, want, fp32)  # closer
    assert _about_as_close_to_fp32(fp32 + 1.05 * noise, want, fp32)  # 5% further: within a tenth
    assert not _about_as_close_to_fp32(fp32 + 1.2 * noise, want, fp32)  # 20% further
    flipped = fp32 + 0.5 * noise
    flipped[0] = fp32[0] - 10 * (fp32[0] == fp32[0].max())  # one sample's class changes
    assert not _about_as_close_to_fp32(flipped, want, fp32)
    assert not _about_as_close_to_fp32(fp32[:, :5], want[:, :5], fp32)  # another shape


ZOO = [({"arch": "resnet-cifar", "depth": 8, "widths": [8, 8, 16, 16]}), ({"arch": "wrn", "depth": 10, "widen": 1}),
       ({"arch": "vgg", "depth": "8"}), ({"arch": "mobilenetv2", "width_mult": 0.25, "expand": 2}),
       ({"arch": "shufflenetv1"}), ({"arch": "shufflenetv2", "size": "0.5"})]


@pytest.mark.parametrize("spec", ZOO, ids=[s["arch"] for s in ZOO])
def test_static_int8_file_is_smaller_than_fp32_for_every_zoo_model(tmp_path, spec):
    torch.manual_seed(0)
    model = _randomise_bn(build_model(spec, (3, 8, 8), 4))
    x = torch.randn(16, 3, 8, 8)
    fp32 = export_onnx(model, x[:2], tmp_path / "m.onnx", x, exporter="torchscript")
    assert fp32["ok"], fp32
    q = quantize_static_qdq(fp32["path"], tmp_path / "q.onnx", x.numpy(), seed=0)
    assert q["ok"], q
    assert q["bytes"] < fp32["bytes"], (q["bytes"], fp32["bytes"])
    assert _ort(q["path"], x.numpy()).shape == (16, 4)


def test_measure_run_deploys_static_by_default_and_auto_measures_both(tmp_path):
    data = load_data({"name": "digits"})
    torch.manual_seed(0)
    model = _randomise_bn(build_model("cnn-small", data.info.input_shape, data.info.num_classes))
    out = measure_run(model, data, tmp_path / "a", {"seed": 5}, settings=FAST)
    i8 = out["int8"]
    assert i8["ok"] and i8["variant"] == "static" and i8["calibration"]["seed"] == 5 and i8["calibration"]["samples"] == 128
    assert i8["path"] == str(tmp_path / "a" / paths.INT8) and out["size"]["int8_bytes"] == i8["bytes"]
    assert set(out["int8_variants"]) == {"static"} and out["latency"]["onnx_int8"]["median_ms"] > 0
    for k in ("accuracy", "fp32_accuracy", "accuracy_drop", "agreement_with_fp32"):
        assert 0 <= abs(i8[k]) <= 1
    assert out["latency"]["onnx_int8_batch"]["batch"] == 16
    auto = measure_run(model, data, tmp_path / "b", {"seed": 5}, settings={**FAST, "int8_mode": "auto"})
    v = auto["int8_variants"]
    assert set(v) == {"static", "dynamic"} and all(x["ok"] for x in v.values())
    assert auto["int8"]["variant"] in v and auto["int8"]["chosen_by"].startswith("auto:")
    other = "dynamic" if auto["int8"]["variant"] == "static" else "static"
    assert (tmp_path / "b" / paths.INT8).is_file() and (tmp_path / "b" / paths.int8_variant(other)).is_file()
    dyn = measure_run(model, data, tmp_path / "c", {"seed": 5}, settings={**FAST, "int8_mode": "dynamic"})
    assert dyn["int8"]["variant"] == "dynamic" and "calibration" not in dyn["int8"]


# ------------------------------------------------------------------ the exporter
def test_dynamo_export_is_reused_per_architecture_checked_and_falls_back_with_its_reason(tmp_path, monkeypatch):
    torch.manual_seed(0)
    first = _randomise_bn(build_model("cnn-small", (1, 8, 8), 10))
    second = _randomise_bn(build_model("cnn-small", (1, 8, 8), 10))
    for p in second.parameters():
        p.data.mul_(-1.5)  # other weights, same architecture
    x = torch.randn(16, 1, 8, 8)
    a = export_onnx(first, x[:2], tmp_path / "a.onnx", x)
    assert a["ok"] and a["exporter"] == "dynamo" and a["graph"] == "exported" and "not_reused" not in a
    b = export_onnx(second, x[:2], tmp_path / "b.onnx", x)
    assert b["ok"] and b["verified"] and b["graph"] == "reused"  # weights swapped in, still checked against PyTorch
    assert np.allclose(_ort(b["path"], x.numpy()), second(x).detach().numpy(), atol=1e-4)
    # no debugging annotations (stack traces with this machine's paths) in the file
    assert not any(n.metadata_props for n in onnx.load(a["path"]).graph.node)

    def broken(*args, **kwargs):
        raise RuntimeError("dynamo says no")

    monkeypatch.setattr(export_mod, "_dynamo_export", broken)
    third = build_model("mlp-small", (64,), 10).eval()
    y = torch.randn(8, 64)
    c = export_onnx(third, y[:2], tmp_path / "c.onnx", y)
    assert c["ok"] and c["exporter"] == "torchscript"
    assert any("dynamo exporter: RuntimeError: dynamo says no" in r for r in c["fallback_from"])


def test_batch_norm_folds_and_unfolds_exactly():
    torch.manual_seed(0)
    model = _randomise_bn(build_model("resnet-8", (1, 8, 8), 10))
    x = torch.randn(4, 1, 8, 8)
    folded, pairs = fold_batchnorm(model)
    assert pairs and torch.allclose(folded(x), model(x), atol=1e-5)
    back = unfold_batchnorm(model, pairs, float_state(folded))
    assert torch.allclose(back(x), model(x), atol=1e-5)
    assert back.state_dict().keys() == model.state_dict().keys()


# ------------------------------------------------------------------ QAD
def _outlier_student(data):
    """An MLP whose most active hidden unit is scaled up 300x (its outgoing weights down 300x): the
    same fp32 function, but one per-tensor uint8 range for all hidden units, stretched by the outlier."""
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "hidden": [64]}, data.info.input_shape, data.info.num_classes)
    train_model(model, data, train_settings({"epochs": 15, "lr": 0.003, "threads": 1}), make_method("scratch"))
    model.eval()
    with torch.no_grad():
        hidden = model.stages[0](data.x_train)
        unit = hidden.mean(0).argmax()
        model.stages[0][1].weight[unit] *= 300
        model.stages[0][1].bias[unit] *= 300
        model.head.weight[:, unit] /= 300
    return model


def test_qad_recovers_what_ptq_loses_on_outlier_activations_and_deploys_what_it_simulates(tmp_path):
    data = load_data({"name": "digits"})
    model = _outlier_student(data)
    before = copy.deepcopy(model.state_dict())
    y = data.y_test.numpy()
    fp32_acc = (predict_logits(model, data.x_test).argmax(1).numpy() == y).mean()
    student = prepare(model, data, tmp_path, measure_settings(FAST), seed=0)
    onnx.save(student.sim.proto, str(tmp_path / "ptq.onnx"))
    ptq_acc = (_ort(tmp_path / "ptq.onnx", data.x_test.numpy()).argmax(1) == y).mean()
    sim_ptq = predict_logits(student.sim, data.x_test).argmax(1).numpy()
    assert (sim_ptq == _ort(tmp_path / "ptq.onnx", data.x_test.numpy()).argmax(1)).mean() >= 0.99  # simulated == ORT
    assert fp32_acc - ptq_acc > 0.03  # the case is built to lose under PTQ
    qad = make_method("qad", kd_from="start", temperature=4.0, alpha=0.9)
    train_model(student.sim, data, train_settings({"epochs": 5, "lr": 3e-4, "threads": 1}), qad,
                teacher=student.start, teacher_logits=predict_logits(student.start, data.x_train))
    student.sim.write(tmp_path / "qad.onnx")
    deployed = _ort(tmp_path / "qad.onnx", data.x_test.numpy()).argmax(1)
    qad_acc = (deployed == y).mean()
    assert qad_acc > ptq_acc + 0.03 and qad_acc > fp32_acc - 0.02, (fp32_acc, ptq_acc, qad_acc)
    assert (deployed == predict_logits(student.sim, data.x_test).argmax(1).numpy()).mean() >= 0.99
    # the fp32 model it started from is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_qad_trains_the_graph_static_int8_deploys_and_deploys_it(tmp_path, monkeypatch):
    """QAD simulates the graph static int8 deploys, with its speed edits (the first convolution in
    float, its weights int8 in the file; float logits; on digits' 4 x 4 maps the pooling folded into
    the classifier): the simulation runs it as ONNX Runtime does, trains the float convolution's
    weights and bias and the folded classifier, and writes them back, so QAD's file runs in the
    same kernels as the static file and computes what was trained."""
    from distill_core.measure import int8 as int8_mod

    # made whatever this CPU's int8 kernels give (their check has its own test above)
    monkeypatch.setattr(int8_mod, "_about_as_close_to_fp32", lambda got, want, fp32: True)
    data = load_data({"name": "digits"})
    torch.manual_seed(0)
    model = _randomise_bn(build_model("cnn-small", data.info.input_shape, data.info.num_classes))
    before = copy.deepcopy(model.state_dict())
    x = data.x_test.numpy()
    student = prepare(model, data, tmp_path, measure_settings(FAST), seed=0)
    assert student.edits == [FLOAT_FIRST, FLOAT_OUTPUT, POOLING_IN_CLASSIFIER]
    onnx.save(student.sim.proto, str(tmp_path / "ptq.onnx"))
    ptq = _ort(tmp_path / "ptq.onnx", x)
    sim = predict_logits(student.sim, data.x_test).numpy()
    assert (sim.argmax(1) == ptq.argmax(1)).mean() >= 0.99  # simulated == ONNX Runtime, to int8 kernel rounding
    start = {k: v.detach().clone() for k, v in student.sim.weights.items()}
    train_model(student.sim, data, train_settings({"epochs": 2, "lr": 3e-3, "threads": 1}), make_method("qad", kd_from="start"),
                teacher=student.start, teacher_logits=predict_logits(student.start, data.x_train))
    first = student.sim.proto.graph.node
    conv = next(n for n in first if n.op_type == "Conv")
    assert conv.input[0] == student.sim.input_name  # the first convolution reads the float input ...
    gemm = next(n for n in first if n.op_type == "Gemm")
    moved = {k for k, v in student.sim.weights.items() if not torch.equal(v.detach(), start[k])}
    assert {student.sim._weight_of[conv.input[1]], student.sim._float_bias_of[conv.input[2]],  # ... and trains,
            student.sim._weight_of[gemm.input[1]]} <= moved  # as does the classifier reading the whole map
    student.sim.write(tmp_path / "qad.raw.onnx")
    deployable(tmp_path / "qad.raw.onnx", tmp_path / "qad.onnx", student.calibration[:128])
    static = quantize_static_qdq(export_onnx(model, data.x_test[:2], tmp_path / "m.onnx", data.x_test[:64],
                                             exporter="torchscript")["path"], tmp_path / "s.onnx", student.calibration, seed=0)
    kernels = _kernels(tmp_path / "qad.onnx")
    assert kernels[0] == "Conv" and "QLinearConv" in kernels and kernels[-1] == "QGemm", kernels  # float first, then int8
    assert kernels == _kernels(tmp_path / "s.onnx") and "QLinearGlobalAveragePool" not in kernels  # static's kernels
    deployed = _ort(tmp_path / "qad.onnx", x)
    sim = predict_logits(student.sim, data.x_test).numpy()
    assert (deployed.argmax(1) == sim.argmax(1)).mean() >= 0.99
    assert np.abs(deployed - sim).max() <= 1e-3 * np.abs(sim).max(), np.abs(deployed - sim).max()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the fp32 start untouched


@pytest.mark.parametrize("spec", ZOO[:4], ids=[s["arch"] for s in ZOO[:4]])
def test_qad_simulates_the_zoo_models_int8_graphs_as_onnx_runtime_runs_them(tmp_path, spec):
    """Residual adds, the pooling folded into the classifier, a pre-activation network's batch
    norms (their scale and shift stored int8 / int32 per tensor: run as the file decodes them),
    depthwise convolutions: the simulation of each zoo model's int8 graph gives ONNX Runtime's
    outputs, before and after `write`."""
    torch.manual_seed(0)
    model = _randomise_bn(build_model(spec, (3, 8, 8), 4))
    x = torch.randn(320, 3, 8, 8)
    data = SimpleNamespace(x_train=x, x_test=x[:256])
    student = prepare(model, data, tmp_path, measure_settings({**FAST, "calibration_samples": 64}), seed=0)
    for name in ("ptq.onnx", "written.onnx"):
        if name == "ptq.onnx":
            onnx.save(student.sim.proto, str(tmp_path / name))
        else:
            student.sim.write(tmp_path / name)
        ort, sim = _ort(tmp_path / name, x.numpy()), predict_logits(student.sim, x).numpy()
        # the same outputs but where an int8 kernel rounds a value the other way (a few samples)
        assert np.median(np.abs(ort - sim)) <= 1e-4 * np.abs(sim).max(), (name, np.median(np.abs(ort - sim)))
        assert (ort.argmax(1) == sim.argmax(1)).mean() >= 0.99


def test_qad_run_starts_from_the_fp32_student_run_and_never_changes_it(home):
    spec = ExperimentSpec.from_dict(dict(
        dataset="digits", teacher={"arch": "mlp", "hidden": [32]}, students=[{"arch": "mlp", "hidden": [16]}],
        methods=[{"name": "qad", "start": "kd", "epochs": 2}], temperatures=[3.0], alphas=[0.7], seeds=[0],
        train={"epochs": 3, "batch_size": 64, "lr": 0.003, "threads": 1}, baseline=False))
    runs = [replace(r, measure=FAST) for r in expand(spec)]
    teacher, start, qad = runs
    assert start.method == {"name": "kd", "temperature": 3.0, "alpha": 0.7} and qad.start.hash == start.hash
    assert qad.depends_on == start.hash and start.depends_on == teacher.hash
    assert qad.train["epochs"] == 2 and qad.train["lr"] == pytest.approx(0.0003) and start.train["epochs"] == 3
    for r in (teacher, start):
        run_one(r, home)
    weights = paths.run_folder(home, start.hash) / paths.WEIGHTS
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    res = run_one(qad, home)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == sha  # QAD never changes the fp32 student
    m = res["measure"]
    assert m["int8"]["variant"] == "qad" and m["int8"]["ok"] and set(m["int8_variants"]) == {"qad", "static", "dynamic"}
    assert m["int8"]["agreement_with_simulation"] >= 0.99 and "ptq_accuracy" in m["int8"]
    assert res["qad"]["start"] == start.hash and res["metrics"]["accuracy"] == res["qad"]["qad_simulated_accuracy"]
    start_res = json.loads((paths.run_folder(home, start.hash) / paths.RESULT).read_text())
    assert res["qad"]["start_accuracy"] == start_res["metrics"]["accuracy"]
    assert res["qad"]["fp32_weights"] == "fine-tuned by QAD"  # its fp32 weights, as the architecture loads them
    assert (paths.run_folder(home, qad.hash) / paths.WEIGHTS).is_file()


def test_qad_without_its_start_run_is_a_clear_error(home):
    spec = ExperimentSpec.from_dict(dict(
        dataset="digits", teacher={"arch": "mlp", "hidden": [16]}, students=[{"arch": "mlp", "hidden": [8]}],
        methods=[{"name": "qad", "start": "scratch"}], seeds=[0], train={"epochs": 1, "threads": 1}, baseline=False))
    teacher, start, qad = [replace(r, measure=FAST) for r in expand(spec)]
    run_one(teacher, home)
    with pytest.raises(Exception, match="must finish first"):
        run_one(qad, home)
