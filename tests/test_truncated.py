"""Truncated variational EM (n_active, n_candidates) against the naive reference."""
import pickle
import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse
from scipy.special import logsumexp

import fastvi
import naive
from conftest import COVARIANCE_TYPES, blobs, random_resp, with_resp
from fastvi.engine import local as _estep, truncation as _truncated
from fastvi.engine.backend import Search
from fastvi.mixture import em as _em
from fastvi.mixture.gaussian import precision_cholesky
from fastvi.engine.stats import SufficientStats
from sklearn.metrics import adjusted_rand_score

from fastvi.datasets import make_mixture
from test_em import initial_parameters
from test_kernels import random_mixture
from test_streaming import StopAfter


def quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        return fit(*args, **kwargs)


def overlapping(n_rows=3000, n_features=4, n_components=8, seed=0):
    """Overlapping clusters: every row has several components of non-negligible weight."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_components, n_features))
    return centres[rng.integers(0, n_components, n_rows)] + rng.standard_normal(
        (n_rows, n_features))


# ------------------------------------------------------------------------------- kernel

@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_active", [1, 3, 7])
@pytest.mark.parametrize("weighted", [False, True])
def test_exhaustive_kernel_matches_naive_top_l(covariance_type, dtype, n_active, weighted):
    rng = np.random.default_rng(n_active)
    n_rows, n_features, n_components = 700, 5, 7
    X = (1.5 * rng.standard_normal((n_rows, n_features))).astype(dtype)
    weights, means, cov = random_mixture(covariance_type, n_components, n_features, 3)
    sample_weight = rng.uniform(0.0, 3.0, n_rows) if weighted else None
    params = _em.kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                               covariance_type)
    truncation = _truncated.make_truncation(n_active, None, n_components)
    stats = SufficientStats.zeros(params.means, params.full)
    search = Search(truncation, None, _estep.neighbour_lists(params, truncation), 0)
    log_norm = _estep.accumulate_truncated(X, params, sample_weight, stats, search, 0, 0)
    _estep.mirror_upper(stats)

    X64 = X.astype(np.float64)
    ref_norm, ref_resp = naive.truncated_responsibilities(
        naive.log_rho_em(X64, weights, means, cov, covariance_type), n_active)
    ref = naive.sufficient_stats(X64, ref_resp, means, covariance_type, sample_weight)
    w = np.ones(n_rows) if sample_weight is None else sample_weight
    assert log_norm == pytest.approx(w @ ref_norm, rel=1e-12)
    np.testing.assert_allclose(stats.nk, ref["N"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.s1, ref["s1"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(stats.s2, ref["s2"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_search_keeps_the_best_of_old_support_and_candidates(covariance_type):
    """One search step under fixed parameters never lowers a row's free energy (Forster &
    Lucke 2018, Prop. 1), and its statistics are those of the supports it returns."""
    rng = np.random.default_rng(0)
    n_rows, n_features, n_components, n_active = 2000, 6, 40, 2
    X = 2.0 * rng.standard_normal((n_rows, n_features))
    weights, means, cov = random_mixture(covariance_type, n_components, n_features, 4)
    params = _em.kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                               covariance_type)
    log_rho = naive.log_rho_em(X, weights, means, cov, covariance_type)
    truncation = _truncated.make_truncation(n_active, 6, n_components)
    neighbours = _estep.neighbour_lists(params, truncation)
    assert np.array_equal(neighbours[:, 0], np.arange(n_components))
    supports = _truncated.MemorySupports(n_rows, n_active)
    supports.array[:] = rng.permuted(np.tile(np.arange(n_components), (n_rows, 1)),
                                     axis=1)[:, :n_active]   # a random, poor start
    previous = logsumexp(np.take_along_axis(log_rho, supports.array, 1), axis=1)
    for step in range(3):
        stats = SufficientStats.zeros(params.means, params.full)
        old = supports.array.copy()
        total = _estep.accumulate_truncated(X, params, None, stats,
                                            Search(truncation, supports, neighbours, 0), 0, step)
        _estep.mirror_upper(stats)
        new = supports.array
        assert np.all(np.sort(new, axis=1)[:, 1:] != np.sort(new, axis=1)[:, :-1])
        current = logsumexp(np.take_along_axis(log_rho, new, 1), axis=1)
        assert np.all(current >= previous - 1e-12)
        # the kept support holds the best of the old one
        best_old = np.take_along_axis(old, np.argmax(np.take_along_axis(log_rho, old, 1), 1)
                                      [:, None], 1)[:, 0]
        assert np.all(np.take_along_axis(log_rho, new, 1).max(axis=1)
                      >= log_rho[np.arange(n_rows), best_old])
        resp = np.zeros_like(log_rho)
        np.put_along_axis(resp, new, np.exp(np.take_along_axis(log_rho, new, 1)
                                            - current[:, None]), 1)
        ref = naive.sufficient_stats(X, resp, means, covariance_type)
        assert total == pytest.approx(current.sum(), rel=1e-12)
        np.testing.assert_allclose(stats.nk, ref["N"], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(stats.s2, ref["s2"], rtol=1e-9, atol=1e-9)
        previous = current
    assert current.sum() > logsumexp(np.take_along_axis(log_rho, old, 1), axis=1).sum() - 1e-9


def test_top_labels_of_the_dense_kernel_are_the_naive_order():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((600, 3))
    weights, means, cov = random_mixture("full", 9, 3, 2)
    params = _em.kernel_params(weights, means, precision_cholesky(cov, "full"), "full")
    order = np.argsort(-naive.log_rho_em(X, weights, means, cov, "full"), axis=1, kind="stable")
    np.testing.assert_array_equal(_estep.per_row(X, params, labels=4)["labels"], order[:, :4])
    np.testing.assert_array_equal(_estep.per_row(X, params, labels=True)["labels"], order[:, 0])


# ---------------------------------------------------------------------------- estimators

@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_l_equals_g_equals_k_is_the_dense_fit(covariance_type):
    """Same parameters to rounding: the truncated E-step sums the K terms of each row in
    order of decreasing rho (the dense kernel: in index order), so results agree to a few
    ulps per step, not bit for bit."""
    X = overlapping()
    start, _ = initial_parameters(X, covariance_type, 8)
    kwargs = dict(covariance_type=covariance_type, max_iter=8, tol=0, **start)
    dense = quiet(fastvi.GaussianMixture(8, **kwargs).fit, X)
    full = quiet(fastvi.GaussianMixture(8, n_active=8, n_candidates=8, **kwargs).fit, X)
    np.testing.assert_allclose(full.means_, dense.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(full.covariances_, dense.covariances_, rtol=1e-10)
    np.testing.assert_allclose(full.lower_bounds_, dense.lower_bounds_, rtol=1e-12)


def test_l_equals_k_bayesian_is_the_dense_fit():
    X = overlapping()
    kwargs = dict(covariance_type="full", max_iter=6, tol=0, random_state=0)
    dense = quiet(fastvi.BayesianGaussianMixture(8, **kwargs).fit, X)
    full = quiet(fastvi.BayesianGaussianMixture(8, n_active=8, **kwargs).fit, X)
    np.testing.assert_allclose(full.means_, dense.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(full.lower_bounds_, dense.lower_bounds_, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_active", [1, 3])
def test_exact_top_l_em_matches_naive_truncated_em(covariance_type, n_active):
    X = overlapping()
    start, init = initial_parameters(X, covariance_type, 8)
    ours = quiet(fastvi.GaussianMixture(8, covariance_type=covariance_type, max_iter=6, tol=0,
                                        n_active=n_active, **start).fit, X)
    history = naive.em_fit(X, init.weights_, init.means_, init.covariances_, covariance_type,
                           1e-6, 6, n_active=n_active)
    # Hard EM can empty a component: the reference (like scikit-learn) then sets its mean
    # to 0, fastvi's centred statistics keep the old mean; compare the others.
    used = history[-1]["weights"] > 1e-9
    np.testing.assert_allclose(ours.means_[used], history[-1]["means"][used], rtol=1e-9,
                               atol=1e-12)
    covariances = ours.covariances_ if covariance_type == "tied" else ours.covariances_[used]
    expected = history[-1]["covariances"]
    np.testing.assert_allclose(covariances, expected if covariance_type == "tied"
                               else expected[used], rtol=1e-8)
    np.testing.assert_allclose(ours.lower_bounds_, [h["loglik"] for h in history], rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_exact_top_l_vb_matches_naive_truncated_vb(covariance_type):
    X, _ = blobs(n_per=80, scale=2.5)
    resp = random_resp(len(X), 5)
    model = with_resp(fastvi.BayesianGaussianMixture, resp, covariance_type=covariance_type,
                      weight_concentration_prior_type="dirichlet_distribution", max_iter=5,
                      tol=0, n_active=2)
    quiet(model.fit, X)
    prior = naive.sklearn_like_prior(X, covariance_type, 5)
    prior["weight_concentration_prior_type"] = "dirichlet_distribution"
    state = naive.vb_m_step(X, resp, covariance_type, prior)
    history = naive.vb_fit(X, state, covariance_type, prior, 5, n_active=2)
    np.testing.assert_allclose(model.means_, history[-1]["means"], rtol=1e-9)
    np.testing.assert_allclose(np.array(model.lower_bounds_) * len(X),
                               [h["elbo"] for h in history], rtol=1e-11)


@pytest.mark.parametrize("cls", [fastvi.GaussianMixture, fastvi.BayesianGaussianMixture])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_searched_bound_never_decreases_and_stays_below_the_dense_one(cls, covariance_type):
    X = overlapping(4000, n_components=24, seed=3)
    kwargs = dict(covariance_type=covariance_type, tol=0, random_state=0, n_active=2,
                  n_candidates=6, chunk_size=1000)
    model = quiet(cls(24, max_iter=12, **kwargs).fit, X)
    history = np.array(model.lower_bounds_)
    assert np.all(np.diff(history) >= -1e-12 * np.abs(history[1:]))
    # lower_bound_ of a t-pass fit belongs to the parameters of the (t-1)-pass fit; the
    # dense ELBO of those parameters is above it.
    for passes in (1, 4, 12):
        before = quiet(cls(24, max_iter=passes - 1, **kwargs).fit, X)
        after = quiet(cls(24, max_iter=passes, **kwargs).fit, X)
        assert after.lower_bound_ == history[passes - 1]
        dense = (before.score(X) if cls is fastvi.GaussianMixture
                 else before.elbo(X) / len(X))
        assert after.lower_bound_ <= dense + 1e-12


def test_first_pass_bound_is_the_naive_top_l_bound():
    """Rows start from their exact top L, so the first pass's bound is independent of the
    search and has a closed form under the initial parameters."""
    X = overlapping(seed=4)
    start, init = initial_parameters(X, "full", 8)
    model = quiet(fastvi.GaussianMixture(8, max_iter=1, tol=0, n_active=2, n_candidates=4,
                                         **start).fit, X)
    log_rho = naive.log_rho_em(X, init.weights_, init.means_, init.covariances_, "full")
    log_norm, _ = naive.truncated_responsibilities(log_rho, 2)
    assert model.lower_bound_ == pytest.approx(log_norm.mean(), rel=1e-12)
    assert model.lower_bound_ < init.score(X)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_hard_em_with_a_small_search_recovers_separated_clusters(covariance_type):
    X, labels, *_ = make_mixture(20000, 6, 32, separation=8.0,
                                 covariance_type=covariance_type, dtype="float64",
                                 random_state=1)
    model = quiet(fastvi.GaussianMixture(32, covariance_type=covariance_type, n_active=1,
                                         n_candidates=4, random_state=0, max_iter=30,
                                         n_init=2).fit, X)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.98
    dense = quiet(fastvi.GaussianMixture(32, covariance_type=covariance_type, random_state=0,
                                         max_iter=30, n_init=2).fit, X)
    assert model.score(X) == pytest.approx(dense.score(X), rel=1e-2)


def test_results_do_not_depend_on_the_thread_count():
    X = overlapping(5000, n_components=16)
    kwargs = dict(n_active=2, n_candidates=5, random_state=0, max_iter=4, tol=0,
                  chunk_size=1500)
    one = quiet(fastvi.GaussianMixture(16, n_jobs=1, **kwargs).fit, X)
    two = quiet(fastvi.GaussianMixture(16, n_jobs=2, **kwargs).fit, X)
    np.testing.assert_array_equal(one.means_, two.means_)
    np.testing.assert_array_equal(one.covariances_, two.covariances_)
    assert one.lower_bounds_ == two.lower_bounds_


def test_hdf5_fit_equals_in_memory_fit(tmp_path):
    X = overlapping(5000, n_components=12).astype(np.float32)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(500, 4), compression="gzip")
    kwargs = dict(n_active=2, n_candidates=5, random_state=0, max_iter=4, tol=0,
                  chunk_size=1000)
    memory = quiet(fastvi.GaussianMixture(12, **kwargs).fit, X)
    with h5py.File(path, "r") as f:
        streamed = quiet(fastvi.GaussianMixture(12, **kwargs).fit, f["X"])
    np.testing.assert_array_equal(memory.means_, streamed.means_)
    assert memory.lower_bounds_ == streamed.lower_bounds_


@pytest.mark.parametrize("algorithm", ["batch", "stochastic", "memoized"])
def test_resumed_truncated_fit_equals_uninterrupted_fit(algorithm):
    X = overlapping(6000, n_components=10, seed=5)
    kwargs = dict(n_components=10, random_state=0, algorithm=algorithm, batch_size=1000,
                  chunk_size=1000, max_iter=3, tol=0, n_active=2, n_candidates=5)
    whole = quiet(fastvi.BayesianGaussianMixture(**kwargs).fit, X)
    crash = StopAfter(9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fastvi.BayesianGaussianMixture(**kwargs).fit(X, checkpoint=crash)
    resumed = quiet(fastvi.BayesianGaussianMixture(**kwargs).fit, X, resume=crash.saved)
    np.testing.assert_array_equal(resumed.means_, whole.means_)
    assert resumed.lower_bound_ == whole.lower_bound_


@pytest.mark.parametrize("algorithm", ["stochastic", "memoized"])
def test_online_truncated_fits_approach_the_batch_bound(algorithm):
    X = overlapping(8000, n_components=10, seed=6)
    kwargs = dict(n_active=3, n_candidates=6, random_state=0, tol=0)
    batch = quiet(fastvi.BayesianGaussianMixture(10, max_iter=40, **kwargs).fit, X)
    online = quiet(fastvi.BayesianGaussianMixture(10, algorithm=algorithm, batch_size=1000,
                                                  max_iter=15, **kwargs).fit, X)
    assert online.elbo(X) == pytest.approx(batch.elbo(X), rel=2e-3)
    if algorithm == "memoized":
        assert np.all(np.diff(online.lower_bounds_[1:]) >= -1e-9)


def test_partial_fit_with_truncation_learns_the_clusters():
    X, labels = blobs(n_per=2000, scale=0.8)
    X = X[np.random.default_rng(0).permutation(len(X))]
    model = fastvi.GaussianMixture(3, n_active=1, n_candidates=2, random_state=0,
                                   total_samples=len(X))
    for start in range(0, len(X), 500):
        model.partial_fit(X[start:start + 500])
    reference = quiet(fastvi.GaussianMixture(3, random_state=0).fit, X)
    assert model.score(X) == pytest.approx(reference.score(X), rel=1e-2)


# ---------------------------------------------------------------------------- predict_proba

def test_sparse_predict_proba_is_the_renormalised_top_l():
    X = overlapping()
    model = quiet(fastvi.GaussianMixture(8, n_active=3, n_candidates=5, random_state=0,
                                         max_iter=3).fit, X)
    sparse = model.predict_proba(X, sparse=True)
    assert scipy.sparse.isspmatrix_csr(sparse) and sparse.shape == (len(X), 8)
    assert sparse.has_sorted_indices and np.all(np.diff(sparse.indptr) == 3)
    log_rho = naive.log_rho_em(X, model.weights_, model.means_, model.covariances_, "full")
    _, expected = naive.truncated_responsibilities(log_rho, 3)
    np.testing.assert_allclose(sparse.toarray(), expected, rtol=1e-12, atol=1e-300)

    dense_model = quiet(fastvi.GaussianMixture(8, random_state=0, max_iter=3).fit, X)
    np.testing.assert_array_equal(dense_model.predict_proba(X, sparse=True).toarray(),
                                  dense_model.predict_proba(X))


# ---------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("kwargs,message", [
    (dict(n_active=0), "n_active must be an integer in \\[1, n_components=4\\]"),
    (dict(n_active=5), "n_active must be an integer in \\[1, n_components=4\\]"),
    (dict(n_active=2.0), "n_active must be an integer"),
    (dict(n_active=3, n_candidates=2), "n_candidates must be an integer >= n_active=3"),
    (dict(n_candidates=3), "n_candidates needs n_active"),
    (dict(n_active=2, n_candidates=2), "n_candidates=2 equals n_active"),
])
def test_bad_truncation_parameters_are_named(kwargs, message):
    X, _ = blobs()
    with pytest.raises(ValueError, match=message):
        fastvi.GaussianMixture(4, **kwargs).fit(X)


def test_supports_in_an_hdf5_file_give_the_in_memory_fit(tmp_path):
    X = overlapping(5000, n_components=12, seed=7)
    kwargs = dict(n_active=2, n_candidates=5, random_state=0, max_iter=4, tol=0,
                  chunk_size=1000)
    memory = quiet(fastvi.GaussianMixture(12, **kwargs).fit, X)
    path = tmp_path / "supports.h5"
    filed = quiet(fastvi.GaussianMixture(12, support_file=str(path), **kwargs).fit, X)
    np.testing.assert_array_equal(memory.means_, filed.means_)
    assert memory.lower_bounds_ == filed.lower_bounds_
    with h5py.File(path, "r") as f:
        supports = f["supports"][()]
    assert supports.shape == (5000, 2) and supports.min() >= 0


def test_resume_with_file_supports_reopens_the_file(tmp_path):
    X = overlapping(6000, n_components=10, seed=5)
    path = tmp_path / "supports.h5"
    kwargs = dict(n_components=10, random_state=0, chunk_size=1000, max_iter=3, tol=0,
                  n_active=2, n_candidates=5, support_file=str(path))
    whole = quiet(fastvi.GaussianMixture(**kwargs).fit, X)
    crash = StopAfter(9)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fastvi.GaussianMixture(**kwargs).fit(X, checkpoint=crash)
    resumed = quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=crash.saved)
    # supports written after the checkpoint are still valid ones: same optimum, close path
    assert resumed.lower_bound_ == pytest.approx(whole.lower_bound_, rel=1e-6)
    path.unlink()
    with pytest.raises(ValueError, match="supports.h5: cannot reopen the supports file"):
        pickle.loads(pickle.dumps(crash.saved))
