"""Property-based tests (hypothesis) of both mixtures over shapes, dtypes, weights,
covariance types, algorithms, chunkings and degenerate data.

Properties:

* fitting raises nothing but a documented ValueError (``ALLOWED_ERRORS``: too few rows,
  too few rows of nonzero weight, a covariance or prior that is singular to the float
  precision of the data, which the message blames on ``reg_covar``);
* a successful fit has finite, well-formed parameters and bounds, and finite scores of
  its own rows;
* the bounds never decrease where the documentation promises it (batch and memoized VB;
  EM with ``reg_covar=0``; ``BOUND_RTOL``), and EM with ``reg_covar > 0`` never falls
  by more than the documented D/2 nats per row (see tests/test_bounds.py for the exact
  per-pass inequality);
* one EM or VB iteration from fixed responsibilities agrees with ``tests/naive.py``.

Profiles (registered in tests/conftest.py):

* ``default``: few examples per test, derandomized (the same examples on every run; the
  module runs in about half a minute on two cores);
* ``long``: ``HYPOTHESIS_PROFILE=long pytest tests/test_properties.py`` runs 1000 random
  examples per test (tens of minutes), and ``pytest -m long tests/test_properties.py`` the
  ``@pytest.mark.long`` variants, which draw larger data.

Inputs left out on purpose (input validation, fixed elsewhere; see the comments below):
none at present beyond what ``fit`` refuses with a documented ValueError.
"""
import re
import warnings

import numpy as np
import pytest
from hypothesis import event, given, settings, strategies as st

import fastvi
import naive
from conftest import COVARIANCE_TYPES, with_resp

# The ValueErrors a fit may raise on valid parameters and finite data, by message.
ALLOWED_ERRORS = (
    r"Expected n_samples >= n_components",
    r"Expected at least n_components = \d+ rows of nonzero sample_weight",
    r"init_params='random_from_data' needs at least n_components",
    r"the first partial_fit needs at least n_components",
    r"is not positive definite; increase reg_covar",     # singular to float precision
    r"covariances must be positive; increase reg_covar",
    r"covariance_prior (is not positive definite|must be positive); increase reg_covar",
)

# Rounding allowance of a bound that the docs promise never decreases, relative to the
# size of the bound (nats per row): 1e-12, plus 1e-15 times the distance of the data from
# the origin in units of the smallest component standard deviation (x - m_k is rounded to
# eps |x|; float32 data at 1e8 with a spread of 8 fell by 1.1e-9 of the bound).
BOUND_RTOL = 1e-12
BOUND_RTOL_PER_OFFSET = 1e-15


def covariance_spectrum(model):
    """The smallest and largest eigenvalue of the components' covariances."""
    cov = np.asarray(model.covariances_, dtype=np.float64)
    values = (np.linalg.eigvalsh(cov) if model.covariance_type in ("full", "tied")
              else cov)
    return max(float(values.min()), 0.0), float(values.max())


def bound_allowance(model, X, bounds):
    """Also 1e-15 times the condition number of the covariances: with reg_covar = 0 a
    component on repeated rows has a covariance singular to float precision, whose
    smallest eigenvalue (and so the bound) is rounding; there is no promise then."""
    low, high = covariance_spectrum(model)
    if low == 0.0:
        return np.inf
    offset = float(np.abs(X.astype(np.float64)).max()) / np.sqrt(low)
    relative = BOUND_RTOL + BOUND_RTOL_PER_OFFSET * (offset + high / low)
    return relative * np.maximum(1.0, np.abs(bounds))


ALGORITHMS = ("batch", "stochastic", "memoized")
PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


def check_error(error):
    matched = [pattern for pattern in ALLOWED_ERRORS if re.search(pattern, str(error))]
    assert matched, str(error)
    event(f"ValueError: {matched[0]}")       # --hypothesis-show-statistics counts them


# ----------------------------------------------------------------------------- strategies

@st.composite
def data_sets(draw, max_rows=60, max_features=4):
    """(X, description): Gaussian blobs, then any of duplicated rows, a constant column,
    a scale of 1e-10..1e10 and an offset of up to 1e8, in float32 or float64."""
    n_rows = draw(st.integers(1, max_rows))
    n_features = draw(st.integers(1, max_features))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n_blobs = draw(st.integers(1, 4))
    centres = 5.0 * rng.standard_normal((n_blobs, n_features))
    X = centres[rng.integers(0, n_blobs, n_rows)] + rng.standard_normal((n_rows, n_features))
    n_duplicates = draw(st.integers(0, n_rows - 1))
    if n_duplicates:
        X[-n_duplicates:] = X[rng.integers(0, n_rows - n_duplicates, n_duplicates)]
    if draw(st.booleans()):
        X[:, draw(st.integers(0, n_features - 1))] = X[0, 0]
    scale = 10.0 ** draw(st.integers(-10, 10))
    offset = draw(st.sampled_from([0.0, 0.0, 1.0, 1e4, -1e8, 1e8]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    X = (X * scale + offset).astype(dtype)
    return X


@st.composite
def sample_weights(draw, n_rows):
    """None, integer counts, positive reals, or any of these with a zero block (a run of
    consecutive zero weights); never all zero."""
    kind = draw(st.sampled_from(["none", "counts", "reals", "zero_block"]))
    if kind == "none":
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if kind == "counts":
        weights = rng.integers(0, 4, n_rows).astype(np.float64)
    else:
        weights = rng.uniform(0.1, 3.0, n_rows)
    if kind == "zero_block":
        start = draw(st.integers(0, n_rows - 1))
        stop = draw(st.integers(start + 1, n_rows))
        weights[start:stop] = 0.0
    if not weights.any():
        weights[draw(st.integers(0, n_rows - 1))] = 1.0
    return weights


@st.composite
def estimators(draw, n_rows, algorithms=ALGORITHMS):
    """An unfitted GaussianMixture or BayesianGaussianMixture with small chunks."""
    bayesian = draw(st.booleans())
    kwargs = dict(
        n_components=draw(st.integers(1, 4)),
        covariance_type=draw(st.sampled_from(COVARIANCE_TYPES)),
        algorithm=draw(st.sampled_from(algorithms)),
        chunk_size=draw(st.integers(1, n_rows + 3)),
        batch_size=draw(st.one_of(st.none(), st.integers(1, n_rows + 3))),
        reg_covar=draw(st.sampled_from([1e-6, 1e-6, 1e-3, 0.0])),
        init_params=draw(st.sampled_from(["kmeans", "k-means++", "random",
                                          "random_from_data"])),
        max_iter=draw(st.integers(1, 6)),
        tol=0.0,
        random_state=draw(st.integers(0, 1000)),
    )
    if bayesian:
        kwargs["weight_concentration_prior_type"] = draw(st.sampled_from(PRIOR_TYPES))
        return fastvi.BayesianGaussianMixture(**kwargs)
    return fastvi.GaussianMixture(**kwargs)


# ----------------------------------------------------------------------------- checks

def assert_finite_model(model, X):
    bayesian = isinstance(model, fastvi.BayesianGaussianMixture)
    names = ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]
    if bayesian:
        names += ["mean_precision_", "degrees_of_freedom_"]
    for name in names:
        value = np.asarray(getattr(model, name))
        assert np.all(np.isfinite(value)), f"{name} is not finite: {value}"
    if bayesian:
        assert np.all(np.isfinite(np.ravel(model.weight_concentration_)))
    assert model.means_.dtype == X.dtype
    assert np.all(model.weights_ >= 0) and abs(float(model.weights_.sum()) - 1.0) < 1e-5
    assert np.isfinite(model.lower_bound_), model.lower_bound_
    assert np.all(np.isfinite(model.lower_bounds_)), model.lower_bounds_
    assert model.lower_bound_ == model.lower_bounds_[-1]
    assert np.all(np.isfinite(model.score_samples(X)))


def promised_monotone(model):
    """The bounds the docs promise never decrease, or None: batch and memoized VB (the
    memoized after its first pass, which only fills the cache), and the same for EM with
    reg_covar = 0."""
    if model.algorithm == "stochastic":
        return None
    bounds = np.asarray(model.lower_bounds_)
    return bounds[1:] if model.algorithm == "memoized" else bounds


def assert_bounds_as_documented(model, X):
    bounds = promised_monotone(model)
    if bounds is None or len(bounds) < 2:
        return
    n_features = X.shape[1]
    steps = np.diff(bounds)
    allowance = bound_allowance(model, X, bounds[1:])
    exact = isinstance(model, fastvi.BayesianGaussianMixture) or model.reg_covar == 0
    if exact:
        assert np.all(steps >= -allowance), (bounds, steps)
    elif model.algorithm == "batch":
        # EM with reg_covar > 0: a pass may lose at most D/2 nats per row (tests/test_bounds.py)
        assert np.all(steps >= -0.5 * n_features - allowance), (bounds, steps)


def fit_or_documented_error(model, X, sample_weight):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        try:
            return model.fit(X, sample_weight=sample_weight)
        except ValueError as error:
            check_error(error)
            return None


# ----------------------------------------------------------------------------- properties

@given(data=st.data())
def test_fit_is_finite_or_a_documented_error(data):
    X = data.draw(data_sets(), label="X")
    sample_weight = data.draw(sample_weights(X.shape[0]), label="sample_weight")
    model = data.draw(estimators(X.shape[0]), label="model")
    if fit_or_documented_error(model, X, sample_weight) is None:
        return
    event("fitted")
    assert_finite_model(model, X)
    assert_bounds_as_documented(model, X)


@given(data=st.data())
def test_partial_fit_is_finite_or_a_documented_error(data):
    """partial_fit (stepwise EM, stochastic VB) on a few chunks, N < D included."""
    X = data.draw(data_sets(max_rows=12), label="X")
    model = data.draw(estimators(X.shape[0], algorithms=("stochastic",)), label="model")
    model.set_params(total_samples=data.draw(st.sampled_from([1e6, 10.0, float(len(X))])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        try:
            for part in np.array_split(X, data.draw(st.integers(1, 3))):
                if len(part):
                    model.partial_fit(part)
        except ValueError as error:
            check_error(error)
            return
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(model, name))), name
    assert np.isfinite(model.lower_bound_), model.lower_bound_


@st.composite
def resp_problems(draw):
    """Data of ordinary scale (float64), random responsibilities, weights, chunking."""
    n_components = draw(st.integers(1, 4))
    n_features = draw(st.integers(1, 4))
    # enough rows in general position that every covariance is well conditioned: the
    # reference's own rounding then stays far below the tolerances
    n_rows = draw(st.integers(max(n_components, 2 * n_features + 2), 40))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    X = rng.standard_normal((n_rows, n_features)) * 10.0 ** draw(st.integers(-2, 3))
    X += draw(st.sampled_from([0.0, 100.0]))
    resp = rng.uniform(size=(n_rows, n_components)) + 0.05
    resp /= resp.sum(axis=1, keepdims=True)
    weights = draw(sample_weights(n_rows))
    if weights is not None:
        # as many weighted rows as above, and a total weight > 1 (the reference's ddof=1
        # prior covariance divides by sum w - 1)
        if np.count_nonzero(weights) < max(n_components, 2 * n_features + 2):
            weights = None
        else:
            weights *= max(1.0, 2.0 / weights.sum())
    return X, resp, weights


@given(problem=resp_problems(), covariance_type=st.sampled_from(COVARIANCE_TYPES),
       prior_type=st.sampled_from(PRIOR_TYPES), chunk_size=st.integers(1, 45))
def test_one_vb_iteration_matches_naive(problem, covariance_type, prior_type, chunk_size):
    X, resp, weights = problem
    n_components = resp.shape[1]
    model = with_resp(fastvi.BayesianGaussianMixture, resp, covariance_type=covariance_type,
                      weight_concentration_prior_type=prior_type, max_iter=1, tol=0,
                      chunk_size=chunk_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        model.fit(X, sample_weight=weights)
    prior = naive.sklearn_like_prior(X, covariance_type, n_components, weights)
    prior["weight_concentration_prior_type"] = prior_type
    state = naive.vb_m_step(X, resp, covariance_type, prior, weights)
    expected = naive.vb_fit(X, state, covariance_type, prior, 1, weights)[-1]
    for name in ("mean_precision", "degrees_of_freedom", "covariances"):
        np.testing.assert_allclose(getattr(model, name + "_"), expected[name], rtol=1e-7,
                                   err_msg=name)
    scale = np.abs(X).max()
    np.testing.assert_allclose(model.means_, expected["means"], rtol=1e-7, atol=1e-9 * scale)
    np.testing.assert_allclose(np.ravel(model.weight_concentration_),
                               np.ravel(expected["weight_concentration"]), rtol=1e-7)
    total = len(X) if weights is None else weights.sum()
    assert model.lower_bound_ * total == pytest.approx(expected["elbo"], rel=1e-8, abs=1e-8)


@given(problem=resp_problems(), covariance_type=st.sampled_from(COVARIANCE_TYPES),
       chunk_size=st.integers(1, 45), reg_covar=st.sampled_from([1e-6, 1e-2]))
def test_one_em_iteration_matches_naive(problem, covariance_type, chunk_size, reg_covar):
    X, resp, weights = problem
    model = with_resp(fastvi.GaussianMixture, resp, covariance_type=covariance_type,
                      max_iter=1, tol=0, chunk_size=chunk_size, reg_covar=reg_covar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        model.fit(X, sample_weight=weights)
    start = naive.em_m_step(X, resp, covariance_type, reg_covar, weights)
    log_rho = naive.log_rho_em(X, *start, covariance_type)
    log_norm, new_resp = naive.responsibilities(log_rho)
    weights_, means, covariances = naive.em_m_step(X, new_resp, covariance_type, reg_covar,
                                                   weights)
    np.testing.assert_allclose(model.weights_, weights_, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(model.means_, means, rtol=1e-7, atol=1e-9 * np.abs(X).max())
    np.testing.assert_allclose(model.covariances_, covariances, rtol=1e-7,
                               atol=1e-12 * np.abs(X).max() ** 2)
    w = np.ones(len(X)) if weights is None else weights
    assert model.lower_bound_ == pytest.approx(w @ log_norm / w.sum(), rel=1e-9, abs=1e-9)


@pytest.mark.long
@settings(max_examples=300)
@given(data=st.data())
def test_fit_on_larger_data_long(data):
    """The first property on up to 400 rows and 6 features (pytest -m long)."""
    X = data.draw(data_sets(max_rows=400, max_features=6), label="X")
    sample_weight = data.draw(sample_weights(X.shape[0]), label="sample_weight")
    model = data.draw(estimators(X.shape[0]), label="model")
    if fit_or_documented_error(model, X, sample_weight) is None:
        return
    assert_finite_model(model, X)
    assert_bounds_as_documented(model, X)
