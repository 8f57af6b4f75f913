"""The fused kernels against the naive NumPy/SciPy reference, and their determinism."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from fastvi.engine.backend import KernelParams
import pytest

import naive
from conftest import COVARIANCE_TYPES
from fastvi import SufficientStats
from fastvi.engine import local as _estep
from fastvi.mixture import em as _em
from fastvi.mixture.gaussian import precision_cholesky
from fastvi.kernels import BLOCK_ROWS


def random_mixture(covariance_type, n_components, n_features, seed):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 3.0))
    means = 2.0 * rng.standard_normal((n_components, n_features))
    if covariance_type == "full":
        A = rng.standard_normal((n_components, n_features, n_features))
        cov = A @ A.transpose(0, 2, 1) / n_features + 0.5 * np.eye(n_features)
    elif covariance_type == "tied":
        A = rng.standard_normal((n_features, n_features))
        cov = A @ A.T / n_features + 0.5 * np.eye(n_features)
    elif covariance_type == "diag":
        cov = rng.uniform(0.5, 2.0, (n_components, n_features))
    else:
        cov = rng.uniform(0.5, 2.0, n_components)
    return weights, means, cov


# Row counts around the block size, one row, and several blocks with a ragged end.
SHAPES = [(1, 3, 2), (BLOCK_ROWS - 1, 4, 3), (BLOCK_ROWS + 1, 5, 1), (3 * BLOCK_ROWS + 17, 7, 4)]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_rows,n_features,n_components", SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_estep_matches_naive(covariance_type, dtype, n_rows, n_features, n_components, weighted):
    rng = np.random.default_rng(n_rows)
    X = (1.5 * rng.standard_normal((n_rows, n_features))).astype(dtype)
    weights, means, cov = random_mixture(covariance_type, n_components, n_features, n_rows)
    sample_weight = rng.uniform(0.0, 3.0, n_rows) if weighted else None
    params = _em.kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                               covariance_type)

    stats = _estep.accumulate(X, params, sample_weight, chunk_rows=2 * BLOCK_ROWS + 5)

    X64 = X.astype(np.float64)       # the reference sees exactly the values the kernel read
    log_norm, resp = naive.responsibilities(naive.log_rho_em(X64, weights, means, cov,
                                                             covariance_type))
    ref = naive.sufficient_stats(X64, resp, means, covariance_type, sample_weight)
    w = np.ones(n_rows) if sample_weight is None else sample_weight
    rtol = 1e-10
    np.testing.assert_allclose(stats.log_norm, w @ log_norm, rtol=rtol)
    np.testing.assert_allclose(stats.weight, w.sum(), rtol=1e-14)
    np.testing.assert_allclose(stats.nk, ref["N"], rtol=rtol, atol=1e-300)
    scale = np.abs(ref["s2"]).max()
    np.testing.assert_allclose(stats.s1, ref["s1"], rtol=rtol, atol=1e-12 * scale)
    np.testing.assert_allclose(stats.s2, ref["s2"], rtol=rtol, atol=1e-12 * scale)

    out = _estep.per_row(X, params, log_norm=True, resp=True, labels=True, chunk_rows=BLOCK_ROWS)
    np.testing.assert_allclose(out["log_norm"], log_norm, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["resp"], resp, rtol=1e-10, atol=1e-14)
    log_rho = naive.log_rho_em(X64, weights, means, cov, covariance_type)
    np.testing.assert_array_equal(out["labels"], log_rho.argmax(axis=1))


def test_statistics_stay_precise_with_a_large_offset():
    """Centred accumulation keeps the covariance of data far from the origin."""
    rng = np.random.default_rng(0)
    X = 1e6 + rng.standard_normal((5000, 3))
    params = KernelParams(np.zeros(1), X[:1].copy(), np.zeros((1, 3, 3)))
    stats = _estep.accumulate(X, params)
    _, mean, cov = stats.moments()
    np.testing.assert_allclose(cov[0], np.cov(X.T, bias=True), rtol=1e-9)
    np.testing.assert_allclose(mean[0], X.mean(axis=0), rtol=1e-13)


def test_stats_shift_and_add_are_exact_reparametrisations():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 4)) + 5.0
    resp = rng.dirichlet(np.ones(3), 400)
    for covariance_type in ("full", "diag"):
        ref_a, ref_b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
        a = naive.sufficient_stats(X, resp, ref_a, covariance_type)
        b = naive.sufficient_stats(X, resp, ref_b, covariance_type)
        stats_a = SufficientStats(a["N"], a["s1"], a["s2"], ref_a)
        shifted = stats_a.shift(ref_b)
        np.testing.assert_allclose(shifted.s1, b["s1"], rtol=1e-12)
        np.testing.assert_allclose(shifted.s2, b["s2"], rtol=1e-12)
        half = naive.sufficient_stats(X[:150], resp[:150], ref_b, covariance_type)
        rest = naive.sufficient_stats(X[150:], resp[150:], ref_a, covariance_type)
        total = (SufficientStats(half["N"], half["s1"], half["s2"], ref_b)
                 + SufficientStats(rest["N"], rest["s1"], rest["s2"], ref_a))
        np.testing.assert_allclose(total.s2, b["s2"], rtol=1e-12)
        np.testing.assert_allclose((total - stats_a.shift(ref_b)).nk, 0.0, atol=1e-12)


def test_read_only_input_is_accepted():
    X = np.random.default_rng(0).standard_normal((300, 3))
    X.setflags(write=False)
    weights, means, cov = random_mixture("full", 2, 3, 0)
    params = _em.kernel_params(weights, means, precision_cholesky(cov, "full"), "full")
    stats = _estep.accumulate(X, params)
    assert np.isfinite(stats.log_norm)


_DETERMINISM_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import fastvi
    X = np.random.default_rng(0).standard_normal((20000, 5))
    X[:7000] += 4.0
    out = []
    for cls in (fastvi.GaussianMixture, fastvi.BayesianGaussianMixture):
        for cov in ("full", "diag"):
            m = cls(3, covariance_type=cov, max_iter=5, tol=0, random_state=0,
                    chunk_size=5000).fit(X)
            out += [m.means_, m.covariances_, np.atleast_1d(m.lower_bound_)]
    sys.stdout.write(np.concatenate([np.ravel(a) for a in out]).tobytes().hex())
""")


def test_bit_identical_for_one_and_two_threads():
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _DETERMINISM_SCRIPT],
                              env=env, capture_output=True, text=True, check=True)
        results.append(proc.stdout)
    assert results[0] and results[0] == results[1]
