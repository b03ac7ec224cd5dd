"""The parts of the batched logistic-regression solver (fewshot.classifiers._newton), each against
an independent reference: numpy's dense solve, a hand-written backtracking loop, numpy loss and
gradient formulas. The whole solver is tested against scikit-learn in test_classifiers.py."""

import numpy as np
import pytest
import torch

from fewshot.classifiers._newton import armijo_backtracking, conjugate_gradient, gram_factor, newton_solve, objective


def _spd(E, n, seed, cond=100.0):
    """``E`` random SPD ``(n, n)`` float64 matrices with condition numbers up to ``cond``."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(E, n, n)))
    lam = np.exp(rng.uniform(0, np.log(cond), size=(E, n)))
    return np.einsum("eij,ej,ekj->eik", Q, lam, Q)


def _identity(v):
    return v


@pytest.mark.parametrize("precondition", ["none", "jacobi"])
def test_cg_solves_batched_spd_systems(precondition):
    E, n = 7, 12
    A = _spd(E, n, seed=0)
    b = np.random.default_rng(1).normal(size=(E, n, 1))
    At, bt = torch.from_numpy(A), torch.from_numpy(b)
    diag = torch.diagonal(At, dim1=-2, dim2=-1).unsqueeze(-1)
    pre = _identity if precondition == "none" else (lambda r: r / diag)
    x = conjugate_gradient(lambda v: At @ v, pre, bt, 1e-13, 10 * n)
    ref = np.linalg.solve(A, b)
    assert x.dtype == torch.float64 and x.shape == (E, n, 1)
    np.testing.assert_allclose(x.numpy(), ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_cg_on_matrix_blocks_matches_torch_solve():
    # the solver's vectors are (E, a, b) blocks; A acts on the flattened block
    E, a, c = 4, 3, 5
    A = torch.from_numpy(_spd(E, a * c, seed=2))
    B = torch.from_numpy(np.random.default_rng(3).normal(size=(E, a, c)))

    def matvec(v):
        return (A @ v.reshape(E, a * c, 1)).reshape(E, a, c)

    x = conjugate_gradient(matvec, _identity, B, 1e-13, 10 * a * c)
    ref = torch.linalg.solve(A, B.reshape(E, a * c, 1)).reshape(E, a, c)
    torch.testing.assert_close(x, ref, rtol=1e-9, atol=1e-9)


def test_cg_stops_each_episode_at_its_own_tolerance():
    E, n = 3, 20
    A = torch.from_numpy(_spd(E, n, seed=4, cond=1e4))
    b = torch.from_numpy(np.random.default_rng(5).normal(size=(E, n, 1)))
    b[2] = 0.0  # a zero right-hand side: x = 0, no work
    rtol = torch.tensor([1e-12, 1e-2, 0.5], dtype=torch.float64)
    x = conjugate_gradient(lambda v: A @ v, _identity, b, rtol, 10 * n)
    res = (b - A @ x).norm(dim=(-2, -1)) / b.norm(dim=(-2, -1)).clamp_min(1e-300)
    assert res[0] <= 1e-12 and 1e-12 < res[1] <= 1e-2  # the loose episode stopped early
    assert torch.equal(x[2], torch.zeros(n, 1, dtype=torch.float64))
    ref = torch.linalg.solve(A[:1], b[:1])
    torch.testing.assert_close(x[:1], ref, rtol=1e-8, atol=1e-8)


def _quadratic(A, g):
    """f(theta) = 0.5 vec(theta)^T A vec(theta) + g . theta per episode, theta (E, a, b)."""

    def f(theta):
        v = theta.reshape(theta.shape[0], -1, 1)
        return (0.5 * (v.transpose(1, 2) @ A @ v) + g.reshape(g.shape[0], 1, -1) @ v).reshape(-1)

    return f


def _reference_backtracking(f, theta, d, slope, c1, slack, max_halvings):
    """Hand-written loop for one episode (numpy floats): the accepted step, or None."""
    f0, t = float(f(theta)), 1.0
    for _ in range(max_halvings):
        if float(f(theta + t * d)) <= f0 + c1 * t * float(slope) + slack * abs(f0):
            return t
        t /= 2
    return None


@pytest.mark.parametrize("c1, slack", [(1e-4, 1e-12), (0.4, 0.0)])
def test_armijo_matches_a_hand_written_backtracking_loop(c1, slack):
    E, a, b = 8, 2, 3
    rng = np.random.default_rng(6)
    A = torch.from_numpy(_spd(E, a * b, seed=7, cond=50.0))
    g = torch.from_numpy(rng.normal(size=(E, a, b)))
    f = _quadratic(A, g)
    theta = torch.from_numpy(rng.normal(size=(E, a, b)))
    grad = (A @ theta.reshape(E, -1, 1)).reshape(E, a, b) + g
    # descent directions overshooting by factors from 0.5 to 300: steps 1 down to ~2^-8 accepted
    d = -grad * torch.from_numpy(np.geomspace(0.5, 300.0, E))[:, None, None]
    slope = (grad * d).sum((-2, -1))
    done = torch.zeros(E, dtype=torch.bool)
    done[3] = True

    def evaluate(cand):
        return 2 * cand, f(cand)  # a by-product carried along with theta

    new, state, fnew = armijo_backtracking(evaluate, theta, 2 * theta, f(theta), d, slope, done, c1=c1, slack=slack)
    steps = set()
    for e in range(E):
        fe = _quadratic(A[e : e + 1], g[e : e + 1])
        t = None if done[e] else _reference_backtracking(fe, theta[e : e + 1], d[e : e + 1], slope[e], c1, slack, 40)
        expected = theta[e] if t is None else theta[e] + t * d[e]
        torch.testing.assert_close(new[e], expected, rtol=0, atol=0)
        torch.testing.assert_close(state[e], 2 * expected, rtol=0, atol=0)
        assert float(fnew[e]) == float(fe(expected[None]))
        if t is not None:  # Armijo's condition holds at t and fails at 2t (unless t = 1)
            f0 = float(fe(theta[e : e + 1]))
            assert float(fnew[e]) <= f0 + c1 * t * float(slope[e]) + slack * abs(f0)
            if t < 1:
                assert float(fe(theta[e : e + 1] + 2 * t * d[e : e + 1])) > f0 + c1 * 2 * t * float(
                    slope[e]
                ) + slack * abs(f0)
            steps.add(t)
    assert len(steps) >= 3  # the directions exercised different numbers of halvings
    assert torch.equal(new[3], theta[3])


def test_armijo_keeps_theta_without_an_acceptable_step():
    E = 2
    A = torch.eye(4, dtype=torch.float64).expand(E, 4, 4)
    g = torch.zeros(E, 2, 2, dtype=torch.float64)
    f = _quadratic(A, g)
    theta = torch.ones(E, 2, 2, dtype=torch.float64)
    d = theta.clone()  # an ascent direction: f only grows along it
    slope = (theta * d).sum((-2, -1))
    new, state, fnew = armijo_backtracking(
        lambda c: (c, f(c)),
        theta,
        theta,
        f(theta),
        d,
        slope,
        torch.zeros(E, dtype=torch.bool),
        slack=0.0,
        max_halvings=10,
    )
    assert torch.equal(new, theta) and torch.equal(state, theta) and torch.equal(fnew, f(theta))


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def test_objective_matches_a_numpy_loop():
    rng = np.random.default_rng(8)
    E, n, K, p = 3, 6, 4, 5
    logits, theta = rng.normal(size=(E, n, K)), rng.normal(size=(E, K, p))
    y = rng.integers(0, K, size=(E, n))
    pen = np.array([1, 1, 1, 1, 0.0])
    got = objective(*(torch.from_numpy(v) for v in (logits, theta, y)), 2.0, torch.from_numpy(pen))
    for e in range(E):
        nll = sum(-np.log(_softmax(logits[e, i])[y[e, i]]) for i in range(n))
        assert float(got[e]) == pytest.approx(2.0 * nll + 0.5 * (theta[e] ** 2 * pen).sum(), rel=1e-12)


@pytest.mark.parametrize("C", [0.5, 1.0, 10.0])
def test_newton_solution_satisfies_the_optimality_condition(C):
    # independent check in numpy: the gradient of the objective vanishes at the returned theta
    rng = np.random.default_rng(9)
    E, n, K = 5, 10, 5
    Z = rng.normal(size=(E, n, n))
    y = np.stack([rng.permutation(np.repeat(np.arange(K), 2)) for _ in range(E)])
    theta, n_iter, converged = newton_solve(torch.from_numpy(Z), torch.from_numpy(y), K, C, 100, 1e-10)
    assert bool(converged.all()) and int(n_iter.min()) >= 1
    theta = theta.numpy()
    Zt = np.concatenate([Z, np.ones((E, n, 1))], axis=-1)
    for e in range(E):
        P = _softmax(Zt[e] @ theta[e].T)
        grad = C * (P - np.eye(K)[y[e]]).T @ Zt[e] + theta[e] * np.r_[np.ones(n), 0.0]
        assert np.abs(grad).max() / (C * n) <= 1e-10


def test_newton_max_iter_reports_unconverged():
    rng = np.random.default_rng(10)
    Z = torch.from_numpy(rng.normal(size=(3, 10, 10)))
    y = torch.from_numpy(np.tile(np.repeat(np.arange(5), 2), (3, 1)))
    _, n_iter, converged = newton_solve(Z, y, 5, 1.0, 1, 1e-10)
    assert n_iter.tolist() == [1, 1, 1] and not bool(converged.any())


def test_gram_factor_reproduces_regular_and_singular_gram_matrices():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(4, 6, 9))
    X[1, 3] = X[1, 0]  # duplicated row: singular Gram matrix, eigendecomposition branch
    X[2, :, 3:] = 0.0
    X[2, 4:] = X[2, :2]  # rank 3 < n
    G = torch.from_numpy(X @ X.transpose(0, 2, 1))
    Z, T = gram_factor(G, float(np.finfo(np.float64).eps))
    torch.testing.assert_close(Z @ Z.transpose(1, 2), G, rtol=1e-10, atol=1e-10)
    # V^T = T X has orthonormal rows on the kept directions, and X = Z V^T
    Vt = T.numpy() @ X
    for e in range(4):
        keep = np.abs(Vt[e]).sum(1) > 0
        np.testing.assert_allclose(Vt[e][keep] @ Vt[e][keep].T, np.eye(keep.sum()), atol=1e-10)
        np.testing.assert_allclose(Z[e].numpy() @ Vt[e], X[e], atol=1e-10)
    assert np.abs(Vt[0]).sum(1).min() > 0  # regular: all n directions kept
