"""Pure analysis functions: Pareto frontier, gap closed, seeds, budgets, energy, softening."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from distill_core import analysis as A
from distill_core import teaching


# -- Pareto ---------------------------------------------------------------------------------------

def brute_pareto(cost, acc):
    out = []
    for i in range(len(cost)):
        if math.isnan(cost[i]) or math.isnan(acc[i]):
            out.append(False)
            continue
        dominated = any(cost[j] <= cost[i] and acc[j] >= acc[i] and (cost[j] < cost[i] or acc[j] > acc[i])
                        for j in range(len(cost)) if not (math.isnan(cost[j]) or math.isnan(acc[j])))
        out.append(not dominated)
    return out


def test_pareto_simple():
    cost = [10, 20, 30, 15, 40]
    acc = [0.5, 0.7, 0.9, 0.4, 0.85]
    assert A.pareto_mask(cost, acc).tolist() == [True, True, True, False, False]


def test_pareto_ties_are_all_kept_and_equal_accuracy_at_higher_cost_is_dominated():
    cost = [10, 10, 20, 20, 5]
    acc = [0.8, 0.8, 0.8, 0.9, 0.3]
    # the two (10, 0.8) points tie: both kept; (20, 0.8) is dominated by them; (20, 0.9) is better.
    assert A.pareto_mask(cost, acc).tolist() == [True, True, False, True, True]
    # same cost, lower accuracy: dominated
    assert A.pareto_mask([1, 1], [0.5, 0.6]).tolist() == [False, True]


def test_pareto_single_run_and_empty_and_nan():
    assert A.pareto_mask([3.0], [0.5]).tolist() == [True]
    assert A.pareto_mask([], []).tolist() == []
    assert A.pareto_mask([1, np.nan, 3], [0.5, 0.99, np.nan]).tolist() == [True, False, False]


def test_pareto_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = rng.integers(1, 25)
        cost = rng.integers(0, 6, n).astype(float)  # many ties
        acc = rng.integers(0, 6, n) / 5
        assert A.pareto_mask(cost, acc).tolist() == brute_pareto(cost, acc)


def test_pareto_frontier_rows_sorted_by_cost():
    f = pd.DataFrame({"run_id": [1, 2, 3], "params": [300.0, 100.0, 200.0], "accuracy": [0.9, 0.6, 0.5]})
    front = A.pareto_frontier(f, "params")
    assert front["run_id"].tolist() == [2, 1]
    with pytest.raises(Exception, match="no column"):
        A.pareto_frontier(f, "flops")


# -- gap closed -----------------------------------------------------------------------------------

def test_gap_closed_values():
    assert A.gap_closed(0.85, 0.8, 0.9) == (pytest.approx(0.5), None)
    assert A.gap_closed(0.75, 0.8, 0.9)[0] == pytest.approx(-0.5)
    assert A.gap_closed(0.9, 0.8, 0.9)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("teacher", [0.8, 0.7])
def test_gap_closed_undefined_when_teacher_no_better_than_scratch(teacher):
    g, why = A.gap_closed(0.85, 0.8, teacher)
    assert math.isnan(g)
    assert "no better than the scratch" in why


def test_gap_closed_missing_figure():
    g, why = A.gap_closed(0.85, float("nan"), 0.9)
    assert math.isnan(g) and "scratch accuracy unavailable" in why


def _runs(rows):
    base = {"role": "student", "dataset": "digits", "model": "mlp-small", "teacher": "cnn", "teacher_hash": "t1",
            "train.epochs": 3.0, "train.threads": 1.0, "alpha": 0.9, "temperature": np.nan}
    out = [{**base, "run_id": i + 1, **r} for i, r in enumerate(rows)]
    for r in out:
        r.setdefault("method_label", r["method"])
    return pd.DataFrame(out)


def test_gap_closed_table_pairs_seeds_and_gives_spread():
    f = _runs([
        {"method": "scratch", "seed": 0, "accuracy": 0.80, "teacher_accuracy": 0.90, "alpha": np.nan},
        {"method": "scratch", "seed": 1, "accuracy": 0.70, "teacher_accuracy": 0.90, "alpha": np.nan},
        {"method": "kd", "temperature": 4.0, "seed": 0, "accuracy": 0.85, "teacher_accuracy": 0.90},
        {"method": "kd", "temperature": 4.0, "seed": 1, "accuracy": 0.80, "teacher_accuracy": 0.90},
        {"method": "kd", "temperature": 8.0, "seed": 0, "accuracy": 0.90, "teacher_accuracy": 0.90},
        # a different teacher: its own scratch baseline is missing
        {"method": "kd", "temperature": 4.0, "seed": 0, "accuracy": 0.9, "teacher_accuracy": 0.95, "teacher_hash": "t2"},
    ])
    t = A.gap_closed_table(f)
    assert len(t) == 3
    t4 = t[(t["temperature"] == 4.0) & t["reason"].isna()].iloc[0]
    # seed 0: (0.85-0.80)/(0.10) = 0.5 ; seed 1: (0.80-0.70)/0.20 = 0.5
    assert t4["gaps"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert t4["gap_mean"] == pytest.approx(0.5) and t4["gap_std"] == pytest.approx(0.0)
    t8 = t[t["temperature"] == 8.0].iloc[0]
    assert t8["gap_mean"] == pytest.approx(1.0) and math.isnan(t8["gap_std"]) and t8["n_seeds"] == 1
    lone = t[t["reason"].notna()].iloc[0]
    assert math.isnan(lone["gap_mean"]) and "no scratch run" in lone["reason"]


def test_gap_closed_table_teacher_not_better():
    f = _runs([
        {"method": "scratch", "seed": 0, "accuracy": 0.9, "teacher_accuracy": 0.85, "alpha": np.nan},
        {"method": "kd", "temperature": 4.0, "seed": 0, "accuracy": 0.88, "teacher_accuracy": 0.85},
    ])
    row = A.gap_closed_table(f).iloc[0]
    assert math.isnan(row["gap_mean"]) and "no better" in row["reason"]


# -- seeds and temperature sweep ---------------------------------------------------------------------

def test_aggregate_seeds_mean_std_and_thread_setting_ignored():
    f = _runs([
        {"method": "kd", "temperature": 4.0, "seed": 0, "accuracy": 0.8, "teacher_agreement": 0.9},
        {"method": "kd", "temperature": 4.0, "seed": 1, "accuracy": 0.9, "teacher_agreement": 0.95, "train.threads": 2.0},
        {"method": "kd", "temperature": 2.0, "seed": 0, "accuracy": 0.7, "teacher_agreement": 0.8},
    ])
    agg = A.aggregate_seeds(f, ("accuracy",))
    assert len(agg) == 2
    r4 = agg[agg["temperature"] == 4.0].iloc[0]
    assert r4["accuracy_mean"] == pytest.approx(0.85)
    assert r4["accuracy_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert r4["n_seeds"] == 2 and r4["run_ids"] == "1, 2"
    assert math.isnan(agg[agg["temperature"] == 2.0].iloc[0]["accuracy_std"])
    sweep = A.temperature_sweep(f)
    assert sweep["temperature"].tolist() == [2.0, 4.0]
    assert sweep["teacher_agreement_mean"].tolist() == pytest.approx([0.8, 0.925])


# -- budgets ---------------------------------------------------------------------------------------

def test_budget_filter_and_best_that_fits():
    f = pd.DataFrame({
        "run_id": [1, 2, 3, 4],
        "accuracy": [0.95, 0.90, 0.85, 0.99],
        "params": [5e5, 2e4, 1e4, 1e3],
        "measure.int8.bytes": [600_000.0, 100_000.0, 50_000.0, np.nan],  # run 4: not measured
        "measure.int8.accuracy": [0.95, 0.88, 0.89, np.nan],  # run 3's int8 model deploys better than run 2's
        "measure.latency.onnx_int8.median_ms": [0.5, 0.2, 0.1, 0.01],
        "measure.size.fp32_bytes": [2e6, 8e4, 4e4, 4e3],
    })
    profile = {"size_of": "int8", "max_bytes": 256 * 1024, "latency_of": "onnx_int8", "max_latency_ms": 2.0}
    t = A.budget_table(f, profile)
    assert t["fits"].tolist() == [False, True, True, None]
    assert "not measured" in t["reason"].iloc[3]
    # an int8 profile ranks by the int8 model's accuracy: run 3 (0.89 in int8) over run 2 (0.90 in fp32, 0.88 in int8);
    # run 4 is more accurate but unmeasured: never a guessed pass
    assert A.profile_accuracy(profile) == "measure.int8.accuracy"
    assert A.best_that_fits(f, profile)["run_id"] == 3
    assert A.best_that_fits(f, profile, accuracy="accuracy")["run_id"] == 2
    fp32 = {"size_of": "fp32", "max_bytes": 100_000, "latency_of": "onnx", "max_latency_ms": 0.0}
    assert A.profile_accuracy(fp32) == "accuracy"
    tight = {**profile, "max_latency_ms": 0.15}
    assert A.best_that_fits(f, tight)["run_id"] == 3
    assert A.best_that_fits(f, {**profile, "max_bytes": 10}) is None
    with pytest.raises(Exception, match="size_of"):
        A.budget_table(f, {"size_of": "fp64"})


# -- costs and energy -----------------------------------------------------------------------------------

def test_cost_columns_unavailable_with_reason_and_training_energy():
    f = pd.DataFrame({
        "run_id": [1, 2], "params": [10.0, 20.0], "accuracy": [0.5, 0.6],
        "measure.size.fp32_bytes": [np.nan, np.nan],
        "energy.phases.teacher_training.kwh": [2e-4, 1e-4], "energy.phases.teacher_training.reused": [0.0, 1.0],
        "energy.phases.student_training.kwh": [1e-5, 3e-5], "energy.phases.student_training.reused": [0.0, 0.0],
        "energy.phases.student_training.label": ["estimated", "estimated"],
        "measure.latency.reason": ["latency measurement turned off", "latency measurement turned off"],
    })
    f = A.add_training_energy(f)
    assert f["training_kwh"].tolist() == pytest.approx([2.1e-4, 3e-5])  # run 2 reused its teacher
    costs = A.cost_columns(f)
    assert costs["params"]["column"] == "params"
    assert costs["fp32_bytes"]["column"] is None and costs["fp32_bytes"]["reason"]
    assert costs["torch_ms"]["reason"] == "latency measurement turned off"
    assert costs["train_kwh"]["column"] == "training_kwh"
    saved = A.reuse_savings(f)
    assert saved["saved_kwh"] == pytest.approx(1e-4) and saved["runs_reusing"] == 1
    long = A.energy_phases(f)
    assert len(long) == 4 and long["reused"].sum() == 1


def test_training_energy_nan_when_not_measured():
    f = A.add_training_energy(pd.DataFrame({"run_id": [1], "energy.phases.student_training.kwh": [np.nan]}))
    assert math.isnan(f["training_kwh"].iloc[0])


def test_carbon_intensity_offline():
    fra, note = A.carbon_intensity("fra")
    usa, _ = A.carbon_intensity("USA")
    assert 0 < fra < usa and "France" in note
    assert A.carbon_intensity("XYZ")[0] is None
    assert "FRA" in A.countries()


# -- teaching -----------------------------------------------------------------------------------------------

def test_soften_and_entropy():
    z = torch.tensor([[4.0, 1.0, 0.0]])
    p1, p10 = teaching.soften(z, 1.0), teaching.soften(z, 10.0)
    assert p1.sum().item() == pytest.approx(1.0) and p10.sum().item() == pytest.approx(1.0)
    assert teaching.entropy(p10).item() > teaching.entropy(p1).item()  # softer = higher entropy
    assert teaching.entropy(teaching.soften(z, 1e4)).item() == pytest.approx(math.log2(3), rel=1e-3)  # uniform in the limit
    assert teaching.entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    assert teaching.soften(z, 1.0).argmax().item() == teaching.soften(z, 50.0).argmax().item()  # the ranking is kept
    with pytest.raises(Exception, match="temperature"):
        teaching.soften(z, 0)


def test_dark_knowledge_rows():
    logits = torch.tensor([[5.0, 2.0, 0.0], [4.0, 3.0, 0.0], [0.0, 1.0, 6.0]])
    y = torch.tensor([0, 0, 2])
    m = teaching.dark_knowledge(logits, y, 2.0, 3)
    assert m.shape == (3, 3)
    assert np.allclose(m[0], teaching.soften(logits[:2], 2.0).mean(0).numpy())
    assert np.isnan(m[1]).all()  # no sample of class 1
    assert np.allclose(np.nansum(m, 1)[[0, 2]], 1.0)


def test_kd_anatomy_matches_formula():
    torch.manual_seed(0)
    s, t = torch.randn(8, 4), torch.randn(8, 4)
    y = torch.randint(0, 4, (8,))
    T, a = 3.0, 0.7
    parts = teaching.kd_anatomy(s, t, y, T, a)
    p_t, log_p_s = torch.softmax(t / T, 1), torch.log_softmax(s / T, 1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean().item()
    ce = torch.nn.functional.cross_entropy(s, y).item()
    assert parts["kl"] == pytest.approx(kl, rel=1e-5)
    assert parts["soft"] == pytest.approx(T * T * kl, rel=1e-5)
    assert parts["hard"] == pytest.approx(ce, rel=1e-5)
    assert parts["total"] == pytest.approx(a * T * T * kl + (1 - a) * ce, rel=1e-5)


def test_class_bias_sweep_recovers_class():
    # class 2 is always second best by 1.0: a bias above 1 flips it to first
    y = torch.tensor([2, 2, 0, 1])
    z = torch.tensor([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    sweep = teaching.class_bias_sweep(z, y, 2, [0.0, 1.5, 5.0])
    assert sweep["class_accuracy"].tolist() == [0.0, 1.0, 1.0]
    assert sweep["accuracy"].tolist() == [0.5, 1.0, 0.5]
    with pytest.raises(Exception, match="outside"):
        teaching.class_bias_sweep(z, y, 3, [0.0])


def test_grid_points():
    xs, ys, pts = teaching.grid_points(np.array([[0.0, 0.0], [1.0, 2.0]]), steps=5)
    assert len(xs) == 5 and pts.shape == (25, 2) and xs[0] < 0 and ys[-1] > 2
    with pytest.raises(Exception, match="2-D"):
        teaching.grid_points(np.zeros((3, 3)))


def test_delta_words_give_the_seeds_a_difference_rests_on_and_why_there_is_none():
    assert A.delta_words(0.005, 0.004, 3) == "+0.5 ± 0.4 pts vs scratch over 3 seeds"
    assert A.delta_words(0.005, math.nan, 1) == "+0.5 pts vs scratch, resting on 1 seed: its spread is unknown"
    # a QAD run trains 5 epochs at a tenth of the rate: no scratch run has its settings
    assert "a scratch run with the same data, network and training settings" in A.delta_words(math.nan, math.nan, 0)
