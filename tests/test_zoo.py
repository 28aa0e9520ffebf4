"""The CIFAR model zoo: parameter counts equal to the reference implementations, the shape every
model here has (logits, embedding, feature maps), and feature methods pairing their stages."""
from __future__ import annotations

import pytest
import torch

from distill_core.config import ExperimentSpec, expand
from distill_core.errors import ModelError
from distill_core.methods import make_method
from distill_core.methods.at import pair_stages
from distill_core.models import ARCHITECTURES, NAMED_SIZES, build_model, check_input_kind, count_params, describe_spec
from distill_core.models.zoo import SIZES

# Parameter counts of HobbitLong/RepDistiller's models/ (commit b84f547), built with
# model_dict[name](num_classes=100) and counted with sum(p.numel() for p in model.parameters()).
REFERENCE_100 = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756, "resnet44": 667_188,
    "resnet56": 861_620, "resnet110": 1_736_564, "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    "wrn-16-1": 180_916, "wrn-16-2": 703_284, "wrn-40-1": 569_780, "wrn-40-2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436, "vgg19": 20_086_692,
    "mobilenetv2": 812_836, "shufflenetv1": 949_258, "shufflenetv2": 1_355_528,
}
# The same at 10 classes (CIFAR-10), for the models of the CIFAR-10 preset and a few others.
REFERENCE_10 = {"resnet20": 272_474, "resnet56": 855_770, "resnet8x4": 1_210_410, "resnet32x4": 7_410_730,
                "wrn-40-2": 2_243_546, "mobilenetv2": 697_546, "shufflenetv2": 1_263_278}


def test_the_zoo_is_complete():
    assert set(SIZES) == set(REFERENCE_100) and set(SIZES) <= set(NAMED_SIZES)


@pytest.mark.parametrize("name", list(REFERENCE_100))
def test_parameter_count_and_forward_of_each_zoo_model(name):
    model = build_model(name, (3, 32, 32), 100, kind="image")
    assert count_params(model) == REFERENCE_100[name]
    if name in REFERENCE_10:
        assert count_params(build_model(name, (3, 32, 32), 10)) == REFERENCE_10[name]
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    out = model.forward_all(x)
    assert out.logits.shape == (2, 100) and out.embedding.shape == (2, model.embedding_dim)
    assert model.has_feature_maps and len(out.features) >= 3
    assert all(f.dim() == 4 and f.shape[0] == 2 for f in out.features)
    sizes = [f.shape[-1] for f in out.features]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 32  # the stages shrink the map
    assert torch.allclose(model(x), out.logits, atol=1e-5)
    assert describe_spec(name) == (name if name != "mobilenetv2" else "mobilenetv2 x0.5")


def test_papers_feature_taps_resnet32x4_to_resnet8x4():
    """The stages are the references' taps: 32x32, 16x16 and 8x8 maps of 64, 128 and 256 channels."""
    t, s = build_model("resnet32x4", (3, 32, 32), 100), build_model("resnet8x4", (3, 32, 32), 100)
    x = torch.randn(2, 3, 32, 32)
    ft, fs = t.forward_all(x).features, s.forward_all(x).features
    assert [tuple(f.shape[1:]) for f in ft] == [tuple(f.shape[1:]) for f in fs] == [(64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert pair_stages(len(fs), len(ft)) == [(0, 0), (1, 1), (2, 2)]  # AT: each stage with its own, as in CRD's AT
    fit = make_method("fitnets")
    fit.setup(s, t, x)
    assert fit.size == (16, 16)  # FitNets' hint: the middle stage, at the same size in both


def test_feature_methods_pair_across_families():
    spec = ExperimentSpec(dataset="digits", dataset_knobs={}, teacher="resnet8", students=["vgg8", "shufflenetv2"],
                          methods=[{"name": "at"}, {"name": "fitnets"}, {"name": "kd"}], train={"epochs": 1})
    runs = expand(spec)
    assert {r.method_name for r in runs} == {"scratch", "at", "fitnets", "kd"}


def test_zoo_needs_images_and_valid_sizes():
    with pytest.raises(ModelError, match="works on image inputs, not vector"):
        check_input_kind("resnet32x4", "vector")
    with pytest.raises(ModelError, match="2-D convolutional network for images"):
        build_model("wrn-16-2", (1, 40), 10)
    with pytest.raises(ModelError, match="depth must be 6n \\+ 2"):
        build_model({"arch": "resnet-cifar", "depth": 21}, (3, 32, 32), 10)
    with pytest.raises(ModelError, match="depth must be 6n \\+ 4"):
        build_model({"arch": "wrn", "depth": 17}, (3, 32, 32), 10)
    assert ARCHITECTURES.get("mobilenetv2").extra["recipe_lr"] == 0.01
    # other image sizes and channel counts work (the references' fixed pooling is adaptive here)
    assert build_model("resnet8x4", (1, 28, 28), 10)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
