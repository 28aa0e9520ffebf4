"""The CIFAR recipe and the device fast path: augmentation on tensors (deterministic per seed),
the multistep schedule, the recipe's settings, uint8 inputs normalised per batch, mixed precision
(bf16 autocast on the CPU), channels-last, torch.compile, and what a run records of them."""
from __future__ import annotations

import pytest
import torch

from distill_core.config import ExperimentSpec, expand
from distill_core.data.base import DataBundle, DatasetInfo, RawImages
from distill_core.engine import fastpath
from distill_core.engine.augment import crop_flip
from distill_core.recipes import apply_recipe, milestones, multistep_lr
from distill_core.engine.train import train_model
from distill_core.train_params import train_settings
from distill_core.errors import ConfigError
from distill_core.methods import make_method
from distill_core.models import build_model


def cifar_like(n_train: int, n_val: int = 32, k: int = 100, size: int = 32, seed: int = 0) -> DataBundle:
    """A bundle as the CIFAR loader makes it: uint8 images in `raw`, their normalised floats in x."""
    g = torch.Generator().manual_seed(seed)
    u8 = {s: torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
          for s, n in (("train", n_train), ("val", n_val), ("test", n_val))}
    raw = RawImages(u8["train"], u8["val"], u8["test"], torch.tensor([125.0, 123.0, 114.0]), torch.tensor([63.0, 62.0, 66.0]))
    ys = [torch.randint(0, k, (len(u8[s]),), generator=g) for s in ("train", "val", "test")]
    info = DatasetInfo("cifar-like", (3, size, size), k, [str(i) for i in range(k)], "image", augment="crop-flip")
    return DataBundle(info, raw.normalise(u8["train"]), ys[0], raw.normalise(u8["val"]), ys[1],
                      raw.normalise(u8["test"]), ys[2], raw=raw)


def test_crop_flip_is_a_padded_crop_or_its_mirror_and_deterministic_per_seed():
    x = torch.randint(1, 256, (16, 3, 8, 8), dtype=torch.uint8)  # no zero pixel: padding shows as 0
    a = crop_flip(x, 2, torch.Generator().manual_seed(7))
    b = crop_flip(x, 2, torch.Generator().manual_seed(7))
    c = crop_flip(x, 2, torch.Generator().manual_seed(8))
    assert a.dtype == torch.uint8 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for i in range(len(x)):
        windows = {(f, dy, dx) for f in (0, 1) for dy in range(5) for dx in range(5)
                   if torch.equal(a[i], (padded[i].flip(2) if f else padded[i])[:, dy:dy + 8, dx:dx + 8])}
        assert windows, i  # every output is one window of the zero-padded image or of its mirror
        flips += min(windows)[0]
    assert 2 <= flips <= 14  # about half are mirrored
    assert (a == 0).any()  # some crops reach into the (black) padding


def test_multistep_schedule_and_its_scaling():
    assert milestones(240) == [150, 180, 210] and milestones(24) == [15, 18, 21]
    lrs = {e: multistep_lr(0.05, e, 240) for e in (1, 150, 151, 180, 181, 211, 240)}
    assert lrs[1] == lrs[150] == 0.05
    assert lrs[151] == pytest.approx(0.005) and lrs[181] == pytest.approx(5e-4) and lrs[240] == pytest.approx(5e-5)


def test_recipe_sets_the_papers_settings_per_architecture():
    base = train_settings({"recipe": "cifar", "lr": 0.123, "optimizer": "adam", "epochs": 24})
    r = apply_recipe(base, "resnet8x4", "image")
    assert {k: r[k] for k in ("optimizer", "momentum", "weight_decay", "schedule", "augment", "lr", "epochs")} == \
        {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "schedule": "multistep", "augment": True,
         "lr": 0.05, "epochs": 24}
    for small in ("mobilenetv2", "shufflenetv1", "shufflenetv2"):
        assert apply_recipe(base, small, "image")["lr"] == 0.01
    plain = train_settings({"lr": 0.123})
    assert apply_recipe(plain, "resnet8x4", "image") == plain
    with pytest.raises(ConfigError, match="recipe cifar is for images.*vector inputs"):
        apply_recipe(base, "mlp-small", "vector")
    # expand applies it per model: the run configs show what each one trains with
    spec = ExperimentSpec(dataset="digits", teacher="resnet8", students=["mobilenetv2", "wrn-16-1"],
                          methods=["kd"], train={"recipe": "cifar", "epochs": 2})
    lr = {(r.role, r.model["arch"]): r.train["lr"] for r in expand(spec)}
    assert lr == {("teacher", "resnet-cifar"): 0.05, ("student", "mobilenetv2"): 0.01, ("student", "wrn"): 0.05}


def test_uint8_inputs_normalised_per_batch_equal_the_float_inputs():
    data = cifar_like(40, k=10)
    fast = fastpath.DeviceInputs(data, torch.device("cpu"), channels_last=False)
    slow = fastpath.DeviceInputs(DataBundle(**{**data.__dict__, "raw": None}), torch.device("cpu"), channels_last=False)
    idx = torch.tensor([3, 1, 4, 1, 5, 9])
    assert fast.x_train.dtype == torch.uint8 and slow.x_train.dtype == torch.float32
    assert torch.equal(fast.batch(idx, None, torch.Generator()), slow.batch(idx, None, torch.Generator()))
    aug = fast.batch(idx, "crop-flip", torch.Generator().manual_seed(0))
    black = data.raw.normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).flatten()
    corners = aug[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]  # crops into the padding are black, not the mean colour
    assert any(torch.equal(corners[i, :, j], black) for i in range(len(idx)) for j in range(4))
    cl = fastpath.DeviceInputs(data, torch.device("cpu"), channels_last=True).batch(idx, None, torch.Generator())
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, slow.batch(idx, None, torch.Generator()))


# bf16 on 64 8x8 images (4 batches of 16): a CPU without bf16 instructions (an AVX2 EPYC)
# emulates it, and 256 32x32 images took over five minutes there.
@pytest.mark.parametrize("precision,images,size", [("fp32", 256, 32), ("bf16", 64, 8)])
def test_one_epoch_kd_resnet32x4_to_resnet8x4_on_256_images_with_augmentation(precision, images, size):
    data = cifar_like(images, size=size)
    torch.manual_seed(0)
    teacher, student = build_model("resnet32x4", (3, size, size), 100), build_model("resnet8x4", (3, size, size), 100)
    settings = apply_recipe(train_settings({"recipe": "cifar", "epochs": 1, "batch_size": images // 4,
                                            "precision": precision, "threads": 1}), "resnet8x4", "image")
    before = [p.detach().clone() for p in student.parameters()]
    res = train_model(student, data, settings, make_method("kd"), teacher=teacher, seed=0)
    assert res.steps == 4 and res.teacher_forward_per_batch and res.teacher_seconds > 0
    assert res.accel == {"device": "cpu", "precision": precision, "channels_last": True, "compile": False,
                         "teacher_dtype": precision, "data": "uint8 (normalised per batch)", "grad_scaler": False,
                         "tf32": None}
    row = res.history[0]
    assert row["lr"] == 0.05 and all(torch.isfinite(torch.tensor(v)) for v in row.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))  # it learned something
    assert all(p.dtype == torch.float32 for p in student.parameters())  # autocast leaves the weights in fp32
    assert all(p.dtype == torch.float32 for p in teacher.parameters())  # the half-precision teacher was a copy


def test_cached_teacher_logits_mean_no_teacher_forward():
    data = cifar_like(64, k=10, size=8)
    student = build_model("resnet8", (3, 8, 8), 10)
    res = train_model(student, data, train_settings({"epochs": 1, "threads": 1}), make_method("kd"),
                      teacher_logits=torch.randn(64, 10), seed=0)
    assert not res.teacher_forward_per_batch and res.teacher_seconds is None


def test_channels_last_and_compile_run_feature_methods_on_the_cpu(monkeypatch):
    monkeypatch.setattr(fastpath, "COMPILE_BACKEND", "eager")  # dynamo traces for real; no C++ build
    data = cifar_like(32, k=10, size=8)
    teacher, student = build_model("resnet8", (3, 8, 8), 10), build_model("wrn-16-1", (3, 8, 8), 10)
    settings = train_settings({"epochs": 1, "batch_size": 16, "augment": True, "channels_last": "on", "compile": True,
                               "threads": 1})
    from torch._dynamo.utils import counters

    counters.clear()
    res = train_model(student, data, settings, make_method("at"), teacher=teacher, seed=0)
    assert res.accel["channels_last"] and res.accel["compile"] and res.steps == 2
    assert counters["frames"]["ok"] >= 2  # the student's and the teacher's forward passes were compiled
    assert all(p.is_contiguous() for p in student.parameters())  # back to the default layout for exports


def test_fp16_needs_cuda():
    data = cifar_like(8, k=10, size=8)
    with pytest.raises(RuntimeError, match="fp16 needs a CUDA GPU"):
        train_model(build_model("resnet8", (3, 8, 8), 10), data, train_settings({"precision": "fp16", "epochs": 1}),
                    make_method("scratch"), seed=0)


def test_auto_trains_2d_cnns_channels_last_on_the_cpu_and_learns_what_nchw_learns():
    """auto: channels-last for 2-D convolutional models on the CPU too (faster there:
    bench/bench_layout.py); an MLP keeps its layout, and "off" keeps NCHW. Only the order of
    float sums differs: the same seed trains to the same curve within rounding."""
    data = cifar_like(64, k=10, size=8)
    runs = {}
    for arch, layout in (("resnet8", "auto"), ("resnet8", "off"), ({"arch": "mlp", "hidden": [16]}, "auto")):
        torch.manual_seed(0)
        model = build_model(arch, (3, 8, 8), 10)
        res = train_model(model, data, train_settings({"epochs": 2, "batch_size": 16, "threads": 1, "channels_last": layout}),
                          make_method("scratch"), seed=0)
        assert all(p.is_contiguous() for p in model.parameters())  # back to the default layout for exports
        runs[(str(arch), layout)] = res
    assert runs[("resnet8", "auto")].accel["channels_last"] and not runs[("resnet8", "off")].accel["channels_last"]
    assert not runs[(str({"arch": "mlp", "hidden": [16]}), "auto")].accel["channels_last"]
    last, nchw = runs[("resnet8", "auto")].history, runs[("resnet8", "off")].history
    assert [r["loss"] for r in last] == pytest.approx([r["loss"] for r in nchw], rel=1e-4)


def test_every_2d_cnn_of_the_lab_computes_the_same_channels_last():
    """auto trains every 2-D CNN channels-last on the CPU: each one (the papers' zoo and the lab's
    own) gives the same logits and feature maps in that layout, within float rounding, and
    trains through it (no view that needs the default layout)."""
    from distill_core.models.zoo import SIZES

    cases = [(n, (3, 32, 32)) for n in SIZES] + [({"arch": a}, (1, 28, 28)) for a in ("cnn", "resnet", "mobile")]
    for name, shape in cases:
        torch.manual_seed(0)
        model = build_model(name, shape, 10).eval()
        x = torch.randn(2, *shape)
        with torch.no_grad():
            ref = model.forward_all(x)
            model.to(memory_format=torch.channels_last)
            got = model.forward_all(x.contiguous(memory_format=torch.channels_last))
        for a, b in zip([ref.logits, *ref.features], [got.logits, *got.features]):
            assert ((a - b).abs().max() / a.abs().max()).item() < 1e-5, name
        model.train()
        out = model.forward_all(x.contiguous(memory_format=torch.channels_last))
        (out.logits.sum() + sum(f.sum() for f in out.features)).backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), name


def test_predict_logits_runs_a_2d_cnn_channels_last_and_hands_it_back_in_the_default_layout():
    from distill_core.evaluate import predict_logits

    torch.manual_seed(0)
    model = build_model("resnet8", (3, 8, 8), 10)
    x = torch.randn(20, 3, 8, 8)
    with torch.no_grad():
        ref = model.eval()(x)
    calls = []
    model.register_forward_pre_hook(lambda m, args: calls.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    got = predict_logits(model, x, batch_size=8)
    assert calls == [True, True, True]  # three batches, each channels-last
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert all(p.is_contiguous() for p in model.parameters())  # exports and checkpoints expect it
    mlp = build_model({"arch": "mlp", "hidden": [8]}, (3, 8, 8), 10)
    assert predict_logits(mlp, x).shape == (20, 10)
