"""What moved from the pages into the library, and the typed run: sweeps typed on a page, the
dashboard's settings, the launch estimate, scratch-baseline pairing, uploads, RunConfig, the
teacher kinds, and the knobs methods declare."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from distill_core import analysis, grids, paths, settings as lab_settings, teachers
from distill_core.config import SEED, ExperimentSpec, expand, incompatibilities
from distill_core.errors import ConfigError, DataError, ModelError
from distill_core.estimates import calibration_pairs, launch_estimate, model_summary, spec_key
from distill_core.methods import ALPHA, METHODS, TEMPERATURE, Method
from distill_core.models import build_model, save_weights
from distill_core.registry import Param
from distill_core.run_config import RunConfig
from distill_core.uploads import save_upload

SPEC = dict(dataset="digits", teacher={"arch": "mlp", "hidden": [32]}, students=[{"arch": "mlp", "hidden": [8]}],
            methods=["kd", "takd"], temperatures=[4.0], alphas=[0.9], seeds=[0], train={"epochs": 2, "threads": 1},
            transfer={"omit_class": 3})


# -- sweeps typed on a page ------------------------------------------------------------------------


def test_values_from_text_checked_by_their_param():
    assert grids.parse_values("2, 4;8  16", TEMPERATURE, "temperatures") == [2.0, 4.0, 8.0, 16.0]
    assert grids.parse_values("0, 1, 1", SEED, "seeds") == [0, 1]  # repeats dropped, order kept
    for text, message in [("", "temperatures: give at least one value"),
                          ("2, abc", "temperatures: 'abc' is not a number"),
                          ("0.01", "temperatures: 0.01 is outside [0.1, 100.0]")]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            grids.parse_values(text, TEMPERATURE, "temperatures")
    with pytest.raises(ConfigError, match="seeds: '1.5' is not a whole number"):
        grids.parse_values("1.5", SEED, "seeds")
    with pytest.raises(ConfigError, match=r"alphas: 1.5 is outside \[0.0, 1.0\]"):
        grids.parse_values("0.5, 1.5", ALPHA, "alphas")


def test_temperature_range_even_or_log_spaced():
    assert grids.value_range(1, 8, 4, True, TEMPERATURE, "temperatures") == [1.0, 2.0, 4.0, 8.0]
    assert grids.value_range(1, 4, 4, False, TEMPERATURE, "temperatures") == [1.0, 2.0, 3.0, 4.0]
    assert grids.value_range(2, 2, 1, True, TEMPERATURE, "temperatures") == [2.0]
    for args, message in [((1, 8, 0, True), "between 1 and 50 values"), ((1, 8, 51, False), "between 1 and 50 values"),
                          ((0, 8, 4, True), "must be above 0"), ((1, 500, 3, True), "500.0 is outside")]:
        with pytest.raises(ConfigError, match=message):
            grids.value_range(*args, TEMPERATURE, "temperatures")


# -- the dashboard's settings ------------------------------------------------------------------------


def test_settings_defaults_validation_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_COUNTRY", "deu")
    values, problem = lab_settings.load_settings(tmp_path)
    assert problem is None and values["country"] == "DEU" and values["autostart"] is True
    with pytest.raises(ConfigError, match="settings: country must be a 3-letter ISO code"):
        lab_settings.validate_settings({"country": "France"})
    with pytest.raises(ConfigError, match="settings: workers must be >= 1"):
        lab_settings.validate_settings({"workers": 0})
    saved = lab_settings.save_settings(tmp_path, {"country": "fra", "workers": 2})
    assert saved["country"] == "FRA" and json.loads((tmp_path / paths.SETTINGS).read_text())["workers"] == 2
    assert lab_settings.load_settings(tmp_path) == (saved, None)
    (tmp_path / paths.SETTINGS).write_text(json.dumps({"workers": 2, "retired_setting": 1}))
    assert lab_settings.load_settings(tmp_path)[0]["workers"] == 2  # settings this release does not know are left out
    (tmp_path / paths.SETTINGS).write_text("{broken")
    values, problem = lab_settings.load_settings(tmp_path)
    assert values == lab_settings.validate_settings({}) and "ignored" in problem and "default settings" in problem


def test_settings_reach_runs_and_pools_as_arguments():
    s = lab_settings.validate_settings({"device": "cpu", "threads": 2, "workers": 3, "country": "FRA"})
    spec = lab_settings.with_run_settings(ExperimentSpec(train={"epochs": 3}, teacher_train={"epochs": 5}), s)
    assert spec.train == {"epochs": 3, "device": "cpu", "threads": 2} and spec.teacher_train["threads"] == 2
    assert lab_settings.with_run_settings(ExperimentSpec(), s).teacher_train is None  # "same as train" stays so
    assert lab_settings.pool_arguments(s) == {"workers": 3, "threads": 2, "country": "FRA"}
    assert lab_settings.pool_matches({"workers": 3, "threads": 2, "country": "FRA"}, s)
    assert not lab_settings.pool_matches({"workers": 3, "threads": 2, "country": "USA"}, s)
    assert lab_settings.pool_matches({"workers": 3}, {**s, "threads": 0})  # an older pool without the others


# -- the launch estimate and the scratch baseline --------------------------------------------------------


def test_launch_estimate_counts_reuse_and_calibration():
    runs = expand(ExperimentSpec(dataset="digits", teacher="cnn-small", students=[{"arch": "mlp", "hidden": [16]}],
                                 temperatures=[2.0, 4.0], seeds=[0, 1], train={"epochs": 5}))
    summaries = {spec_key(m): model_summary(m, (1, 8, 8), 10) for m in ("cnn-small", {"arch": "mlp", "hidden": [16]})}
    est = launch_estimate(runs, set(), pd.DataFrame(), 1169, summaries, workers=2)
    assert (est["runs"], est["teachers"], est["baselines"], est["distilled"], est["reused"]) == (7, 1, 2, 4, 0)
    assert est["calibrated_on"] == 0 and est["serial_seconds"] > est["wall_seconds"] > 0
    reused = launch_estimate(runs, {runs[0].hash}, pd.DataFrame(), 1169, summaries, workers=2)
    assert reused["reused"] == 1 and reused["serial_seconds"] < est["serial_seconds"]
    # finished runs of the same data set calibrate the speeds: twice as slow as predicted here
    frame = pd.DataFrame({"dataset": ["digits"] * 3 + ["moons"], "measure.compute.flops": [1e5, 2e5, 3e5, 1e5],
                          "epochs_run": [5, 5, 5, 5], "train.batch_size": [64] * 4, "train_seconds": [np.nan] * 4})
    pairs = calibration_pairs(frame.assign(train_seconds=[1.0, 1.0, 1.0, 1.0]), "digits", 1169)
    assert len(pairs) == 3
    frame["train_seconds"] = [2 * p for p, _ in pairs] + [1.0]
    slow = launch_estimate(runs, set(), frame, 1169, summaries, workers=2)
    assert slow["calibrated_on"] == 3 and slow["wall_seconds"] > est["wall_seconds"]


def test_scratch_baseline_is_the_same_student_seed_and_teacher():
    frame = pd.DataFrame([
        {"run_id": 1, "role": "teacher", "method": "scratch", "model": "t", "dataset": "d", "seed": 0, "teacher_hash": None},
        {"run_id": 2, "role": "student", "method": "kd", "model": "s", "dataset": "d", "seed": 0, "teacher_hash": "A"},
        {"run_id": 3, "role": "student", "method": "scratch", "model": "s", "dataset": "d", "seed": 0, "teacher_hash": "B"},
        {"run_id": 4, "role": "student", "method": "scratch", "model": "s", "dataset": "d", "seed": 0, "teacher_hash": "A"},
        {"run_id": 5, "role": "student", "method": "scratch", "model": "s", "dataset": "d", "seed": 1, "teacher_hash": "A"},
        {"run_id": 6, "role": "student", "method": "kd", "model": "s", "dataset": "d", "seed": 2, "teacher_hash": "A"},
    ])
    assert analysis.scratch_baseline(frame, 2)["run_id"] == 4  # beside the same teacher first
    assert analysis.scratch_baseline(frame.drop(index=3), 2)["run_id"] == 3  # else any teacher
    assert analysis.scratch_baseline(frame, 6) is None  # no scratch run of that seed
    for not_distilled in (1, 3, 99):
        assert analysis.scratch_baseline(frame, not_distilled) is None


# -- uploads ----------------------------------------------------------------------------------------------


def test_uploads_are_kept_by_content_with_a_limit(tmp_path):
    a = save_upload(tmp_path, "my data (1).csv", b"x,y\n1,2\n", 1)
    assert a.parent == tmp_path / paths.UPLOADS and a.name.endswith("-my_data_1_.csv") and a.read_bytes() == b"x,y\n1,2\n"
    assert save_upload(tmp_path, "again.csv", b"x,y\n1,2\n", 1).name.split("-")[0] == a.name.split("-")[0]
    with pytest.raises(DataError, match="the file is empty"):
        save_upload(tmp_path, "e.csv", b"", 1)
    with pytest.raises(DataError, match="more than the 1 MB upload limit"):
        save_upload(tmp_path, "big.csv", b"x" * (2 * 1024 * 1024), 1)


def test_a_home_must_be_a_writable_folder(tmp_path):
    assert paths.usable_home(str(tmp_path / "new" / "home")) == (tmp_path / "new" / "home").resolve()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot use this folder"):
        paths.usable_home(str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="give a folder"):
        paths.usable_home("  ")


# -- the typed run --------------------------------------------------------------------------------------


def test_run_config_round_trip_and_hashes_of_the_previous_release():
    runs = expand(ExperimentSpec.from_dict(SPEC))
    for run in runs:
        again = RunConfig.from_dict(json.loads(json.dumps(run.to_dict())))  # as the store keeps it
        assert again == run and again.hash == run.hash
    # The same hashes as before RunConfig: an existing home keeps its runs and its teacher cache.
    assert [(r.method_name, r.hash, r.teacher_hash) for r in runs] == [
        ("scratch", "aaa891dd62fe0fe4", None), ("kd", "7c251577ab2170d0", "aaa891dd62fe0fe4"),
        ("takd", "61e22d37b0fe0fb6", "5e1eb3ebc7412d39"), ("scratch", "935f78dbb405f6fe", "aaa891dd62fe0fe4")]
    kd = runs[1]
    assert kd.method_knobs == {"temperature": 4.0, "alpha": 0.9} and kd.is_student and not runs[0].is_student
    # where it runs and how it is measured are not what it is
    assert replace(kd, train={**kd.train, "threads": 4, "device": "cpu"}, measure={"energy": False}).hash == kd.hash
    # a knob added later is out of the identity at its default only: set otherwise, it makes a new run
    assert replace(kd, train={**kd.train, "precision": "bf16"}).hash != kd.hash
    assert replace(kd, train={**kd.train, "recipe": "cifar"}).hash != kd.hash
    assert kd.with_threads(3).train["threads"] == 1 and replace(kd, train={**kd.train, "threads": 0}).with_threads(3).train["threads"] == 3
    with pytest.raises(ConfigError, match="unknown field"):
        RunConfig.from_dict({**kd.to_dict(), "colour": "red"})


def test_takd_supplies_its_assistant_through_the_method_hook():
    teacher, _, takd, _ = expand(ExperimentSpec.from_dict(SPEC))
    assistant = METHODS.get("takd").teacher_for(takd.method_knobs, teacher, "image")
    assert takd.teacher == assistant and assistant.teacher == teacher and assistant.role == "assistant"
    assert METHODS.get("kd").teacher_for({"temperature": 4.0, "alpha": 0.9}, teacher, "image") is teacher


def test_methods_declare_knobs_as_attributes():
    kd = METHODS.get("kd")(temperature=2)
    assert kd.temperature == 2.0 and kd.alpha == ALPHA.default and METHODS.get("kd").temperature is TEMPERATURE
    assert [p.name for p in METHODS.get("takd").params] == ["assistant", "temperature", "alpha"]
    with pytest.raises(ConfigError, match="method kd: alpha must be <= 1.0"):
        METHODS.get("kd")(alpha=2)
    with pytest.raises(TypeError, match="give both one name"):
        type("Odd", (Method,), {"name": "odd", "weight": Param("lambda", 1.0)})


def test_a_param_may_add_its_own_rule():
    def three_letters(v: str) -> str:
        if len(v) != 3:
            raise ValueError("must have 3 letters")
        return v.upper()

    upper = Param("code", "usa", kind="str", check=three_letters)
    assert upper.coerce("fra") == "FRA"
    with pytest.raises(ConfigError, match="settings: code must have 3 letters"):
        upper.coerce("france", "settings")


def test_incompatible_methods_are_found_per_student():
    found = incompatibilities("at", [{"arch": "cnn", "channels": [4]}, None, "mlp-small"], {"arch": "cnn", "channels": [8]},
                              (1, 8, 8), 10)
    assert list(found) == [2] and "spatial feature maps" in found[2]


# -- teachers of each kind ------------------------------------------------------------------------------


def test_teacher_kinds_and_one_identity(home, tmp_path):
    spec = {**SPEC, "transfer": {}, "methods": ["takd"], "baseline": False}
    teacher, student = expand(ExperimentSpec.from_dict(spec))
    assert teachers.teacher_of(teacher).kind == "trained"
    assert teachers.teacher_of(student.teacher).kind == "distilled" and teachers.teacher_of(student.teacher).parents == (teacher,)
    path = save_weights(build_model(teacher.model, (1, 8, 8), 10), tmp_path / "t.safetensors")
    loaded, _ = expand(ExperimentSpec.from_dict({**spec, "teacher": {"weights": str(path), "model": teacher.model}}))
    assert teachers.teacher_of(loaded).kind == "weights" and loaded.hash != teacher.hash  # its file is its identity
    teachers.check_weights(teacher.model, path, (1, 8, 8), 10)
    with pytest.raises(ModelError, match="do not fit"):
        teachers.check_weights({"arch": "mlp", "hidden": [33]}, path, (1, 8, 8), 10)
    assert teachers.teacher_weights(home, teacher) is None  # a teacher run has no teacher
    assert teachers.teacher_weights(home, student) is None  # not trained yet
