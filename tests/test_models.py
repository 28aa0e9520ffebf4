import pytest
import torch

from distill_core.errors import ConfigError, ModelError
from distill_core.models import (ARCHITECTURES, NAMED_SIZES, build_model, count_params, load_weights,
                                 normalise_spec, save_weights)

SHAPES = {"vector": (5,), "signal": (1, 40), "image": (1, 12, 12), "rgb": (3, 16, 16)}


def cases():
    for entry in ARCHITECTURES:
        if entry.extra.get("estimator"):  # scikit-learn teachers are not networks (tests/test_teachers.py)
            continue
        for kind, shape in SHAPES.items():
            if ("image" if kind == "rgb" else kind) in entry.extra["kinds"]:
                yield entry.name, shape


@pytest.mark.parametrize("arch,shape", list(cases()))
def test_every_architecture_on_every_input_it_supports(arch, shape):
    model = build_model(arch, shape, 7)
    x = torch.randn(3, *shape)
    out = model.forward_all(x)
    assert out.logits.shape == (3, 7)
    assert out.embedding.shape == (3, model.embedding_dim)
    assert torch.allclose(model(x), out.logits, atol=1e-6)  # forward and forward_all agree
    for f in out.features:
        assert f.shape[0] == 3
    if model.has_feature_maps:
        assert out.features and all(f.dim() == len(shape) + 1 for f in out.features)
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ["cnn", "resnet", "mobile"])
def test_convolutional_models_refuse_flat_vectors_with_a_clear_message(arch):
    with pytest.raises(ModelError, match="flat vectors.*mlp or linear"):
        build_model(arch, (2,), 3)
    with pytest.raises(ModelError, match="not vector inputs"):
        build_model(arch, (1, 8, 8), 3, kind="vector")


def test_hinton_named_sizes():
    teacher = build_model("hinton-teacher", (1, 28, 28), 10)
    student = build_model("hinton-student", (1, 28, 28), 10)
    tiny = build_model("hinton-tiny", (1, 28, 28), 10)
    assert count_params(teacher) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    assert count_params(student) == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10
    assert count_params(tiny) == 784 * 30 + 30 + 30 * 30 + 30 + 30 * 10 + 10
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in teacher.modules())
    assert set(NAMED_SIZES) >= {"hinton-teacher", "hinton-student", "hinton-tiny"}


def test_bad_specs_are_config_errors():
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        normalise_spec("nope")
    with pytest.raises(ConfigError, match="unknown setting.*widht"):
        normalise_spec({"arch": "mlp", "widht": 3})
    with pytest.raises(ConfigError, match="dropout must be <= 0.9"):
        normalise_spec({"arch": "mlp", "dropout": 2})
    assert normalise_spec({"arch": "mlp", "hidden": "64-32"})["hidden"] == [64, 32]


def test_weights_round_trip_safetensors_and_pt(tmp_path):
    model = build_model("cnn-small", (1, 8, 8), 10)
    path = save_weights(model, tmp_path / "w.safetensors")
    other = load_weights(build_model("cnn-small", (1, 8, 8), 10), path).eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model.eval()(x), other(x))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    third = load_weights(build_model("cnn-small", (1, 8, 8), 10), tmp_path / "w.pt").eval()
    assert torch.equal(model(x), third(x))


def test_mismatched_corrupt_and_pickled_checkpoints_are_refused(tmp_path):
    path = save_weights(build_model("cnn-small", (1, 8, 8), 10), tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match="do not fit this architecture"):
        load_weights(build_model("cnn-large", (1, 8, 8), 10), path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="cannot read weights"):
        load_weights(build_model("cnn-small", (1, 8, 8), 10), bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_weights(build_model("cnn-small", (1, 8, 8), 10), tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="no such weight file"):
        load_weights(build_model("cnn-small", (1, 8, 8), 10), tmp_path / "missing.pt")
