import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distill_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, home, timeout=600):
    env = {**os.environ, "DISTILL_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "distill_core", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_digits_quick_end_to_end(tmp_path, monkeypatch):
    monkeypatch.delenv("DISTILL_MEASURE")  # the full measurement, as a user gets it
    # one seed here (the preset has three, run in full below): the full measurement of each run kind
    out = cli("run", "--preset", "digits-quick", "--seed", "0", "--threads", "1", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    runs = {(r["role"], r["config"]["method"]["name"]): r for r in data["runs"]}
    assert set(runs) == {("teacher", "scratch"), ("student", "kd"), ("student", "scratch")}
    assert runs[("teacher", "scratch")]["metrics"]["accuracy"] > 0.9
    for r in data["runs"]:
        assert r["train"]["history"], r["role"]
        assert all(math.isfinite(h["loss"]) for h in r["train"]["history"])
        assert 0 < r["metrics"]["accuracy"] <= 1
    # the readable table: the teacher, then the KD and the scratch student on each of three seeds
    table = cli("run", "--preset", "digits-quick", "--threads", "1", home=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = lines[0].split()
    assert {"role", "method", "accuracy", "nll", "ece", "agreement"} <= set(header)
    body = [line.split() for line in lines[2:9]]
    roles_methods = [(row[1], row[header.index("method") + 1], row[header.index("seed") + 1]) for row in body]
    assert sorted(roles_methods) == sorted([("teacher", "scratch", "0")] + [(role, m, str(seed)) for role, m in
                                           [("student", "kd"), ("student", "scratch")] for seed in (0, 1, 2)])
    # the summary: the difference from scratch with its spread over the three seeds
    summary = table.stdout[table.stdout.index("Distilled against scratch"):].splitlines()[1]
    assert "pts vs scratch over 3 seeds" in summary and "±" in summary
    # every run prints and stores its measurements
    text = table.stdout
    for words in ["params", "fp32 file", "int8 ONNX", "FLOPs", "PyTorch", "ONNX Runtime", "int8      test accuracy",
                  "student_training", "estimated", "card_md", "onnx (verified"]:
        assert words in text, words
    kd = runs[("student", "kd")]
    m = kd["measure"]
    assert m["size"]["fp32_bytes"] == (Path(kd["artifacts"]["folder"]) / "weights.safetensors").stat().st_size
    assert kd["energy"]["phases"]["student_training"]["kwh"] >= 0
    for name in ("onnx", "int8", "card_md", "card_json"):
        assert Path(kd["artifacts"][name]).is_file(), name
    assert "pt2" not in kd["artifacts"] and "export ID --pt2" in m["pt2"]["reason"]  # made on demand
    # kd and scratch students share one architecture: the second carries the first's latency
    first, second = sorted((runs[("student", "kd")], runs[("student", "scratch")]), key=lambda r: r["finished"])
    assert second["measure"]["shared"]["measured_by"] == [first["hash"]] and "torch" in second["measure"]["shared"]["carried"]


# In this process (`python -m distill_core` is `main`, run as a program by the tests above): each
# program start imports torch and the lab again, seconds on two cores.
def test_listings_show_registries(capsys):
    for cmd, words in [("datasets", ["digits", "mnist-5k", "mnist1d", "moons", "csv", "images"]),
                       ("models", ["linear", "mlp", "cnn", "resnet", "mobile", "hinton-teacher"]),
                       ("methods", ["scratch", "kd", "label-smoothing", "Hinton"]),
                       ("presets", ["digits-quick", "mnist1d-cnn-to-mlp", "hinton-mnist5k"])]:
        assert main([cmd]) == 0
        out = capsys.readouterr().out
        for w in words:
            assert w in out, (cmd, w)


@pytest.mark.parametrize("args,message", [
    (["run", "--dataset", "moons", "--teacher", "cnn"], "not vector inputs"),
    (["run", "--preset", "nope"], "unknown preset"),
    (["run", "--method", "magic"], "unknown method"),
    (["run", "--dataset", "csv", "--data", "path=nope.csv"], "nope.csv: file not found"),
    (["run", "--dataset", "digits", "--data", "split_seed"], "expected KEY=VALUE"),
])
def test_bad_input_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("DISTILL_HOME", str(tmp_path))
    assert main(args) == 2  # an exception other than the lab's own message would fail the test here
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_experiment_file_json_and_yaml(tmp_path):
    spec = {"dataset": "moons", "teacher": {"arch": "mlp", "hidden": [32, 32]}, "students": ["mlp-small"],
            "methods": ["kd", "label-smoothing"], "train": {"epochs": 2}}
    (tmp_path / "e.json").write_text(json.dumps(spec))
    out = cli("run", str(tmp_path / "e.json"), "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    methods = sorted(r["config"]["method"]["name"] for r in json.loads(out.stdout)["runs"])
    assert methods == ["kd", "label-smoothing", "scratch", "scratch"]
    (tmp_path / "bad.yaml").write_text("dataset: [unclosed")
    out = cli("run", str(tmp_path / "bad.yaml"), home=tmp_path)
    assert out.returncode == 2 and "not valid YAML" in out.stderr


def test_own_csv_from_flags(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["a,b,kind"] + [f"{x:.3f},{y:.3f},{'left' if x < 0 else 'right'}" for x, y in rng.normal(size=(120, 2))]
    (tmp_path / "mine.csv").write_text("\n".join(rows))
    out = cli("run", "--dataset", "csv", "--data", f"path={tmp_path / 'mine.csv'}", "--data", "label_column=kind",
              "--teacher", "mlp:hidden=16", "--student", "mlp:hidden=4", "--epochs", "2", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)["runs"]
    assert len(runs) == 3
    assert runs[0]["config"]["dataset"]["label_column"] == "kind"


def test_tabular_preset_summary_and_teachers_from_flags(tmp_path, capsys):
    """The preset's figures over seeds with the mcu verdict (2 seeds and 3 epochs here, to be
    quick), then an ONNX teacher and an ensemble given by --teacher flags (in this process)."""
    from distill_core.cli import main

    out = cli("run", "--preset", "tabular-gbdt-to-mcu", "--seed", "0", "--seed", "1", "--epochs", "3", "--threads", "1",
              home=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = out.stdout[out.stdout.index("Over seeds"):].splitlines()
    header = summary[1]
    assert {"accuracy", "int8", "onnx", "mcu"} <= set(header.split()), header
    teacher = next(line for line in summary if line.startswith("teacher"))
    kd = next(line for line in summary if " kd T=4" in line)
    assert "gradient-boosting" in teacher and "not measured" in teacher  # a tree ensemble has no int8 model
    assert "±" in kd and " 2 " in kd and kd.rstrip().endswith("fits")  # mean ± spread over 2 seeds, within the budget
    student_onnx = next((tmp_path / "runs").glob("*/model.onnx"))
    assert main(["--home", str(tmp_path), "run", "--dataset", "breast-cancer", "--teacher", f"onnx:path={student_onnx}",
                 "--teacher", "gradient-boosting:max_iter=10", "--ensemble", "mean-probabilities", "--student",
                 "mlp:hidden=4", "--method", "kd", "--epochs", "2", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["config"]["model"]["arch"] for r in runs[:3]] == ["ensemble", "onnx", "gradient-boosting"]
    assert runs[0]["teacher"]["combine"] == "mean-probabilities" and runs[3]["teacher_kind"] == "ensemble"
    assert main(["--home", str(tmp_path), "run", "--dataset", "breast-cancer", "--teacher", "onnx:file=x.onnx"]) == 2
    assert "give the file" in capsys.readouterr().err
