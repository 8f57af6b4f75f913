"""Variational Bayes EM against the naive reference and scikit-learn."""
import warnings

import numpy as np
import pytest
from sklearn import mixture as sk
from sklearn.metrics import adjusted_rand_score

import fastvi
import naive
from conftest import COVARIANCE_TYPES, blobs, random_resp, with_resp

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


def posterior_as_dict(model):
    return {"weight_concentration": model.weight_concentration_,
            "mean_precision": model.mean_precision_, "means": model.means_,
            "degrees_of_freedom": model.degrees_of_freedom_, "covariances": model.covariances_}


def fit_quiet(model, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        return model.fit(X, **kwargs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_vb_matches_naive(covariance_type, prior_type, weighted):
    X, _ = blobs(n_per=80, scale=1.5)
    sample_weight = np.random.default_rng(5).uniform(0.5, 2.0, len(X)) if weighted else None
    resp = random_resp(len(X), 4)
    n_iter = 5
    model = with_resp(fastvi.BayesianGaussianMixture, resp, covariance_type=covariance_type,
                      weight_concentration_prior_type=prior_type, max_iter=n_iter, tol=0)
    fit_quiet(model, X, sample_weight=sample_weight)

    prior = naive.sklearn_like_prior(X, covariance_type, 4, sample_weight)
    prior["weight_concentration_prior_type"] = prior_type
    for name in ("mean_prior", "covariance_prior"):
        np.testing.assert_allclose(getattr(model, name + "_"), prior[name], rtol=1e-12)
    state = naive.vb_m_step(X, resp, covariance_type, prior, sample_weight)
    history = naive.vb_fit(X, state, covariance_type, prior, n_iter, sample_weight)
    expected = history[-1]
    ours = posterior_as_dict(model)
    for name in ("mean_precision", "means", "degrees_of_freedom", "covariances"):
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(np.ravel(ours["weight_concentration"]),
                               np.ravel(expected["weight_concentration"]), rtol=1e-9)
    total = len(X) if sample_weight is None else sample_weight.sum()
    # lower_bound_ is the ELBO per unit weight of the state entering the last iteration.
    assert model.lower_bound_ * total == pytest.approx(expected["elbo"], rel=1e-10)
    # elbo() of the fitted state equals the reference's ELBO of that state.
    reference_elbo = naive.vb_elbo(X, expected, covariance_type, prior, sample_weight)
    assert model.elbo(X, sample_weight) * total == pytest.approx(reference_elbo, rel=1e-10)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_vb_full_matches_sklearn(prior_type):
    X, _ = blobs(n_per=100, scale=1.5)
    resp = random_resp(len(X), 4, seed=3)
    n_iter = 8
    # reg_covar=0: fastvi puts the regulariser in the prior, scikit-learn on every S_k,
    # so the two updates agree exactly only without it
    ours = with_resp(fastvi.BayesianGaussianMixture, resp, covariance_type="full",
                     weight_concentration_prior_type=prior_type, max_iter=n_iter, tol=0,
                     reg_covar=0.0)
    fit_quiet(ours, X)

    class FromResp(sk.BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state, **kwargs):
            self._initialize(X, resp)

    theirs = FromResp(n_components=4, covariance_type="full", max_iter=n_iter, tol=0,
                      weight_concentration_prior_type=prior_type, reg_covar=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                 "mean_precision_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-9,
                                   err_msg=name)
    np.testing.assert_allclose(np.ravel(ours.weight_concentration_),
                               np.ravel(theirs.weight_concentration_), rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_elbo_never_decreases(covariance_type, prior_type):
    X, _ = blobs(n_per=150, scale=2.0, seed=7)
    model = fastvi.BayesianGaussianMixture(6, covariance_type=covariance_type, max_iter=1,
                                           weight_concentration_prior_type=prior_type,
                                           warm_start=True, random_state=0,
                                           init_params="random")
    bounds = [fit_quiet(model, X).lower_bound_ for _ in range(40)]
    # rounding of a per-row bound of order 10 nats: 1e-12 relative is far below any real step
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:]))
    assert bounds[-1] > bounds[0]


def test_dirichlet_process_prunes_unneeded_components():
    X, labels = blobs(n_per=300)
    # VB can keep a cluster split in two (a local optimum with a lower ELBO); restarts find
    # the three-cluster solution, which has the higher bound.
    model = fastvi.BayesianGaussianMixture(8, random_state=0, max_iter=500, n_init=4,
                                           weight_concentration_prior=1e-3).fit(X)
    assert model.converged_
    assert np.sum(model.weights_ > 0.05) == 3
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_vb_recovers_known_clusters(covariance_type):
    X, labels = blobs(n_per=300)
    model = fastvi.BayesianGaussianMixture(3, covariance_type=covariance_type,
                                           random_state=0, max_iter=300).fit(X)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99
