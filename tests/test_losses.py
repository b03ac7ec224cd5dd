"""Tests of fewshot.losses against float64 loop references written straight from the formulas.

The references below share no code with the implementation: they normalise, form every
``s_ij`` and sum plain ``exp`` terms anchor by anchor, in float64, and get their gradients from
torch autograd on that loop.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from fewshot.losses import (
    OBJECTIVES,
    NoPositivePairsWarning,
    Objective,
    ObjectiveOutput,
    create_objective,
    hscl_loss,
    schane_loss,
    simclr_loss,
    supcon_in_loss,
    supcon_loss,
)

TAUS = [0.05, 0.1, 0.5, 1.0]


# --------------------------------------------------------------------------- references


def _sims(x: torch.Tensor, tau: float) -> list[list[torch.Tensor]]:
    """s_ij = z_i . z_j / tau as a nested list of float64 scalars (z = x / ||x||)."""
    x = x.double()
    z = [row / torch.sqrt(torch.sum(row * row)) for row in x]
    return [[torch.dot(zi, zj) / tau for zj in z] for zi in z]


def _split(labels: list[int], i: int) -> tuple[list[int], list[int]]:
    pos = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
    neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
    return pos, neg


def _mean(terms: list[torch.Tensor]) -> torch.Tensor:
    return sum(terms) / len(terms)


def ref_schane(x, labels, tau, detach_weights=False):
    s, labels = _sims(x, tau), labels.tolist()
    terms = []
    for i in range(len(labels)):
        pos, neg = _split(labels, i)
        if not pos:
            continue
        pos_sum = sum(torch.exp(s[i][p]) for p in pos)
        neg_sum = torch.zeros((), dtype=torch.float64)
        if neg:
            denom = sum(torch.exp(s[i][k]) for k in neg)
            for k in neg:
                beta = len(neg) * torch.exp(s[i][k]) / denom
                if detach_weights:
                    beta = beta.detach()
                neg_sum = neg_sum + beta * torch.exp(s[i][k])
        terms.append(-torch.log(pos_sum / (pos_sum + neg_sum) / len(pos)))
    return _mean(terms)


def ref_supcon_out(x, labels, tau):
    s, labels = _sims(x, tau), labels.tolist()
    terms = []
    for i in range(len(labels)):
        pos, _ = _split(labels, i)
        if not pos:
            continue
        denom = sum(torch.exp(s[i][a]) for a in range(len(labels)) if a != i)
        terms.append(-sum(torch.log(torch.exp(s[i][p]) / denom) for p in pos) / len(pos))
    return _mean(terms)


def ref_supcon_in(x, labels, tau):
    s, labels = _sims(x, tau), labels.tolist()
    terms = []
    for i in range(len(labels)):
        pos, _ = _split(labels, i)
        if not pos:
            continue
        denom = sum(torch.exp(s[i][a]) for a in range(len(labels)) if a != i)
        terms.append(-torch.log(sum(torch.exp(s[i][p]) / denom for p in pos) / len(pos)))
    return _mean(terms)


def ref_hscl(x, labels, tau, beta=1.0, detach_weights=False):
    s, labels = _sims(x, tau), labels.tolist()
    terms = []
    for i in range(len(labels)):
        pos, neg = _split(labels, i)
        if not pos:
            continue
        neg_sum = torch.zeros((), dtype=torch.float64)
        if neg:
            weights = [torch.exp(beta * s[i][k]) for k in neg]
            total = sum(weights)
            for w, k in zip(weights, neg):
                w = w / total
                if detach_weights:
                    w = w.detach()
                neg_sum = neg_sum + len(neg) * w * torch.exp(s[i][k])
        pair_terms = [-torch.log(torch.exp(s[i][p]) / (torch.exp(s[i][p]) + neg_sum)) for p in pos]
        terms.append(_mean(pair_terms))
    return _mean(terms)


# --------------------------------------------------------------------------- batches


def _batch(kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeddings float64 (B, d), labels (B,), instance ids (B,)) of a named kind."""
    gen = torch.Generator().manual_seed(seed)
    d = 5
    if kind == "two_views":
        images = torch.randint(0, 3, (5,), generator=gen)
        base = torch.randn(5, d, generator=gen, dtype=torch.float64)
        x = torch.cat([base, base]) + 0.3 * torch.randn(10, d, generator=gen, dtype=torch.float64)
        return x, images.repeat(2), torch.arange(5).repeat(2)
    labels = {
        "random": torch.randint(0, 3, (10,), generator=gen),
        "singletons": torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5]),
        "single_class": torch.zeros(8, dtype=torch.long),
        "duplicated_rows": torch.tensor([0, 0, 1, 1, 2, 0, 1, 2, 2, 3]),
        "mixed_norms": torch.randint(0, 3, (10,), generator=gen),
    }[kind]
    x = torch.randn(labels.shape[0], d, generator=gen, dtype=torch.float64)
    if kind == "duplicated_rows":
        x[5], x[6], x[7] = x[0], x[2], x[0]  # copies with the same label (5, 6) and another (7)
    if kind == "mixed_norms":
        x = x * torch.logspace(-8, 8, labels.shape[0], dtype=torch.float64)[:, None]
    ids = torch.arange(labels.shape[0]) // 2
    return x, labels, ids


KINDS = ["random", "singletons", "single_class", "two_views", "duplicated_rows", "mixed_norms"]

# name -> (implementation(x, labels, ids, tau), reference(x, labels, ids, tau))
LOSSES = {
    "schane": (lambda x, y, i, t: schane_loss(x, y, t), lambda x, y, i, t: ref_schane(x, y, t)),
    "schane_detach": (
        lambda x, y, i, t: schane_loss(x, y, t, detach_weights=True),
        lambda x, y, i, t: ref_schane(x, y, t, detach_weights=True),
    ),
    "supcon": (lambda x, y, i, t: supcon_loss(x, y, t), lambda x, y, i, t: ref_supcon_out(x, y, t)),
    "supcon_in": (lambda x, y, i, t: supcon_in_loss(x, y, t), lambda x, y, i, t: ref_supcon_in(x, y, t)),
    "simclr": (lambda x, y, i, t: simclr_loss(x, i, t), lambda x, y, i, t: ref_supcon_out(x, i, t)),
    "hscl_b0": (
        lambda x, y, i, t: hscl_loss(x, y, t, beta=0.0),
        lambda x, y, i, t: ref_hscl(x, y, t, 0.0),
    ),
    "hscl_b1": (lambda x, y, i, t: hscl_loss(x, y, t), lambda x, y, i, t: ref_hscl(x, y, t, 1.0)),
    "hscl_b3": (
        lambda x, y, i, t: hscl_loss(x, y, t, beta=3.0),
        lambda x, y, i, t: ref_hscl(x, y, t, 3.0),
    ),
    "hscl_b3_detach": (
        lambda x, y, i, t: hscl_loss(x, y, t, beta=3.0, detach_weights=True),
        lambda x, y, i, t: ref_hscl(x, y, t, 3.0, detach_weights=True),
    ),
}


def _value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


def _assert_grad_close(grad, ref, x, rtol, floor):
    """Compare gradients row-scaled by ||x_i|| (the gradient wrt a row scales as 1/||x_i||)."""
    norms = torch.linalg.vector_norm(x.double(), dim=1, keepdim=True)
    grad, ref = grad.double() * norms, ref * norms
    scale = ref.abs().max().item()
    torch.testing.assert_close(grad, ref, rtol=rtol, atol=rtol * scale + floor)


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_matches_float64_loop_reference(loss, kind, tau):
    impl, ref = LOSSES[loss]
    x, labels, ids = _batch(kind)
    x = x.float().double()  # exactly representable in float32, so one reference serves both
    ref_value, ref_grad = _value_and_grad(lambda e: ref(e, labels, ids, tau), x)

    value, grad = _value_and_grad(lambda e: impl(e, labels, ids, tau), x)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-10)
    _assert_grad_close(grad, ref_grad, x, rtol=1e-8, floor=1e-14)

    value32, grad32 = _value_and_grad(lambda e: impl(e, labels, ids, tau), x.float())
    assert value32.dtype == torch.float32 and grad32.dtype == torch.float32
    torch.testing.assert_close(value32.double(), ref_value, rtol=1e-5, atol=1e-5)
    _assert_grad_close(grad32, ref_grad, x, rtol=1e-5, floor=1e-7)


@pytest.mark.parametrize("norm", [1e-30, 1e30])
@pytest.mark.parametrize("loss", ["schane", "supcon", "supcon_in", "hscl_b1"])
def test_extreme_norms_in_float32(loss, norm):
    """Norms whose squares under- or overflow float32 still give the exact loss."""
    impl, ref = LOSSES[loss]
    x, labels, ids = _batch("random", seed=3)
    x32 = (x * norm).float()
    value = impl(x32, labels, ids, 0.1)
    expected = ref(x32.double(), labels, ids, 0.1)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_row_blocks_give_the_same_loss(loss, monkeypatch):
    """The batch is processed in blocks of rows; force 3-row blocks and compare with the loop."""
    from fewshot.losses import _pairwise

    impl, ref = LOSSES[loss]
    x, labels, ids = _batch("singletons", seed=13)
    monkeypatch.setitem(_pairwise._BLOCK_ELEMENTS, "cpu", 3 * x.shape[0])
    value, grad = _value_and_grad(lambda e: impl(e, labels, ids, 0.1), x)
    ref_value, ref_grad = _value_and_grad(lambda e: ref(e, labels, ids, 0.1), x)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-10)
    _assert_grad_close(grad, ref_grad, x, rtol=1e-8, floor=1e-14)


def test_tiled_symmetrization():
    from fewshot.losses._pairwise import _symmetrize_

    g = torch.randn(10, 10, generator=torch.Generator().manual_seed(14))
    torch.testing.assert_close(_symmetrize_(g.clone(), 3), g + g.t(), rtol=0, atol=0)


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_permutation_and_rescaling_invariance(loss):
    impl, _ = LOSSES[loss]
    x, labels, ids = _batch("random", seed=1)
    value, grad = _value_and_grad(lambda e: impl(e, labels, ids, 0.1), x)

    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(2))
    value_p, grad_p = _value_and_grad(lambda e: impl(e, labels[perm], ids[perm], 0.1), x[perm])
    torch.testing.assert_close(value_p, value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_p, grad[perm], rtol=1e-10, atol=1e-12)

    scale = torch.logspace(-3, 3, x.shape[0], dtype=torch.float64)[:, None]
    value_s, grad_s = _value_and_grad(lambda e: impl(e, labels, ids, 0.1), x * scale)
    torch.testing.assert_close(value_s, value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_s * scale, grad, rtol=1e-9, atol=1e-12)  # d/d(cx) = (d/dx) / c


def _equidistant_negatives() -> tuple[torch.Tensor, torch.Tensor]:
    """Each class lives in its own coordinates, so every negative has s = 0 with every anchor."""
    gen = torch.Generator().manual_seed(4)
    sizes = [3, 2, 4]
    blocks = []
    for c, size in enumerate(sizes):
        block = torch.zeros(size, 3 * len(sizes), dtype=torch.float64)
        block[:, 3 * c : 3 * c + 3] = torch.randn(size, 3, generator=gen, dtype=torch.float64)
        blocks.append(block)
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return torch.cat(blocks), labels


@pytest.mark.parametrize("tau", TAUS)
def test_schane_equals_supcon_lin_when_negatives_are_equally_similar(tau):
    x, labels = _equidistant_negatives()
    expected = ref_supcon_in(x, labels, tau)
    torch.testing.assert_close(schane_loss(x, labels, tau), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(schane_loss(x, labels, tau, detach_weights=True), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(supcon_in_loss(x, labels, tau), expected, rtol=1e-12, atol=1e-12)


def test_supcon_in_differs_from_schane_and_supcon_out_on_a_generic_batch():
    x, labels, _ = _batch("random", seed=3)
    value = supcon_in_loss(x, labels, 0.5)
    assert not torch.allclose(value, schane_loss(x, labels, 0.5))
    assert not torch.allclose(value, supcon_loss(x, labels, 0.5))


def test_supcon_with_instance_ids_equals_simclr():
    x, _, ids = _batch("two_views", seed=5)
    torch.testing.assert_close(supcon_loss(x, ids, 0.2), simclr_loss(x, ids, 0.2), rtol=0, atol=0)


@pytest.mark.parametrize("detach", [False, True])
def test_hscl_beta1_equals_schane_with_one_positive_per_anchor(detach):
    x, _, ids = _batch("two_views", seed=6)
    x = x.requires_grad_(True)
    a = hscl_loss(x, ids, 0.1, beta=1.0, detach_weights=detach)
    b = schane_loss(x, ids, 0.1, detach_weights=detach)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(a, x)[0], torch.autograd.grad(b, x)[0])


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_bf16_autocast_is_finite_at_large_batch_and_low_temperature(loss):
    impl, _ = LOSSES[loss]
    gen = torch.Generator().manual_seed(7)
    batch = 2048
    layer = torch.nn.Linear(16, 32)
    inputs = torch.randn(batch, 16, generator=gen)
    labels = torch.randint(0, 64, (batch // 2,), generator=gen).repeat(2)
    ids = torch.arange(batch // 2).repeat(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = layer(inputs)
        assert emb.dtype == torch.bfloat16
        value = impl(emb, labels, ids, 0.05)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0
    # the loss of the bf16 embeddings is the float32 loss of the same (rounded) numbers
    expected = impl(emb.detach().float(), labels, ids, 0.05)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)


def test_half_precision_input_without_autocast():
    x, labels, _ = _batch("random", seed=8)
    value = schane_loss(x.half(), labels, 0.05)
    assert value.dtype == torch.float32
    expected = ref_schane(x.half().double(), labels, 0.05)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_no_positive_returns_graph_connected_zero_and_warns(loss):
    impl, _ = LOSSES[loss]
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    unique = torch.arange(6)
    with pytest.warns(NoPositivePairsWarning, match="no anchor in the batch has a positive"):
        value = impl(x, unique, unique, 0.5)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert x.grad is not None and (x.grad == 0).all()


def test_no_positive_warning_is_shown_once_per_call_site():
    x = torch.randn(4, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            schane_loss(x, torch.arange(4))
    assert sum(issubclass(w.category, NoPositivePairsWarning) for w in caught) == 1


def test_anchors_without_positives_are_excluded_from_the_mean():
    x, labels, _ = _batch("singletons", seed=9)
    keep = torch.tensor([lab in (0, 2, 5) for lab in labels.tolist()])
    # anchors of singleton classes add nothing, but still serve as negatives of the others
    full = schane_loss(x, labels, 0.5)
    torch.testing.assert_close(full, ref_schane(x, labels, 0.5), rtol=1e-12, atol=1e-12)
    assert not math.isclose(full.item(), schane_loss(x[keep], labels[keep], 0.5).item())


def test_no_grad_mode_gives_the_same_value():
    x, labels, _ = _batch("random", seed=10)
    x.requires_grad_(True)
    with torch.no_grad():
        value = schane_loss(x, labels, 0.1)
    assert not value.requires_grad
    torch.testing.assert_close(value, schane_loss(x, labels, 0.1).detach())


# --------------------------------------------------------------------------- bad input


def _bad_calls():
    """(call, error type, message pattern) triples; each call must raise that error."""
    x = torch.randn(4, 3)
    y = torch.tensor([0, 0, 1, 1])
    nan, inf, zero = x.clone(), x.clone(), x.clone()
    nan[2, 1], inf[1, 0], zero[3] = float("nan"), float("inf"), 0.0
    return [
        (lambda: schane_loss(x[0], y), ValueError, r"embeddings must be 2-D \(B, d\), got shape \(3,\)"),
        (lambda: supcon_loss(x[None], y), ValueError, "embeddings must be 2-D"),
        (lambda: schane_loss(x, y[:3]), ValueError, "embeddings has 4 rows but labels has 3 entries"),
        (lambda: simclr_loss(x, y[:2]), ValueError, "embeddings has 4 rows but instance_ids has 2"),
        (lambda: schane_loss(nan, y), ValueError, r"embeddings contain NaN or Inf \(first in row 2\)"),
        (lambda: hscl_loss(inf, y), ValueError, r"NaN or Inf \(first in row 1\)"),
        (lambda: schane_loss(zero, y), ValueError, "row 3 is all zeros"),
        (lambda: schane_loss(x, y.float()), TypeError, "labels must have an integer dtype, got torch.float32"),
        (lambda: simclr_loss(x, y.bool()), TypeError, "instance_ids must have an integer dtype"),
        (lambda: schane_loss(x.long(), y), TypeError, "embeddings must have a floating-point dtype"),
        (lambda: schane_loss(x.numpy(), y), TypeError, "embeddings must be a torch.Tensor"),
        (lambda: schane_loss(x, y[None]), ValueError, "labels must be 1-D"),
        (lambda: schane_loss(x, y, temperature=0.0), ValueError, "temperature must be a finite number > 0, got 0.0"),
        (lambda: supcon_loss(x, y, temperature=-0.5), ValueError, "temperature must be .* got -0.5"),
        (lambda: hscl_loss(x, y, temperature=float("nan")), ValueError, "temperature must be"),
        (lambda: hscl_loss(x, y, beta=-1.0), ValueError, "beta must be a finite number >= 0, got -1.0"),
        (lambda: Objective("schane", lam=1.5), ValueError, r"lam must be in \[0, 1\], got 1.5"),
        (lambda: Objective("schane", lam=-0.1), ValueError, r"lam must be in \[0, 1\], got -0.1"),
        (lambda: Objective("schane", temperature=0), ValueError, "temperature must be"),
        (lambda: create_objective("supcon", lam=2), ValueError, r"lam must be in \[0, 1\]"),
        (
            lambda: create_objective("triplet"),
            ValueError,
            "unknown objective 'triplet'; choose one of: ce, hscl, schane, simclr, supcon, supcon-in",
        ),
        (lambda: Objective("supcon", beta=2.0), TypeError, "objective 'supcon' got unexpected option"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_input_is_rejected_with_a_message(index):
    call, error, message = _bad_calls()[index]
    with pytest.raises(error, match=message):
        call()


# --------------------------------------------------------------------------- objective


def _objective_batch(seed=11):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 3, generator=gen, requires_grad=True)
    emb = torch.randn(8, 5, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 0, 1, 2, 0])
    ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    return logits, emb, labels, ids


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_lam0_is_cross_entropy(name):
    logits, emb, labels, ids = _objective_batch()
    out = create_objective(name, lam=0.0)(logits, emb, labels, ids)
    assert isinstance(out, ObjectiveOutput)
    torch.testing.assert_close(out.total, F.cross_entropy(logits, labels))
    torch.testing.assert_close(out.ce, out.total)
    assert out.contrastive.item() == 0.0


@pytest.mark.parametrize("name", sorted(set(OBJECTIVES) - {"ce"}))
def test_lam1_is_the_contrastive_term_alone(name):
    logits, emb, labels, ids = _objective_batch()
    out = create_objective(name, lam=1.0, temperature=0.2)(logits, emb, labels, ids)
    spec = OBJECTIVES[name]
    target = ids if spec.target == "instance_ids" else labels
    torch.testing.assert_close(out.total, spec.loss(emb, target, temperature=0.2))
    torch.testing.assert_close(out.ce, F.cross_entropy(logits, labels))
    out.total.backward()
    assert logits.grad is None and emb.grad is not None


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_registry_objectives_blend_and_backpropagate(name):
    logits, emb, labels, ids = _objective_batch()
    objective = create_objective(name, lam=0.9, temperature=0.5)
    out = objective(logits, emb, labels, ids)
    ce = F.cross_entropy(logits, labels)
    if name == "ce":  # plain CE whatever lam
        assert objective.contrastive is None
        torch.testing.assert_close(out.total, ce)
    else:
        torch.testing.assert_close(out.total, 0.1 * ce + 0.9 * out.contrastive)
        assert out.contrastive.item() > 0
    out.total.backward()
    assert torch.isfinite(logits.grad).all()
    assert name in repr(objective) or name == "ce"


def test_objective_options_reach_the_loss():
    logits, emb, labels, ids = _objective_batch()
    objective = Objective("hscl", lam=1.0, temperature=0.3, beta=2.0, detach_weights=True)
    out = objective(logits, emb, labels)
    torch.testing.assert_close(out.total, hscl_loss(emb, labels, 0.3, beta=2.0))
    out = Objective(None, lam=0.7)(logits, emb, labels)
    torch.testing.assert_close(out.total, F.cross_entropy(logits, labels))


def test_objective_with_all_gathered_embeddings():
    logits, emb, labels, ids = _objective_batch()
    gen = torch.Generator().manual_seed(12)
    other = torch.randn(8, 5, generator=gen)
    other_labels = torch.tensor([2, 2, 1, 0, 1, 0, 2, 1])
    gathered = torch.cat([emb, other])
    all_labels = torch.cat([labels, other_labels])
    objective = Objective("schane", lam=0.5)
    out = objective(logits, gathered, labels, embedding_labels=all_labels)
    torch.testing.assert_close(out.contrastive, schane_loss(gathered, all_labels))
    torch.testing.assert_close(out.ce, F.cross_entropy(logits, labels))
    message = "embeddings has 16 rows but labels has 8 entries; pass embedding_labels"
    with pytest.raises(ValueError, match=message):
        objective(logits, gathered, labels)

    all_ids = torch.cat([ids, ids + 4])
    objective = Objective("simclr", lam=0.5)
    out = objective(logits, gathered, labels, ids, embedding_instance_ids=all_ids)
    torch.testing.assert_close(out.contrastive, simclr_loss(gathered, all_ids))


def test_simclr_objective_needs_instance_ids():
    logits, emb, labels, _ = _objective_batch()
    with pytest.raises(ValueError, match="objective 'simclr' needs instance_ids"):
        Objective("simclr")(logits, emb, labels)
    Objective("simclr", lam=0.0)(logits, emb, labels)  # not computed, so not needed


def test_objective_rejects_mismatched_logits():
    logits, emb, labels, _ = _objective_batch()
    with pytest.raises(ValueError, match="logits has 8 rows but labels has 7 entries"):
        Objective("supcon")(logits, emb, labels[:7])
    with pytest.raises(ValueError, match=r"logits must be 2-D \(N, C\)"):
        Objective("supcon")(logits[0], emb, labels)
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        Objective("supcon")(logits, emb, labels.float())
