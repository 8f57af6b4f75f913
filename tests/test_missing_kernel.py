"""The missing-value E-step (``fastvi.kernels.missing``, issue 29) against the naive
per-row, per-component reference of ``tests/naive.py`` (explicit sub-matrices), for every
covariance type, both dtypes, weights, and rows with 0, 1, D - 1 and D missing entries.

Tolerances: the kernel works in the precision form (a Cholesky factor of Lambda_mm, the
Schur complement), the reference in the covariance form (inverses of Sigma_oo); for these
well-conditioned mixtures (eigenvalues of Sigma in [0.5, ~5]) the two agree to ~1e-12
relative, so 1e-9 is asked.
"""
import numpy as np
import pytest

import naive
from conftest import COVARIANCE_TYPES
from test_kernels import random_mixture
from fastvi.engine.local import _float64_params, _readonly
from fastvi.kernels import BLOCK_ROWS
from fastvi.kernels.missing import estep_missing
from fastvi.mixture import em
from fastvi.mixture.gaussian import precision_cholesky


def with_holes(X, seed, rate=0.3):
    """``X`` with entries removed at random, and rows 0..3 given 0, 1, D - 1, D holes."""
    rng = np.random.default_rng(seed)
    holes = X.astype(np.float64)
    holes[rng.random(X.shape) < rate] = np.nan
    D = X.shape[1]
    for row, count in enumerate((0, 1, D - 1, D)):
        if row < X.shape[0]:
            holes[row] = X[row]
            holes[row, rng.permutation(D)[:count]] = np.nan
    return holes.astype(X.dtype)


def ro(array):
    return _readonly(np.ascontiguousarray(array))


def ro_params(params):
    return _float64_params(params)


def run_kernel(X, weights, params, full, want_stats=True, labels=1):
    K, D = params.means.shape
    if want_stats:
        nk, s1 = np.zeros(K), np.zeros((K, D))
        s2 = np.zeros((K, D, D) if full else (K, D))
    else:
        nk, s1, s2 = np.zeros(0), np.zeros((0, D)), np.zeros((0, D, D) if full else (0, D))
    n = X.shape[0]
    log_norm, resp = np.empty(n), np.empty((n, K))
    top = np.empty((n, labels), dtype=np.int64)
    # read-only inputs, as the local backend passes them: the same compiled kernels
    weights = np.zeros(0) if weights is None else weights
    total = estep_missing(ro(X), ro(weights), *ro_params(params), nk, s1, s2, log_norm,
                          resp, top)
    if full and want_stats:
        lower = np.tril_indices(D, -1)
        s2[:, lower[0], lower[1]] = s2[:, lower[1], lower[0]]
    return total, nk, s1, s2, log_norm, resp, top


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_rows,n_features,n_components",
                         [(4, 1, 2), (6, 4, 1), (BLOCK_ROWS + 9, 5, 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_missing_estep_matches_naive(covariance_type, dtype, n_rows, n_features,
                                     n_components, weighted):
    weights, means, cov = random_mixture(covariance_type, n_components, n_features, 7)
    rng = np.random.default_rng(n_rows)
    X = with_holes(rng.standard_normal((n_rows, n_features)) * 2.0, n_rows).astype(dtype)
    sample_weight = rng.uniform(0.2, 2.0, n_rows) if weighted else None
    params = em.kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                              covariance_type)
    full = covariance_type in ("full", "tied")
    total, nk, s1, s2, log_norm, resp, top = run_kernel(X, sample_weight, params, full)

    X64 = X.astype(np.float64)
    log_rho = naive.log_gaussian_observed(X64, means, cov, covariance_type) + np.log(weights)
    want_log_norm, want_resp = naive.responsibilities(log_rho)
    empty = np.isnan(X64).all(axis=1)
    np.testing.assert_allclose(log_norm, want_log_norm, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(resp, want_resp, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(top[:, 0], np.argmax(resp, axis=1))
    w = np.ones(n_rows) if sample_weight is None else sample_weight
    assert total == pytest.approx(float(np.sum((w * want_log_norm)[~empty])), rel=1e-10)
    # a row with nothing observed says nothing: its weight is 0 in the statistics
    stat_w = np.where(empty, 0.0, w)
    want = naive.missing_sufficient_stats(X64, want_resp, means, means, cov, covariance_type,
                                          stat_w)
    np.testing.assert_allclose(nk, want["N"], rtol=1e-9)
    np.testing.assert_allclose(s1, want["s1"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(s2, want["s2"], rtol=1e-9, atol=1e-9)


def test_all_rows_missing_give_the_weights_and_no_statistics():
    weights, means, cov = random_mixture("full", 3, 4, 1)
    params = em.kernel_params(weights, means, precision_cholesky(cov, "full"), "full")
    X = np.full((5, 4), np.nan)
    total, nk, s1, s2, log_norm, resp, _ = run_kernel(X, None, params, True)
    assert total == 0.0 and not nk.any() and not s1.any() and not s2.any()
    np.testing.assert_allclose(log_norm, 0.0, atol=1e-12)
    np.testing.assert_allclose(resp, np.tile(weights, (5, 1)), rtol=1e-12)


def test_missing_estep_is_the_same_bits_for_any_thread_count():
    import numba
    weights, means, cov = random_mixture("full", 4, 6, 3)
    params = em.kernel_params(weights, means, precision_cholesky(cov, "full"), "full")
    rng = np.random.default_rng(0)
    X = with_holes(rng.standard_normal((5 * BLOCK_ROWS + 3, 6)), 1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_kernel(X, None, params, True)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = run_kernel(X, None, params, True)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_top_labels_of_incomplete_rows():
    weights, means, cov = random_mixture("diag", 5, 3, 2)
    params = em.kernel_params(weights, means, precision_cholesky(cov, "diag"), "diag")
    X = with_holes(np.random.default_rng(3).standard_normal((40, 3)) * 3.0, 4)
    *_, resp, top = run_kernel(X, None, params, False, want_stats=False, labels=3)
    np.testing.assert_array_equal(top, np.argsort(-resp, axis=1, kind="stable")[:, :3])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_impute_is_the_mixture_conditional_mean(covariance_type):
    from fastvi.kernels.missing import impute_missing
    weights, means, cov = random_mixture(covariance_type, 3, 4, 5)
    params = em.kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                              covariance_type)
    X = with_holes(np.random.default_rng(8).standard_normal((30, 4)) * 2.0, 9)
    out = np.empty(X.shape)
    impute_missing(ro(X), *ro_params(params), out)
    log_rho = naive.log_gaussian_observed(X, means, cov, covariance_type) + np.log(weights)
    _, resp = naive.responsibilities(log_rho)
    sigmas = naive._full_matrices(cov, covariance_type, 3, 4)
    for n in range(X.shape[0]):
        filled = [naive.conditional_gaussian(X[n], means[k], sigmas[k])[0] for k in range(3)]
        np.testing.assert_allclose(out[n], resp[n] @ np.array(filled), rtol=1e-9, atol=1e-12)


def test_blocks_too_large_to_keep_their_factors_compute_them_again():
    """Many holes in many columns: a block's offsets and factors exceed
    ``KEEP_BYTES``, so the statistics compute them again (the other path)."""
    from fastvi.kernels import missing as kernel
    n_features, n_components = 40, 2
    weights, means, cov = random_mixture("full", n_components, n_features, 11)
    params = em.kernel_params(weights, means, precision_cholesky(cov, "full"), "full")
    rng = np.random.default_rng(12)
    X = rng.standard_normal((BLOCK_ROWS + 40, n_features)) * 2.0
    X[rng.random(X.shape) < 0.6] = np.nan
    holes = np.isnan(X[:BLOCK_ROWS]).sum(axis=1)
    assert n_components * (holes.sum() + 2 * (holes ** 2).sum()) * 8 > kernel.KEEP_BYTES
    _, nk, s1, s2, log_norm, resp, _ = run_kernel(X, None, params, True)
    log_rho = naive.log_gaussian_observed(X, means, cov, "full") + np.log(weights)
    want_log_norm, want_resp = naive.responsibilities(log_rho)
    np.testing.assert_allclose(log_norm, want_log_norm, rtol=1e-9)
    want = naive.missing_sufficient_stats(X, want_resp, means, means, cov, "full")
    np.testing.assert_allclose(s1, want["s1"], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(s2, want["s2"], rtol=1e-8, atol=1e-8)
    # impute takes the same path when its block's offsets are too large to keep
    from fastvi.kernels.missing import impute_missing
    out = np.empty(X.shape)
    impute_missing(ro(X), *ro_params(params), out)
    for n in (0, 7, BLOCK_ROWS + 3):
        filled = [naive.conditional_gaussian(X[n], means[k], cov[k])[0]
                  for k in range(n_components)]
        np.testing.assert_allclose(out[n], want_resp[n] @ np.array(filled), rtol=1e-8,
                                   atol=1e-10)


@pytest.mark.parametrize("n_features", [3, 9])
def test_rows_sorted_by_pattern_fill_runs_of_rows_together(n_features):
    """The local backend sorts a chunk's incomplete rows by pattern (``by_pattern``):
    runs of rows with the same holes take the vectorised fill, the same values."""
    from fastvi.engine.local import by_pattern
    weights, means, cov = random_mixture("full", 3, n_features, 13)
    params = em.kernel_params(weights, means, precision_cholesky(cov, "full"), "full")
    rng = np.random.default_rng(14)
    X = rng.standard_normal((2 * BLOCK_ROWS + 50, n_features)) * 2.0
    X[rng.random(X.shape) < 0.25] = np.nan
    X[:100, :2] = np.nan                             # a run of one pattern
    rows = by_pattern(np.isnan(X), np.isnan(X).any(axis=1))
    masks = np.isnan(X[rows])
    assert (masks[1:] == masks[:-1]).all(axis=1).sum() > len(rows) // 2   # runs
    X = X[rows]
    _, nk, s1, s2, log_norm, resp, _ = run_kernel(X, None, params, True)
    log_rho = naive.log_gaussian_observed(X, means, cov, "full") + np.log(weights)
    want_log_norm, want_resp = naive.responsibilities(log_rho)
    np.testing.assert_allclose(log_norm, want_log_norm, rtol=1e-9, atol=1e-12)
    keep = ~np.isnan(X).all(axis=1)
    want = naive.missing_sufficient_stats(X[keep], want_resp[keep], means, means, cov, "full")
    np.testing.assert_allclose(s1, want["s1"], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(s2, want["s2"], rtol=1e-8, atol=1e-8)
