"""The scikit-learn-style surface: attributes, methods, inputs and errors."""
import warnings

import h5py
import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn import mixture as sk

import fastvi
import naive
from conftest import COVARIANCE_TYPES, blobs, fastvi_types


@pytest.mark.parametrize("cls", fastvi_types)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_prediction_methods_agree_with_each_other(cls, covariance_type):
    X, _ = blobs(n_per=100)
    model = cls(3, covariance_type=covariance_type, random_state=0).fit(X)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    assert model.score(X) == pytest.approx(model.score_samples(X).mean(), rel=1e-14)
    assert model.precisions_.shape == model.covariances_.shape


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_score_samples_is_the_mixture_log_density(covariance_type):
    X, _ = blobs(n_per=50)
    model = fastvi.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    log_rho = naive.log_rho_em(X, model.weights_, model.means_, model.covariances_,
                               covariance_type)
    np.testing.assert_allclose(model.score_samples(X), logsumexp(log_rho, axis=1), rtol=1e-12)


def test_bic_aic_match_sklearn():
    X, _ = blobs(n_per=100)
    ours = fastvi.GaussianMixture(3, random_state=0).fit(X)
    theirs = sk.GaussianMixture(3, weights_init=ours.weights_, means_init=ours.means_,
                                precisions_init=ours.precisions_, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(X)
    for name in ("weights_", "means_", "precisions_cholesky_"):
        setattr(theirs, name, getattr(ours, name))
    theirs.covariances_ = ours.covariances_
    assert ours.bic(X) == pytest.approx(theirs.bic(X), rel=1e-12)
    assert ours.aic(X) == pytest.approx(theirs.aic(X), rel=1e-12)


def test_float32_data_stay_float32_and_fit_like_float64():
    X, _ = blobs(n_per=100)
    X32 = X.astype(np.float32)
    model = fastvi.GaussianMixture(3, random_state=0, max_iter=5, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        assert model._validate_X(X32, reset=True).dtype == np.float32
        forced = fastvi.GaussianMixture(3, random_state=0, max_iter=5, tol=0, dtype="float32")
        assert forced._validate_X(X, reset=True).dtype == np.float32
        a = model.fit(X32)
        b = fastvi.GaussianMixture(3, random_state=0, max_iter=5, tol=0).fit(
            X32.astype(np.float64))
    # float64 arithmetic inside, float32 parameters out (scikit-learn's convention)
    assert a.means_.dtype == a.covariances_.dtype == a.weights_.dtype == np.float32
    assert a.precisions_cholesky_.dtype == np.float32 and b.means_.dtype == np.float64
    np.testing.assert_array_equal(a.means_, b.means_.astype(np.float32))


def test_hdf5_dataset_equals_in_memory_fit(tmp_path):
    X, _ = blobs(n_per=400)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=X, chunks=(100, 3))
    # 300 rows: a multiple of the HDF5 chunking, so both read the same chunks
    kwargs = dict(covariance_type="full", random_state=0, chunk_size=300)
    memory = fastvi.BayesianGaussianMixture(4, **kwargs).fit(X)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        streamed = fastvi.BayesianGaussianMixture(4, **kwargs).fit(f["X"])
        np.testing.assert_array_equal(streamed.predict(f["X"]), memory.predict(X))
    np.testing.assert_array_equal(streamed.means_, memory.means_)
    assert streamed.lower_bound_ == memory.lower_bound_


def test_sample_draws_from_the_fitted_mixture():
    X, _ = blobs(n_per=200)
    model = fastvi.GaussianMixture(3, random_state=0).fit(X)
    rows, labels = model.sample(30000)
    assert rows.shape == (30000, 3)
    for k in range(3):
        np.testing.assert_allclose(rows[labels == k].mean(axis=0), model.means_[k], atol=0.05)
        assert np.mean(labels == k) == pytest.approx(model.weights_[k], abs=0.01)


def test_n_init_keeps_the_best_bound():
    X, _ = blobs(n_per=100, scale=2.5)
    bounds = [fastvi.GaussianMixture(5, random_state=np.random.default_rng(0),
                                     init_params="random").fit(X).lower_bound_]
    best = fastvi.GaussianMixture(5, n_init=4, random_state=0, init_params="random").fit(X)
    singles = []
    rng = np.random.default_rng(0)
    for _ in range(4):
        singles.append(fastvi.GaussianMixture(5, random_state=rng,
                                              init_params="random").fit(X).lower_bound_)
    assert best.lower_bound_ == pytest.approx(max(singles), rel=1e-12)
    assert bounds[0] == pytest.approx(singles[0], rel=1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_method_fits(init_params):
    X, _ = blobs(n_per=100)
    model = fastvi.GaussianMixture(3, init_params=init_params, random_state=0,
                                   max_iter=300).fit(X)
    assert model.converged_


def test_init_sample_bounds_the_rows_used_for_initialisation():
    X, labels = blobs(n_per=2000)
    model = fastvi.GaussianMixture(3, random_state=0, init_sample_size=500).fit(X)
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(labels, model.predict(X)) > 0.99


def test_convergence_warning():
    X, _ = blobs(n_per=100, scale=3.0)
    with pytest.warns(fastvi.ConvergenceWarning, match="max_iter=2"):
        fastvi.GaussianMixture(4, max_iter=2, tol=0, random_state=0).fit(X)


@pytest.mark.parametrize("cls", fastvi_types)
def test_errors_name_the_problem(cls):
    X, _ = blobs(n_per=20)
    with pytest.raises(fastvi.NotFittedError, match="not fitted"):
        cls(2).predict(X)
    with pytest.raises(ValueError, match="Expected 2D array"):
        cls(2).fit(X[:, 0])
    bad = X.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        cls(2).fit(bad)
    with pytest.raises(ValueError, match="covariance_type"):
        cls(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="n_components"):
        cls(0).fit(X)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        cls(5).fit(X[:3])
    with pytest.raises(ValueError, match="sample_weight"):
        cls(2).fit(X, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="could not convert string to float"):
        cls(2).fit(np.array([["a", "b"], ["c", "d"]]))
    model = cls(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="has 2 features, but .* is expecting 3 features"):
        model.predict(X[:, :2])


def test_bad_initial_parameters_are_named():
    X, _ = blobs(n_per=20)
    with pytest.raises(ValueError, match="means_init must have shape"):
        fastvi.GaussianMixture(3, means_init=np.zeros((2, 3))).fit(X)
    with pytest.raises(ValueError, match="weights_init"):
        fastvi.GaussianMixture(3, weights_init=[0.5, 0.5, 0.5]).fit(X)
    with pytest.raises(ValueError, match="degrees_of_freedom_prior"):
        fastvi.BayesianGaussianMixture(3, degrees_of_freedom_prior=1.0).fit(X)


def test_n_jobs_is_restored_and_results_do_not_depend_on_it():
    import numba
    X, _ = blobs(n_per=400)
    before = numba.get_num_threads()
    a = fastvi.GaussianMixture(3, random_state=0, n_jobs=1).fit(X)
    assert numba.get_num_threads() == before
    b = fastvi.GaussianMixture(3, random_state=0, n_jobs=-1).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)


@pytest.mark.parametrize("cls", fastvi_types)
def test_a_finished_fit_removes_its_checkpoint_unless_kept(cls, tmp_path):
    X, _ = blobs(n_per=100)
    path = tmp_path / "fit.ckpt"
    seen = []

    class Watching(fastvi.Checkpointer):
        def write(self, state):
            super().write(state)
            seen.append(path.exists())

    cls(3, random_state=0).fit(X, checkpoint=Watching(path, every_chunks=1))
    assert seen and all(seen) and not path.exists()
    cls(3, random_state=0).fit(X, checkpoint=fastvi.Checkpointer(path, every_chunks=1,
                                                                keep=True))
    state, _ = fastvi.load_checkpoint(path)
    assert state.algorithm == "batch"


@pytest.mark.parametrize("cls", fastvi_types)
def test_save_then_load_predicts_the_same(cls, tmp_path):
    X, _ = blobs(n_per=100)
    for data in (X, X.astype(np.float32)):
        model = cls(3, random_state=0).fit(data)
        model.save(tmp_path / "m.h5")
        loaded = fastvi.load(tmp_path / "m.h5")
        assert type(loaded) is cls and loaded.means_.dtype == data.dtype
        np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
        np.testing.assert_array_equal(loaded.score_samples(data), model.score_samples(data))
