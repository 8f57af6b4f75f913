"""Maximum-likelihood EM against scikit-learn and the naive reference."""
import warnings

import numpy as np
import pytest
from sklearn import mixture as sk
from sklearn.metrics import adjusted_rand_score

import fastvi
import naive
from conftest import COVARIANCE_TYPES, blobs


def initial_parameters(X, covariance_type, n_components=3, seed=1):
    init = fastvi.GaussianMixture(n_components, covariance_type=covariance_type,
                                  init_params="random_from_data", max_iter=0,
                                  random_state=seed).fit(X)
    # float64 starts: scikit-learn would run its first step in float32 from float32 ones
    weights = init.weights_.astype(np.float64)
    return dict(weights_init=weights / weights.sum(),
                means_init=init.means_.astype(np.float64),
                precisions_init=init.precisions_.astype(np.float64)), init


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_em_matches_sklearn_from_the_same_start(covariance_type, dtype):
    X, _ = blobs(n_per=150, scale=1.5)
    X = X.astype(dtype)
    start, _ = initial_parameters(X, covariance_type)
    kwargs = dict(covariance_type=covariance_type, max_iter=10, tol=0.0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fastvi.GaussianMixture(3, **kwargs).fit(X)
        theirs = sk.GaussianMixture(3, **kwargs).fit(X.astype(np.float64))
    # Both run the same float64 updates from the same start; after 10 iterations the
    # differences are summation-order rounding (~1e-15 relative), amplified a little by
    # the iteration.  1e-9 leaves room for that and catches any real discrepancy.  Float32
    # data gets float32 parameters, as in scikit-learn: the float64 result rounded once
    # (precisions_ is formed from the rounded factor, two roundings).
    rtol = 1e-9 if dtype == np.float64 else 3 * np.finfo(np.float32).eps
    for name in ("weights_", "means_", "covariances_", "precisions_"):
        assert getattr(ours, name).dtype == dtype, name
        expected = getattr(theirs, name)
        atol = 1e-12 if dtype == np.float64 else rtol * np.abs(expected).max()
        np.testing.assert_allclose(getattr(ours, name), expected, rtol=rtol, atol=atol,
                                   err_msg=name)
    assert ours.lower_bound_ == pytest.approx(theirs.lower_bound_, rel=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ == 10


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_matches_naive_with_sample_weights(covariance_type):
    X, _ = blobs(n_per=100, scale=1.5)
    sample_weight = np.random.default_rng(0).uniform(0.2, 3.0, X.shape[0])
    start, init = initial_parameters(X, covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        ours = fastvi.GaussianMixture(3, covariance_type=covariance_type, max_iter=6, tol=0,
                                      reg_covar=1e-6, **start).fit(X, sample_weight=sample_weight)
    history = naive.em_fit(X, init.weights_, init.means_, init.covariances_, covariance_type,
                           1e-6, 6, sample_weight)
    np.testing.assert_allclose(ours.means_, history[-1]["means"], rtol=1e-10)
    np.testing.assert_allclose(ours.covariances_, history[-1]["covariances"], rtol=1e-9)
    np.testing.assert_allclose(ours.weights_, history[-1]["weights"], rtol=1e-10)
    assert ours.lower_bound_ == pytest.approx(history[-1]["loglik"], rel=1e-12)


def test_integer_sample_weights_equal_repeated_rows():
    X, _ = blobs(n_per=60)
    counts = np.random.default_rng(2).integers(0, 4, X.shape[0])
    start, _ = initial_parameters(X, "full")
    kwargs = dict(covariance_type="full", max_iter=5, tol=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        weighted = fastvi.GaussianMixture(3, **kwargs).fit(X, sample_weight=counts)
        repeated = fastvi.GaussianMixture(3, **kwargs).fit(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_likelihood_never_decreases(covariance_type):
    X, _ = blobs(n_per=200, scale=2.5, seed=4)
    bounds = []
    model = fastvi.GaussianMixture(4, covariance_type=covariance_type, max_iter=1,
                                   warm_start=True, random_state=0, init_params="random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        for _ in range(30):
            bounds.append(model.fit(X).lower_bound_)
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    assert bounds[-1] > bounds[0]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recovers_known_clusters(covariance_type):
    X, labels = blobs(n_per=300)
    model = fastvi.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert model.converged_
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99
    assert adjusted_rand_score(labels, model.fit_predict(X)) > 0.99
