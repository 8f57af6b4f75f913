"""Birth and delete moves (issue 16): proposals judged by the exact ELBO after a pass.

The bound a proposal's pass yields (its chunks' statistics under the proposal's kernel
parameters, and the entropy of that q(z) from each chunk's log-normaliser) is checked
against a naive NumPy evaluation of the same q(z) over every row; then fits that start
from too few components (births), or with components that have nothing to explain
(deletes), against the known truth of generated data.
"""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

import fastvi
import naive
from fastvi.data.checks import InvalidParameterError
from fastvi.data.sources import ArraySource
from fastvi.engine.local import LocalBackend
from fastvi.engine.loop import expected_log_rho_sum
from fastvi.mixture import moves
from fastvi.mixture.vb import Prior
from test_moves import COVARIANCE_TYPES, WEIGHT_PRIORS, _clusters, _naive_elbo, _problem


def _naive_resp(X, params):
    """Responsibilities under kernel parameters, in NumPy:
    log rho_nk = c_k - 1/2 ||U_k^T (x_n - m_k)||^2, normalised over k."""
    diff = X[:, None, :] - params.means[None, :, :]
    if params.factor.ndim == 3:
        projected = np.einsum("nkd,kde->nke", diff, params.factor)
    else:
        projected = diff * params.factor[None]
    log_rho = params.c[None, :] - 0.5 * (projected ** 2).sum(axis=2)
    log_rho -= log_rho.max(axis=1, keepdims=True)
    resp = np.exp(log_rho)
    return resp / resp.sum(axis=1, keepdims=True)


def _proposal_bound(X, weight, proposal, covariance_type, prior, chunk_rows=97):
    """What the chunk loop computes for a proposal's pass: each chunk's statistics under
    the proposal (the local backend's pass), summed, and its entropy term by term."""
    source = ArraySource(X, chunk_rows)
    with LocalBackend().open_pass(source, range(source.n_chunks), weight,
                                  proposal=proposal) as chunk_pass:
        chunks = [stats.proposal for _, stats in chunk_pass.stats(proposal)]
    total = chunks[0]
    for stats in chunks[1:]:
        total = total + stats
    entropy = sum(stats.log_norm - expected_log_rho_sum(stats, proposal) for stats in chunks)
    return moves.bound(total, entropy, covariance_type, prior)


@pytest.mark.parametrize("weight_prior", WEIGHT_PRIORS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_proposals_bound_after_its_pass_is_the_naive_elbo_of_its_q(covariance_type,
                                                                      weight_prior):
    X, weight, resp, prior, _ = _problem(covariance_type, weight_prior)
    fastvi_prior = Prior(**prior)
    posterior_resp = np.random.default_rng(5).dirichlet(np.full(7, 0.5), X.shape[0])
    params = moves.proposal_from_resp(X, posterior_resp, weight, float(weight.sum()),
                                      covariance_type, fastvi_prior)
    for proposal in (params, moves.without(params, 3), moves.without(params, 0)):
        expected = _naive_elbo(X, _naive_resp(X, proposal), covariance_type, prior, weight)
        got = _proposal_bound(X, weight, proposal, covariance_type, fastvi_prior)
        assert got == pytest.approx(expected, rel=1e-10)


def test_without_drops_one_component_and_delete_targets_the_smallest():
    X, weight, resp, prior, _ = _problem("diag", "dirichlet_process")
    params = moves.proposal_from_resp(X, resp, weight, float(weight.sum()), "diag",
                                      Prior(**prior))
    dropped = moves.without(params, 2)
    keep = [0, 1, 3, 4]
    for name in ("c", "means", "factor"):
        np.testing.assert_array_equal(getattr(dropped, name), getattr(params, name)[keep])
    nk = np.array([50.0, 3.0, 40.0, 60.0, 2.0, 55.0])
    assert moves.delete_target(nk) == 4
    assert moves.delete_target(nk, exclude=[4]) == 1
    assert moves.delete_target(nk, exclude=[4, 1]) is None     # the rest are not small
    assert moves.delete_target(np.array([5.0])) is None


def _fit(X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fastvi.BayesianGaussianMixture(**kwargs).fit(X)


def _check_monotone(model):
    """The ELBO never decreases from pass to pass after the first (up to rounding)."""
    bounds = np.array(model.lower_bounds_)
    assert np.all(np.diff(bounds[1:]) >= -1e-12 * np.abs(bounds[1:-1]))


@pytest.mark.parametrize("algorithm, covariance_type, weight_prior", [
    ("memoized", "full", "dirichlet_process"), ("batch", "diag", "dirichlet_process"),
    ("memoized", "spherical", "dirichlet_process"),
    ("batch", "tied", "dirichlet_distribution")])
def test_births_grow_four_components_to_the_16_clusters(algorithm, covariance_type,
                                                        weight_prior):
    X, labels = _clusters()
    kwargs = dict(n_components=32, covariance_type=covariance_type, algorithm=algorithm,
                  weight_concentration_prior_type=weight_prior, chunk_size=2000,
                  max_iter=40, random_state=0)
    plain = _fit(X, n_components_init=4, moves=("merge",), **kwargs)
    assert plain.means_.shape[0] <= 4           # merges alone cannot add components
    model = _fit(X, n_components_init=4, moves=("birth", "merge"), **kwargs)
    assert model.converged_
    assert model.means_.shape[0] == 16 and model.weights_.shape == (16,)
    assert adjusted_rand_score(labels, model.predict(X)) > 0.999
    assert model.lower_bound_ > plain.lower_bound_
    _check_monotone(model)
    births = [move for move in model.history_ if move["move"] == "birth"]
    assert births and births[0]["accepted"] and births[0]["gain"] > 0
    assert all(move["pass"] >= (2 if algorithm == "memoized" else 1) for move in births)
    assert all(sum(move["into"]) - len(move["into"]) <= 32 - 4 for move in births)


def test_births_on_the_issues_data_recover_the_16_clusters():
    """Issue 16's check: K = 4 live of a cap of 32 on 16 clusters in 16 dimensions
    (fastvi.datasets, separation 4): births and merges end at the 16."""
    from fastvi.datasets import make_mixture
    X, labels, _ = make_mixture(50_000, 16, 16, random_state=0)
    model = _fit(X, n_components=32, n_components_init=4, algorithm="memoized",
                 max_iter=30, chunk_size=10_000, random_state=0,
                 moves=("birth", "merge", "delete"))
    assert model.converged_ and model.means_.shape[0] == 16
    assert adjusted_rand_score(labels, model.predict(X)) > 0.98
    _check_monotone(model)


def _four_clusters_and_outliers():
    """4 tight clusters of 1000 rows in 3 dimensions and 30 rows spread uniformly."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(-40, 40, (4, 3))
    X = np.concatenate([c + rng.standard_normal((1000, 3)) for c in centres]
                       + [rng.uniform(-60, 60, (30, 3))])
    return X[rng.permutation(X.shape[0])]


@pytest.mark.parametrize("algorithm", ["batch", "memoized"])
def test_deletes_remove_the_components_left_with_little_to_explain(algorithm):
    """K = 8 on 4 clusters and 30 scattered rows: a plain fit keeps four components of
    less than 0.5% weight each; deletes remove three (their rows go to the others) and
    keep one, whose delete is rejected: it is the wide component of the scattered rows."""
    X = _four_clusters_and_outliers()
    kwargs = dict(n_components=8, algorithm=algorithm, chunk_size=1000, max_iter=50,
                  random_state=0)
    plain = _fit(X, **kwargs)
    assert np.sum(plain.weights_ < 0.005) == 4
    model = _fit(X, moves=("delete",), **kwargs)
    assert model.means_.shape[0] == 5 and model.lower_bound_ > plain.lower_bound_
    deletes = model.history_
    assert [move["accepted"] for move in deletes] == [True, True, True, False]
    assert all((move["gain"] > 0) == move["accepted"] for move in deletes)
    _check_monotone(model)


def test_a_batch_fit_whose_births_find_nothing_is_the_fit_without_them():
    """Three clusters fitted from three components of a cap of eight: no component's rows
    are better explained by several, so no birth is proposed, and a batch fit (which
    draws no random numbers of its own after its initialisation) is the same fit with
    merges only (none of which is accepted), bit for bit."""
    rng = np.random.default_rng(0)
    X = np.concatenate([c + rng.standard_normal((500, 2)) for c in ([0, 0], [10, 0], [0, 10])])
    X = X[rng.permutation(X.shape[0])]
    kwargs = dict(n_components=8, n_components_init=3, algorithm="batch", chunk_size=500,
                  max_iter=20, random_state=0)
    merges = _fit(X, moves=("merge",), **kwargs)
    model = _fit(X, moves=("birth", "merge"), **kwargs)
    assert not [move for move in model.history_ if move["accepted"]]
    assert not [move for move in model.history_ if move["move"] == "birth"]
    np.testing.assert_array_equal(model.means_, merges.means_)
    assert model.lower_bounds_ == merges.lower_bounds_ and model.converged_


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_components_init=5, moves=("birth",)), "n_components_init=5 is more than"),
    (dict(n_components_init=2), "n_components_init needs moves"),
    (dict(n_components_init=0, moves=("birth",)), "n_components_init"),
    (dict(moves=("birth", "birth")), "names a move twice"),
])
def test_birth_parameters_are_checked(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        fastvi.BayesianGaussianMixture(4, algorithm="memoized", **kwargs).fit(
            np.random.default_rng(0).random((50, 2)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_proposal_from_responsibilities_is_the_m_step_of_the_sample_scaled(covariance_type):
    """Scaled to ten times the sample's weight, the proposal's parameters are those of the
    naive M-step with every row's weight ten times as large."""
    X, weight, resp, prior, _ = _problem(covariance_type, "dirichlet_process")
    params = moves.proposal_from_resp(X, resp, weight, 10.0 * weight.sum(), covariance_type,
                                      Prior(**prior))
    state = naive.vb_m_step(X, resp, covariance_type, prior, 10.0 * weight)
    np.testing.assert_allclose(params.means, state["means"], rtol=1e-10, atol=1e-10)
    expected = naive.vb_log_rho(X, state, covariance_type, prior)
    diff = X[:, None, :] - params.means[None, :, :]
    projected = (np.einsum("nkd,kde->nke", diff, params.factor) if params.factor.ndim == 3
                 else diff * params.factor[None])
    got = params.c[None, :] - 0.5 * (projected ** 2).sum(axis=2)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_a_fit_with_moves_is_the_same_for_any_number_of_threads():
    X, _ = _clusters()
    kwargs = dict(n_components=32, n_components_init=4, algorithm="memoized",
                  chunk_size=2000, max_iter=12, random_state=0,
                  moves=("birth", "merge", "delete"))
    one = _fit(X, n_jobs=1, **kwargs)
    two = _fit(X, n_jobs=2, **kwargs)
    assert one.history_ == two.history_ and one.lower_bounds_ == two.lower_bounds_
    np.testing.assert_array_equal(one.means_, two.means_)
