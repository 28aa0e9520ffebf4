"""The method library: every loss against an independent computation of its paper's equation,
gradients that reach the student and never the teacher, short training runs, refusals of
architectures a method cannot use, and takd's assistant trained once and reused.

The references below are written from the papers with numpy in float64 and explicit loops, not
with the library's helpers, so a slip in the vectorised code shows up as a mismatch.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from distill_core.config import ExperimentSpec, expand
from distill_core.data import load_dataset
from distill_core.errors import ConfigError
from distill_core.methods import METHODS, make_method
from distill_core.models import ModelOutput, build_model

torch.set_num_threads(1)

NEW = ["takd", "logit-std", "dkd", "dist", "fitnets", "at", "rkd", "pkt"]
ALL = ["scratch", "label-smoothing", "kd"] + NEW + ["qad"]
SHAPE = (1, 8, 8)  # digits
TOL = dict(rtol=1e-5, atol=1e-7)


def rng(seed=0):
    return np.random.default_rng(seed)


def t64(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def out(logits=None, embedding=None, features=()) -> ModelOutput:
    return ModelOutput(None if logits is None else t64(logits), None if embedding is None else t64(embedding),
                       [t64(f) for f in features])


# ---------------------------------------------------------------------------------------------
# numpy references


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def kl(p, q):
    return float(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0))


def ce(z, y):
    return -math.log(softmax(z)[y])


def huber(x):
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def ref_kd(zs, zt, y, T, alpha):
    n = len(y)
    soft = sum(kl(softmax(zt[i] / T), softmax(zs[i] / T)) for i in range(n)) / n
    hard = sum(ce(zs[i], y[i]) for i in range(n)) / n
    return alpha * T * T * soft + (1 - alpha) * hard


def ref_dkd(zs, zt, y, T, alpha, beta, w):
    """Zhao et al. 2022 eq. 2: CE + w * (alpha * TCKD + beta * NCKD), both KLs at temperature T, times T^2."""
    n, k = zs.shape
    total = 0.0
    for i in range(n):
        ps, pt = softmax(zs[i] / T), softmax(zt[i] / T)
        b_s, b_t = [ps[y[i]], 1 - ps[y[i]]], [pt[y[i]], 1 - pt[y[i]]]
        others = [c for c in range(k) if c != y[i]]
        q_s, q_t = softmax(zs[i, others] / T), softmax(zt[i, others] / T)
        total += ce(zs[i], y[i]) + w * T * T * (alpha * kl(b_t, b_s) + beta * kl(q_t, q_s))
    return total / n


def ref_dist(zs, zt, y, T, beta, gamma):
    """Huang et al. 2022: CE + beta T^2 (1 - mean row Pearson) + gamma T^2 (1 - mean column Pearson)."""
    n, k = zs.shape
    ys = np.array([softmax(zs[i] / T) for i in range(n)])
    yt = np.array([softmax(zt[i] / T) for i in range(n)])
    inter = 1 - np.mean([np.corrcoef(ys[i], yt[i])[0, 1] for i in range(n)])
    intra = 1 - np.mean([np.corrcoef(ys[:, j], yt[:, j])[0, 1] for j in range(k)])
    hard = np.mean([ce(zs[i], y[i]) for i in range(n)])
    return hard + beta * T * T * inter + gamma * T * T * intra


def ref_logit_std(zs, zt, y, T, alpha):
    """Sun et al. 2024: KD on (z - mean) / std (population std over the classes)."""
    def z(v):
        return (v - v.mean()) / math.sqrt(((v - v.mean()) ** 2).mean())

    n = len(y)
    soft = sum(kl(softmax(z(zt[i]) / T), softmax(z(zs[i]) / T)) for i in range(n)) / n
    hard = sum(ce(zs[i], y[i]) for i in range(n)) / n
    return alpha * T * T * soft + (1 - alpha) * hard


def block_mean(m, size):
    """Average pooling of a (.., H, W) array into `size` equal blocks (sizes divide exactly here)."""
    h, w = m.shape[-2:]
    bh, bw = h // size[0], w // size[1]
    res = np.zeros(m.shape[:-2] + tuple(size))
    for a in range(size[0]):
        for b in range(size[1]):
            res[..., a, b] = m[..., a * bh:(a + 1) * bh, b * bw:(b + 1) * bw].mean(axis=(-1, -2))
    return res


def ref_at_pair(fs, ft, p):
    """Zagoruyko & Komodakis 2017: Q = mean_c |A_c|^p, flattened, L2-normalised; mean squared difference."""
    qs, qt = (np.abs(fs) ** p).mean(1), (np.abs(ft) ** p).mean(1)
    size = tuple(min(a, b) for a, b in zip(qs.shape[1:], qt.shape[1:]))
    qs, qt = block_mean(qs, size), block_mean(qt, size)
    total, count = 0.0, 0
    for i in range(len(fs)):
        a, b = qs[i].ravel(), qt[i].ravel()
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        for x, y in zip(a, b):
            total += (x - y) ** 2
            count += 1
    return total / count


def ref_rkd(s, t, wd, wa):
    """Park et al. 2019: Huber on mean-normalised distances (pairs i != j) and angles (distinct i, j, k)."""
    n = len(s)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    ds = {p: np.linalg.norm(s[p[0]] - s[p[1]]) for p in pairs}
    dt = {p: np.linalg.norm(t[p[0]] - t[p[1]]) for p in pairs}
    mu_s, mu_t = np.mean(list(ds.values())), np.mean(list(dt.values()))
    dist = np.mean([huber(ds[p] / mu_s - dt[p] / mu_t) for p in pairs])

    def cos(e, i, j, k):
        a, b = e[i] - e[j], e[k] - e[j]
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    triplets = [(i, j, k) for i in range(n) for j in range(n) for k in range(n) if len({i, j, k}) == 3]
    angle = np.mean([huber(cos(s, *x) - cos(t, *x)) for x in triplets])
    return wd * dist + wa * angle


def ref_pkt(s, t):
    """Passalis & Tefas 2018: cosine-kernel conditional probabilities (j != i), mean over i of the KL."""
    n = len(s)

    def cond(e):
        k = np.array([[(e[i] @ e[j] / (np.linalg.norm(e[i]) * np.linalg.norm(e[j])) + 1) / 2 for j in range(n)]
                      for i in range(n)])
        return [[k[i, j] / sum(k[i, m] for m in range(n) if m != i) for j in range(n)] for i in range(n)]

    p, q = cond(t), cond(s)
    return sum(p[i][j] * math.log(p[i][j] / q[i][j]) for i in range(n) for j in range(n) if j != i) / n


# ---------------------------------------------------------------------------------------------
# Registry


def test_all_twelve_methods_listed_in_order_with_their_papers():
    assert METHODS.names() == ALL
    for cls in METHODS:
        assert cls.name and cls.description and cls.equation
        for p in cls.params:
            assert p.help, f"{cls.name}.{p.name} has no help text"
            assert p.coerce(p.default) == p.default
        if cls.name != "scratch":
            assert cls.paper
            module = importlib.import_module(cls.__module__)
            surname = cls.paper.split(",")[0].split()[0]
            assert surname in module.__doc__, f"{cls.name}: the module docstring does not name the paper"


# ---------------------------------------------------------------------------------------------
# Each loss against its paper


@pytest.fixture
def logits():
    r = rng(1)
    n, k = 7, 5
    return r.normal(size=(n, k)) * 3, r.normal(size=(n, k)) * 3, r.integers(0, k, n)


@pytest.mark.parametrize("name", ["kd", "takd", "qad"])
def test_kd_takd_and_qad_match_hinton(name, logits):
    zs, zt, y = logits
    loss, _ = make_method(name, temperature=3.0, alpha=0.7).loss(out(zs), out(zt), torch.tensor(y), 0.5)
    np.testing.assert_allclose(loss.item(), ref_kd(zs, zt, y, 3.0, 0.7), **TOL)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 20.0])
@pytest.mark.parametrize("n, k", [(64, 10), (3, 100)])
def test_fused_losses_equal_the_unfused_with_their_gradients(temperature, n, k, dtype, tol):
    """KD, logit-std and soft_kl (one fused pass, closed-form gradient) against the formulas
    written out with autograd, on random logits: values and gradients within 1e-6 in float64;
    in float32, within 1e-5 relative (at T = 20 the soft term is a KL of ~1e-3 times 400, and
    float32 rounds the two ways of summing it differently)."""
    import torch.nn.functional as F

    from distill_core.methods.base import soft_kl
    from distill_core.methods.kd import kd_loss
    from distill_core.methods.logit_std import logit_std_loss, standardise

    g = torch.Generator().manual_seed(n + k)
    zs0, zt = (torch.randn(n, k, generator=g, dtype=torch.float64) * 3).to(dtype), \
        (torch.randn(n, k, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = torch.randint(0, k, (n,), generator=g)

    def unfused_kl(s, t):
        return F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1),
                        reduction="batchmean", log_target=True)

    def unfused(s, soft_in, soft_t):  # alpha = 0.7
        soft, hard = temperature**2 * unfused_kl(soft_in, soft_t), F.cross_entropy(s, y)
        return 0.7 * soft + 0.3 * hard, soft, hard

    cases = {"kd": (lambda s: kd_loss(s, zt, y, temperature, 0.7), lambda s: unfused(s, s, zt)),
             "logit-std": (lambda s: logit_std_loss(s, zt, y, temperature, 0.7),
                           lambda s: unfused(s, standardise(s), standardise(zt))),
             "soft_kl": (lambda s: (soft_kl(s, zt, temperature),), lambda s: (unfused_kl(s, zt),))}
    for name, (fused, reference) in cases.items():
        zs, ref_zs = zs0.clone().requires_grad_(True), zs0.clone().requires_grad_(True)
        got, want = fused(zs), reference(ref_zs)
        for a, b in zip(got, want):
            assert abs(a.item() - b.item()) <= tol * max(1.0, abs(b.item())), name
        got[0].backward()
        want[0].backward()
        torch.testing.assert_close(zs.grad, ref_zs.grad, rtol=0, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="detach"):
        soft_kl(zs0, zt.clone().requires_grad_(True), temperature)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-6), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.9), (4.0, 0.9), (20.0, 0.5), (4.0, 0.0), (4.0, 1.0)])
@pytest.mark.parametrize("n, k", [(64, 10), (3, 100)])
def test_kd_from_cached_soft_targets_equals_kd_loss(temperature, alpha, n, k, dtype, tol):
    """The cached-logits form of KD (the teacher's soft-target rows made once, the gradient in
    closed form) against kd_loss: the total, both terms and the gradient on the logits, for
    alpha at 0 and 1 too (a term with weight 0 still reports its value)."""
    from distill_core.methods.kd import kd_loss, kd_loss_from_soft, kd_soft_targets

    g = torch.Generator().manual_seed(n + k)
    zs, zt = (torch.randn(n, k, generator=g, dtype=torch.float64) * 3).to(dtype), \
        (torch.randn(n, k, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = torch.randint(0, k, (n,), generator=g)
    ref = zs.clone().requires_grad_(True)
    want = kd_loss(ref, zt, y, temperature, alpha)
    want[0].backward()
    rows, own = kd_soft_targets(zt, y, temperature)
    got, soft_term, hard = kd_loss_from_soft(zs.clone().requires_grad_(True), (rows, own), temperature, alpha)
    for a, b in [(got.item(), want[0]), (soft_term, want[1]), (hard, want[2])]:
        assert abs(a - b.item()) <= tol * max(1.0, abs(b.item()))
    torch.testing.assert_close(got.grad, ref.grad, rtol=0, atol=1e-6)


def test_label_smoothing_matches_its_definition(logits):
    zs, _, y = logits
    k, eps = zs.shape[1], 0.2
    ref = np.mean([-sum(((1 - eps) * (c == y[i]) + eps / k) * math.log(softmax(zs[i])[c]) for c in range(k))
                   for i in range(len(y))])
    loss, _ = make_method("label-smoothing", epsilon=eps).loss(out(zs), None, torch.tensor(y), 0.5)
    np.testing.assert_allclose(loss.item(), ref, **TOL)


@pytest.mark.parametrize("progress, w", [(1.0, 1.0), (0.05, 0.5), (0.0, 0.0)])
def test_dkd_matches_paper_with_linear_warmup(logits, progress, w):
    zs, zt, y = logits
    m = make_method("dkd", temperature=2.0, alpha=1.5, beta=4.0, warmup=0.1)
    loss, parts = m.loss(out(zs), out(zt), torch.tensor(y), progress)
    np.testing.assert_allclose(loss.item(), ref_dkd(zs, zt, y, 2.0, 1.5, 4.0, w), **TOL)
    # With alpha = beta = 1 the decoupled terms are not KD (NCKD lacks KD's (1 - p_target) weight),
    # but TCKD + (1 - p_t) NCKD is: the paper's eq. 1, checked per sample.
    one = make_method("dkd", temperature=2.0, alpha=1.0, beta=0.0, warmup=0.0)
    for i in range(len(y)):
        zi, ti, yi = zs[i:i + 1], zt[i:i + 1], y[i:i + 1]
        _, p = one.loss(out(zi), out(ti), torch.tensor(yi), 1.0)
        pt = softmax(ti[0] / 2.0)[yi[0]]
        kd_term = ref_kd(zi, ti, yi, 2.0, 1.0)
        np.testing.assert_allclose(p["tckd"] + (1 - pt) * p["nckd"], kd_term, **TOL)


def test_dist_matches_paper(logits):
    zs, zt, y = logits
    loss, _ = make_method("dist", temperature=2.5, beta=1.5, gamma=0.5).loss(out(zs), out(zt), torch.tensor(y), 0.5)
    np.testing.assert_allclose(loss.item(), ref_dist(zs, zt, y, 2.5, 1.5, 0.5), **TOL)


def test_logit_std_matches_paper_and_ignores_logit_scale(logits):
    zs, zt, y = logits
    m = make_method("logit-std", temperature=2.0, alpha=0.8)
    loss, parts = m.loss(out(zs), out(zt), torch.tensor(y), 0.5)
    np.testing.assert_allclose(loss.item(), ref_logit_std(zs, zt, y, 2.0, 0.8), **TOL)
    # The point of the paper: a teacher whose logits are shifted and scaled teaches the same thing.
    _, parts2 = m.loss(out(zs), out(zt * 5 + 3), torch.tensor(y), 0.5)
    np.testing.assert_allclose(parts2["soft"], parts["soft"], rtol=1e-5)


def test_at_matches_paper_across_stage_counts_and_sizes():
    r = rng(2)
    s_feats = [r.normal(size=(4, 3, 4, 4)), r.normal(size=(4, 5, 4, 4))]
    t_feats = [r.normal(size=(4, 6, 4, 4)), r.normal(size=(4, 7, 2, 2)), r.normal(size=(4, 9, 2, 2))]
    logits_s, y = r.normal(size=(4, 10)), r.integers(0, 10, 4)
    beta, p = 7.0, 2.0
    # Two student stages, three teacher stages: pairs (0, 1) and (1, 2), the last with the last.
    ref = np.mean([ce(logits_s[i], y[i]) for i in range(4)]) + beta / 2 * (
        ref_at_pair(s_feats[0], t_feats[1], p) + ref_at_pair(s_feats[1], t_feats[2], p))
    m = make_method("at", beta=beta, p=p)
    loss, _ = m.loss(out(logits_s, features=s_feats), out(None, features=t_feats), torch.tensor(y), 0.5)
    np.testing.assert_allclose(loss.item(), ref, **TOL)
    last = make_method("at", beta=beta, p=3.0, stages="last")
    loss, _ = last.loss(out(logits_s, features=s_feats), out(None, features=t_feats), torch.tensor(y), 0.5)
    ref = np.mean([ce(logits_s[i], y[i]) for i in range(4)]) + beta / 2 * ref_at_pair(s_feats[1], t_feats[2], 3.0)
    np.testing.assert_allclose(loss.item(), ref, **TOL)


def test_rkd_matches_paper_for_embeddings_of_different_widths():
    r = rng(3)
    s, t = r.normal(size=(6, 4)), r.normal(size=(6, 9)) * 2
    logits_s, y = r.normal(size=(6, 3)), r.integers(0, 3, 6)
    loss, _ = make_method("rkd", distance_weight=3.0, angle_weight=5.0).loss(
        out(logits_s, s), out(None, t), torch.tensor(y), 0.5)
    ref = np.mean([ce(logits_s[i], y[i]) for i in range(6)]) + ref_rkd(s, t, 3.0, 5.0)
    np.testing.assert_allclose(loss.item(), ref, **TOL)


def test_pkt_matches_paper_for_embeddings_of_different_widths():
    r = rng(4)
    s, t = r.normal(size=(6, 4)), r.normal(size=(6, 9))
    logits_s, y = r.normal(size=(6, 3)), r.integers(0, 3, 6)
    loss, _ = make_method("pkt", weight=30.0).loss(out(logits_s, s), out(None, t), torch.tensor(y), 0.5)
    ref = np.mean([ce(logits_s[i], y[i]) for i in range(6)]) + 30.0 * ref_pkt(s, t)
    np.testing.assert_allclose(loss.item(), ref, **TOL)


def tiny(spec, seed=0):
    torch.manual_seed(seed)
    return build_model(spec, SHAPE, 10).double()


T_FEATS = [(4, 4, 4), (7, 2, 2), (9, 2, 2)]  # teacher cnn 4-7-9 on 8x8 inputs; embedding 9


@pytest.mark.parametrize("student, s_feats, layers, s_idx, t_idx, size", [
    # the middle stage of each (index n // 2): the student's 4x4 map pooled to the teacher's 2x2
    ({"arch": "cnn", "channels": [3, 5]}, [(3, 4, 4), (5, 4, 4)], "middle", 1, 1, (2, 2)),
    ({"arch": "cnn", "channels": [3, 5]}, [(3, 4, 4), (5, 4, 4)], "last", 1, 2, (2, 2)),
    ({"arch": "cnn", "channels": [3, 5]}, [(3, 4, 4), (5, 4, 4)], "embedding", None, None, ()),
    ({"arch": "mlp", "hidden": [6]}, [(6,)], "middle", 0, 1, ()),  # a vector against a pooled map
])
def test_fitnets_matches_paper_through_its_regressor(student, s_feats, layers, s_idx, t_idx, size):
    r = rng(5)
    n = 3
    s_model, t_model = tiny(student), tiny({"arch": "cnn", "channels": [4, 7, 9]}, 1)
    m = make_method("fitnets", layers=layers, weight=2.5)
    adapter = m.setup(s_model, t_model, torch.randn(n, *SHAPE, dtype=torch.float64))
    assert m.incompatibility(s_model, t_model) is None
    feats_s = [r.normal(size=(n,) + shape) for shape in s_feats]
    feats_t = [r.normal(size=(n,) + shape) for shape in T_FEATS]
    emb_s, emb_t = r.normal(size=(n, s_feats[-1][0])), r.normal(size=(n, 9))
    logits_s, y = r.normal(size=(n, 10)), r.integers(0, 10, n)
    loss, _ = m.loss(out(logits_s, emb_s, feats_s), out(None, emb_t, feats_t), torch.tensor(y), 0.5)

    sf = emb_s if layers == "embedding" else feats_s[s_idx]
    tf = emb_t if layers == "embedding" else feats_t[t_idx]
    W, b = adapter.proj.weight.detach().numpy(), adapter.proj.bias.detach().numpy()
    if size:
        sp, tp = block_mean(sf, size), block_mean(tf, size)
    else:  # compared as vectors: a map is averaged over its positions
        sp = sf.reshape(n, sf.shape[1], -1).mean(2)
        tp = tf.reshape(n, tf.shape[1], -1).mean(2)
    sq, count = 0.0, 0
    for i in range(n):
        for o in range(W.shape[0]):
            for pos in np.ndindex(*size):
                pred = max(0.0, sum(W[o, c] * sp[(i, c) + pos] for c in range(W.shape[1])) + b[o])
                sq += (pred - tp[(i, o) + pos]) ** 2
                count += 1
    ref = np.mean([ce(logits_s[i], y[i]) for i in range(n)]) + 2.5 * sq / count
    np.testing.assert_allclose(loss.item(), ref, **TOL)


# ---------------------------------------------------------------------------------------------
# Gradients: the distillation term moves the student (and adapters), never the teacher


@pytest.mark.parametrize("name, student", [(n, {"arch": "cnn", "channels": [4, 6]}) for n in NEW] + [
    ("fitnets", {"arch": "mlp", "hidden": [12, 8]}), ("rkd", {"arch": "mlp", "hidden": [12]}),
    ("pkt", {"arch": "mlp", "hidden": [12]}), ("dist", {"arch": "mlp", "hidden": [12]}),
])
def test_gradient_reaches_student_not_teacher(name, student):
    s_model, t_model = tiny(student), tiny({"arch": "cnn", "channels": [5, 7, 9]}, 1)
    x, y = torch.randn(16, *SHAPE, dtype=torch.float64), torch.arange(16) % 10
    m = make_method(name)
    extra = m.setup(s_model, t_model, x)
    s_model.train()

    def grads(distil: bool):
        for p in list(s_model.parameters()) + list(t_model.parameters()):
            p.grad = None
        s_out, t_out = s_model.forward_all(x), t_model.forward_all(x)  # teacher deliberately not under no_grad
        loss, _ = m.loss(s_out, t_out, y, 1.0)
        if not distil:
            loss = torch.nn.functional.cross_entropy(s_out.logits, y)
        loss.backward()
        assert all(p.grad is None for p in t_model.parameters()), f"{name}: gradient reached the teacher"
        return torch.cat([p.grad.flatten() for p in s_model.parameters() if p.grad is not None])

    g_total, g_ce = grads(True), grads(False)
    # The distillation part itself must move the student: its gradient differs from CE's.
    ce_weight = 1 - m.alpha if hasattr(m, "alpha") and name != "dkd" else 1.0
    assert (g_total - ce_weight * g_ce).abs().max() > 1e-8, f"{name}: the distillation term gives no gradient"
    if extra is not None:
        grads(True)
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in extra.parameters())


# ---------------------------------------------------------------------------------------------
# Short training runs on digits


@pytest.fixture(scope="module")
def digits_teacher():
    from distill_core.engine.train import train_model
    from distill_core.teachers import all_logits
    from distill_core.train_params import train_settings

    data = load_dataset("digits")
    torch.manual_seed(0)
    teacher = build_model({"arch": "cnn", "channels": [16, 32]}, SHAPE, 10)
    train_model(teacher, data, train_settings({"epochs": 6, "threads": 1, "lr": 1e-2}), make_method("scratch"))
    return data, teacher, all_logits(teacher, data)["train"]


@pytest.mark.parametrize("name, student", [(n, {"arch": "cnn", "channels": [8, 16]}) for n in NEW] + [
    (n, {"arch": "mlp", "hidden": [32]}) for n in ("fitnets", "rkd", "pkt")  # an MLP learning from a CNN
])
def test_short_training_lowers_the_loss(name, student, digits_teacher):
    from distill_core.engine.train import train_model
    from distill_core.train_params import train_settings

    data, teacher, t_logits = digits_teacher
    torch.manual_seed(0)
    model = build_model(student, SHAPE, 10)
    # As the runner calls it: cached logits given; feature methods must still run the teacher.
    res = train_model(model, data, train_settings({"epochs": 5, "threads": 1, "lr": 1e-2}), make_method(name),
                      teacher=teacher, teacher_logits=t_logits)
    first, last = res.history[0], res.history[-1]
    assert all(math.isfinite(v) for row in res.history for v in row.values())
    assert last["loss"] < first["loss"], (name, first, last)
    assert res.best_val_accuracy > 0.4, (name, res.best_val_accuracy)  # chance is 0.1


# ---------------------------------------------------------------------------------------------
# Refusals happen when the experiment is validated


@pytest.mark.parametrize("method, student, teacher, words", [
    ("at", "mlp-small", {"arch": "cnn", "channels": [8]}, r"attention transfer needs spatial feature maps.*the student is a vector model"),
    ("at", {"arch": "cnn", "channels": [4]}, {"arch": "mlp", "hidden": [16]}, r"the teacher is a vector model"),
    ("at", "logistic", {"arch": "cnn", "channels": [8]}, r"the student is a vector model"),
    ("fitnets", "logistic", {"arch": "cnn", "channels": [8]}, r"no hidden layer to guide"),
    ("fitnets", "mlp-small", "logistic", r"the teacher has no hidden layer"),
    ("rkd", "logistic", {"arch": "cnn", "channels": [8]}, r"the student has no hidden layer"),
    ("pkt", "mlp-small", "logistic", r"the teacher has no hidden layer"),
])
def test_incompatible_architectures_are_refused_by_validation(method, student, teacher, words):
    spec = ExperimentSpec(dataset="digits", teacher=teacher, students=[student], methods=[method])
    with pytest.raises(ConfigError, match=words) as e:
        expand(spec)
    message = str(e.value)
    assert f"method {method} cannot distil" in message and "Methods that work here: " in message
    works = message.split("Methods that work here: ")[1].split(", ")
    assert method not in works and "kd" in works


def test_cross_kind_pairs_that_make_sense_are_accepted():
    spec = ExperimentSpec(dataset="digits", teacher={"arch": "cnn", "channels": [8]}, students=["mlp-small"],
                          methods=["fitnets", "rkd", "pkt", "dist", "dkd", "logit-std", "takd"])
    assert len(expand(spec)) == 1 + 7 + 1  # teacher, seven methods, the scratch baseline


@pytest.mark.parametrize("assistant, dataset, words", [
    ("cnn-small", "moons", r"assistant 'cnn-small': cnn works on signal and image inputs, not vector inputs"),
    ("no-such-model", "digits", r"assistant 'no-such-model'.*unknown model"),
])
def test_takd_bad_assistant_is_refused(assistant, dataset, words):
    spec = ExperimentSpec(dataset=dataset, teacher="mlp-medium", students=["mlp-small"],
                          methods=[{"name": "takd", "assistant": assistant}])
    with pytest.raises(ConfigError, match=words):
        expand(spec)


# ---------------------------------------------------------------------------------------------
# takd: the assistant is a cached teacher of its own


def test_takd_assistant_config():
    spec = ExperimentSpec(dataset="digits", teacher={"arch": "cnn", "channels": [16, 32]}, students=["mlp-small"],
                          methods=["kd", "takd", {"name": "takd", "assistant": "mlp-medium"}], temperatures=[3.0],
                          alphas=[0.6], seeds=[0, 1], train={"epochs": 3}, teacher_train={"epochs": 5})
    runs = expand(spec)
    teacher = runs[0]
    takd = [r for r in runs if r.method_name == "takd"]
    assert len(takd) == 4  # two assistants x two seeds
    auto = takd[0].teacher
    assert auto.role == "assistant" and auto.teacher == teacher and auto.seed == 0
    assert auto.model == {"arch": "cnn", "channels": [8, 16], "kernel": 3}  # the teacher at half width
    assert auto.method == {"name": "kd", "temperature": 3.0, "alpha": 0.6}
    assert auto.train == teacher.train and auto.dataset == teacher.dataset
    assert takd[1].teacher == auto  # both seeds learn from the same assistant
    assert takd[2].teacher.model["hidden"] == [256, 256]
    assert len({r.teacher.hash for r in takd} | {teacher.hash}) == 3
    assert all(r.teacher == teacher for r in runs[1:] if r.method_name != "takd")


def test_takd_assistant_is_trained_once_and_reused(tmp_path, monkeypatch):
    from distill_core.engine.runner import run_one
    from distill_core.teachers import TeacherCache

    monkeypatch.setenv("DISTILL_HOME", str(tmp_path))
    spec = ExperimentSpec(dataset="digits", teacher={"arch": "cnn", "channels": [8, 16]}, students=["mlp-small"],
                          methods=["takd"], seeds=[0, 1], baseline=False,
                          train={"epochs": 2, "threads": 1}, teacher_train={"epochs": 2, "threads": 1})
    teacher_run, first, second = expand(spec)
    assistant = first.teacher
    assert second.teacher == assistant

    r1 = run_one(first, tmp_path)
    assert r1["teacher_cached"] is False and r1["teacher_hash"] == assistant.hash
    cache = TeacherCache(tmp_path)
    metas = {m["role"]: m for m in cache.list()}
    assert sorted(metas) == ["assistant", "teacher"]  # the teacher was trained on the way
    assert metas["assistant"]["model"] == assistant.model
    assert metas["assistant"]["train"]["history"][0]["soft"] > 0  # distilled, not trained from scratch
    weights = cache.folder(metas["assistant"]["hash"]) / "weights.safetensors"
    stamp = weights.stat().st_mtime_ns

    r2 = run_one(second, tmp_path)
    assert r2["teacher_cached"] is True
    assert weights.stat().st_mtime_ns == stamp and len(cache.list()) == 2
