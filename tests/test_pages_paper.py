"""The New-experiment and Learn pages with the CIFAR data sets, the zoo and the papers' presets:
entries from the registries simply appear, a missing CIFAR file is a message, not a traceback."""
from __future__ import annotations

import pytest

from cifar_files import write_archive
from test_pages import button, errors, no_autostart, open_page, texts


@pytest.fixture
def empty(home):
    no_autostart(home)
    return home


def test_cifar_preset_in_the_form_needs_the_file_then_expands(empty, tmp_path):
    at = open_page("pages/new_experiment.py")
    at.selectbox(key="ne_preset").set_value("cifar100-resnet32x4-resnet8x4")
    button(at, "ne_load_preset").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="ne_dataset").value == "cifar100"
    assert any("no file given: set path to your cifar-100-python.tar.gz" in e for e in errors(at))
    assert at.selectbox(key="ne_t_choice").value == "resnet32x4" and at.selectbox(key="ne_s0_choice").value == "resnet8x4"
    assert set(at.multiselect(key="ne_methods").value) == {"kd", "dkd", "dist", "logit-std", "at", "fitnets"}
    archive = write_archive(tmp_path, "cifar100", "python", n_train=400, n_test=100)
    at.text_input(key="ne_ds_cifar100__path").set_value(str(archive)).run()
    at.number_input(key="ne_ds_cifar100__subset").set_value(2).run()
    assert not at.exception and not errors(at), errors(at)
    assert "image inputs of shape (3, 32, 32), 100 classes" in texts(at)
    assert "This launches 8 runs" in texts(at)  # teacher, six methods, the scratch baseline


def test_zoo_models_offered_for_images_refused_for_vectors(empty):
    at = open_page("pages/new_experiment.py")
    at.selectbox(key="ne_s0_choice").set_value("wrn-16-2").run()  # digits: 8x8 grey images
    assert not at.exception and not errors(at), errors(at)
    at.selectbox(key="ne_dataset").set_value("moons").run()  # 2-D points: the student goes back to the default
    assert not at.exception and at.selectbox(key="ne_s0_choice").value == "mlp-small"
    at.selectbox(key="ne_s0_choice").set_value("resnet8x4").run()
    assert any("resnet-cifar works on image inputs, not vector inputs" in e for e in errors(at))


def test_learn_page_lists_the_cifar_presets_and_asks_for_the_file(empty):
    at = open_page("pages/learn.py")
    run = button(at, "preset-cifar100-resnet32x4-resnet8x4")
    assert run is not None and button(at, "preset-cifar10-resnet56-resnet20") is not None
    run.click().run()
    assert not at.exception
    assert any("no file given: set path to your cifar-100-python.tar.gz" in e for e in errors(at))
