"""The mixture estimators as scikit-learn citizens: its own estimator checks, its model
selection and pipelines, its input conventions, and the behaviours a user of
``sklearn.mixture`` expects (weights as repeated rows, float32 kept, exact priors)."""
import pickle
import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse
from sklearn import mixture as sk
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastvi
from conftest import COVARIANCE_TYPES, blobs, fastvi_types


@parametrize_with_checks([fastvi.GaussianMixture(n_components=2),
                          fastvi.BayesianGaussianMixture(n_components=2),
                          fastvi.GaussianMixture(n_components=2, missing="marginalize"),
                          fastvi.MixtureImputer()])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("cls", fastvi_types)
def test_clone_repr_and_params(cls):
    model = cls(n_components=3, covariance_type="diag", random_state=4, chunk_size=100)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert "covariance_type='diag'" in repr(model) and "n_components=3" in repr(model)
    assert copy.set_params(n_components=5).n_components == 5


@pytest.mark.parametrize("cls", fastvi_types)
def test_exceptions_and_warnings_are_scikit_learn_s(cls):
    X, _ = blobs(n_per=50, scale=3.0)
    with pytest.raises(NotFittedError):
        cls(2).predict(X)
    assert fastvi.NotFittedError is NotFittedError
    assert fastvi.ConvergenceWarning is ConvergenceWarning
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        cls(4, max_iter=2, tol=0, random_state=0).fit(X)


def test_pipeline_grid_search_and_cross_validation():
    X, _ = blobs(n_per=60)
    pipe = make_pipeline(StandardScaler(), fastvi.GaussianMixture(3, random_state=0))
    pipe.fit(X)
    assert pipe.predict(X).shape == (len(X),)
    # the default score is the held-out mean log-likelihood: three clusters need three
    # components (the rows are ordered by cluster, hence the shuffled folds)
    folds = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(fastvi.GaussianMixture(random_state=0),
                          {"n_components": [1, 3]}, cv=folds).fit(X)
    assert search.best_params_ == {"n_components": 3}
    scores = cross_val_score(fastvi.BayesianGaussianMixture(3, random_state=0), X, cv=folds)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("cls", fastvi_types)
def test_pickle_round_trip(cls):
    X, _ = blobs(n_per=60)
    model = cls(3, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(again.score_samples(X), model.score_samples(X))


@pytest.mark.parametrize("cls", fastvi_types)
def test_lower_bounds_are_the_per_iteration_bounds(cls):
    X, _ = blobs(n_per=60, scale=2.0)
    model = cls(3, random_state=0, max_iter=30).fit(X)
    assert len(model.lower_bounds_) == model.n_iter_
    assert model.lower_bounds_[-1] == model.lower_bound_
    # the bound of the state entering pass t is the lower_bound_ of a fit of t passes
    short = cls(3, random_state=0, max_iter=3, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short.fit(X)
    assert short.lower_bounds_ == model.lower_bounds_[:3]


@pytest.mark.parametrize("cls", fastvi_types)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_data_give_float32_parameters(cls, covariance_type):
    X, _ = blobs(n_per=60)
    X32 = X.astype(np.float32)
    model = cls(3, covariance_type=covariance_type, random_state=0).fit(X32)
    reference = cls(3, covariance_type=covariance_type, random_state=0).fit(
        X32.astype(np.float64))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_",
                 "precisions_"):
        assert getattr(model, name).dtype == np.float32, name
        assert getattr(reference, name).dtype == np.float64, name
    # the arithmetic was float64 all along: the float32 parameters are the float64 ones
    # rounded once
    np.testing.assert_array_equal(model.means_, reference.means_.astype(np.float32))
    assert model.lower_bound_ == reference.lower_bound_
    if cls is fastvi.BayesianGaussianMixture:
        assert model.mean_precision_.dtype == model.degrees_of_freedom_.dtype == np.float32


@pytest.mark.parametrize("cls", fastvi_types)
def test_object_arrays_lists_and_sparse_input(cls):
    X, _ = blobs(n_per=40)
    reference = cls(3, random_state=0).fit(X)
    from_objects = cls(3, random_state=0).fit(X.astype(object))
    np.testing.assert_array_equal(from_objects.means_, reference.means_)
    from_lists = cls(3, random_state=0).fit(X.tolist())
    np.testing.assert_array_equal(from_lists.means_, reference.means_)
    with pytest.raises(TypeError, match="Sparse data was passed"):
        cls(3).fit(scipy.sparse.csr_matrix(X))
    with pytest.raises(TypeError, match="Sparse data was passed"):
        reference.predict(scipy.sparse.csr_matrix(X))


@pytest.mark.parametrize("cls", fastvi_types)
def test_pandas_feature_names(cls):
    pd = pytest.importorskip("pandas")
    X, _ = blobs(n_per=40)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = cls(3, random_state=0).fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, ["a", "b", "c"])
    np.testing.assert_array_equal(model.predict(frame), cls(3, random_state=0).fit(X).predict(X))
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(frame[["c", "a", "b"]])
    # refitting on an array forgets the names, as in scikit-learn
    assert not hasattr(cls(3, random_state=0).fit(frame).fit(X), "feature_names_in_")


def _weighted_and_repeated(seed=3):
    """Rows with integer weights (zeros included), and the same rows repeated, shuffled."""
    rng = np.random.default_rng(seed)
    X, _ = blobs(n_per=60, scale=1.0, seed=seed)
    weights = rng.integers(0, 4, size=len(X))
    repeated = np.repeat(X, weights, axis=0)
    return X, weights, repeated[rng.permutation(len(repeated))]


@pytest.mark.parametrize("cls", fastvi_types)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++"])
def test_integer_weights_count_like_repeated_rows(cls, init_params):
    X, weights, repeated = _weighted_and_repeated()
    kwargs = dict(n_components=3, init_params=init_params, random_state=0, tol=1e-10,
                  max_iter=200)
    weighted = cls(**kwargs).fit(X, sample_weight=weights)
    copies = cls(**kwargs).fit(repeated)
    np.testing.assert_allclose(weighted.means_, copies.means_, rtol=1e-8)
    np.testing.assert_allclose(weighted.predict_proba(X), copies.predict_proba(X),
                               rtol=1e-6, atol=1e-12)


def test_random_from_data_never_picks_a_zero_weight_row():
    X, _ = blobs(n_per=30)
    weights = np.zeros(len(X))
    weights[[0, 40, 80]] = 1.0        # one row of each cluster
    model = fastvi.GaussianMixture(3, init_params="random_from_data", max_iter=0,
                                   random_state=1).fit(X, sample_weight=weights)
    # one M-step on nearest-centre labels whose centres are the three weighted rows
    np.testing.assert_allclose(np.sort(model.means_[:, 0]), np.sort(X[[0, 40, 80], 0]))
    weights[40] = weights[80] = 0.0
    with pytest.raises(ValueError, match="rows of nonzero sample_weight, got 1"):
        fastvi.GaussianMixture(3, init_params="random_from_data").fit(X, sample_weight=weights)


def test_kmeans_init_does_not_depend_on_the_thread_count():
    X, _ = blobs(n_per=3000, scale=2.0)
    one = fastvi.GaussianMixture(3, random_state=0, max_iter=0, n_jobs=1).fit(X)
    two = fastvi.GaussianMixture(3, random_state=0, max_iter=0, n_jobs=2).fit(X)
    np.testing.assert_array_equal(one.means_, two.means_)


def test_initial_sample_does_not_depend_on_the_storage(tmp_path):
    X, _ = blobs(n_per=700)                      # 2100 rows, more than init_sample_size
    kwargs = dict(n_components=3, random_state=0, init_sample_size=500, chunk_size=256,
                  max_iter=0)
    memory = fastvi.GaussianMixture(**kwargs).fit(X)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=X, chunks=(100, 3), compression="gzip")
    for i, (lo, hi) in enumerate(((0, 1000), (1000, 2100))):
        with h5py.File(tmp_path / f"part{i}.h5", "w") as f:
            f.create_dataset("X", data=X[lo:hi], chunks=(64, 3))
    with h5py.File(tmp_path / "x.h5", "r") as f:
        streamed = fastvi.GaussianMixture(**kwargs).fit(f["X"])
    parts = fastvi.ConcatSource([fastvi.HDF5Source(tmp_path / f"part{i}.h5", "/X")
                                 for i in range(2)])
    several = fastvi.GaussianMixture(**kwargs).fit(parts)
    np.testing.assert_array_equal(streamed.means_, memory.means_)
    np.testing.assert_array_equal(several.means_, memory.means_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bayesian_default_prior_takes_singular_data(covariance_type):
    rng = np.random.default_rng(0)
    constant = np.column_stack([rng.standard_normal((200, 3)), np.full(200, 5.0)])
    few_rows = rng.standard_normal((8, 12))       # fewer rows than features
    for X in (constant, few_rows):
        model = fastvi.BayesianGaussianMixture(2, covariance_type=covariance_type,
                                               random_state=0, max_iter=300).fit(X)
        bounds = np.array(model.lower_bounds_)
        assert np.all(np.isfinite(bounds))
        # never decreasing, to rounding: the constant column's precision is ~1/reg_covar,
        # a million times the others, which costs the bound about six digits
        assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))
        # the ELBO is exact: elbo() of the final state is finite and matches score_samples
        assert np.isfinite(model.elbo(X))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bayesian_fit_of_raw_digits(covariance_type):
    X = load_digits().data[:600]                 # constant (all-zero) pixels
    model = fastvi.BayesianGaussianMixture(5, covariance_type=covariance_type,
                                           random_state=0, max_iter=200).fit(X)
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12 * np.abs(model.lower_bound_))


def test_bayesian_default_tol_on_small_data():
    X = load_breast_cancer().data
    default = fastvi.BayesianGaussianMixture(4, random_state=0, max_iter=1000).fit(X)
    tight = fastvi.BayesianGaussianMixture(4, random_state=0, max_iter=1000, tol=1e-9).fit(X)
    # the exact coordinate ascent never lowers the bound, so the default stops close to
    # where a much tighter tolerance ends, and no earlier than scikit-learn (which runs
    # the same full-covariance updates, its regulariser aside)
    assert np.all(np.diff(tight.lower_bounds_) >= -1e-12 * abs(tight.lower_bound_))
    assert default.lower_bound_ >= tight.lower_bound_ - 1e-4
    theirs = sk.BayesianGaussianMixture(n_components=4, random_state=0, max_iter=1000).fit(X)
    assert default.n_iter_ >= theirs.n_iter_
