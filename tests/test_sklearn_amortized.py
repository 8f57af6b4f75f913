"""VAE, PPCA and MixtureEncoder as scikit-learn estimators: scikit-learn's own estimator
checks, its model-selection tools, input validation, and the PPCA subspace against
scikit-learn's PCA."""
import pickle
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from scipy.special import rel_entr
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastvi
import naive
from conftest import blobs
from test_ppca import ppca_data


def small_models():
    """One fast model of each kind, seeded."""
    return [fastvi.VAE(2, decoder_hidden=(4,), max_epochs=3, random_state=0),
            fastvi.PPCA(2, max_epochs=3, random_state=0),
            fastvi.MixtureEncoder(fastvi.GaussianMixture(3, random_state=0), hidden=(4,),
                                  max_epochs=3, random_state=0)]


def outputs(model, X):
    """What a fitted model says about ``X``: its transform or its q, and its scores."""
    first = model.transform(X) if hasattr(model, "transform") else model.predict_proba(X)
    return first, model.score_samples(X)


@pytest.fixture(scope="module")
def data():
    X, *_ = ppca_data(600, n_features=5, n_latent=2, seed=3)
    return X


# ------------------------------------------------------------------ scikit-learn's checks

# The default constructor arguments are checked, and a MixtureEncoder whose (unfitted)
# mixture has three components, so that its network's q is not trivially 1.
@parametrize_with_checks([fastvi.VAE(), fastvi.PPCA(), fastvi.MixtureEncoder(),
                          fastvi.MixtureEncoder(fastvi.GaussianMixture(3), hidden=(8,))])
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        check(estimator)


@pytest.mark.parametrize("check", [
    "check_dataframe_column_names_consistency", "check_get_feature_names_out_error",
    "check_set_output_transform", "check_set_output_transform_pandas",
    "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas"])
@pytest.mark.parametrize("make", [fastvi.VAE, fastvi.PPCA, fastvi.MixtureEncoder])
def test_feature_name_and_set_output_checks(make, check):
    """scikit-learn's checks of feature names and ``set_output`` (not in check_estimator)."""
    estimator = make()
    if "column_names" not in check and not hasattr(estimator, "transform"):
        pytest.skip("not a transformer")
    with warnings.catch_warnings():     # the checks mix fits with and without names
        warnings.filterwarnings("ignore", "X (does not have valid|has) feature names")
        getattr(estimator_checks, check)(make.__name__, estimator)


# ------------------------------------------------------------------ the estimator API

@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_clone_repr_and_params_round_trip(model):
    params = model.get_params(deep=False)
    copy = clone(model)
    assert copy is not model and copy.get_params(deep=False).keys() == params.keys()
    for name, value in copy.get_params(deep=False).items():
        if name == "mixture":
            assert value is not params["mixture"]
            assert value.get_params() == params["mixture"].get_params()
        else:
            assert value == params[name]
    assert type(model).__name__ + "(" in repr(model) and "max_epochs=3" in repr(model)
    copy.set_params(max_epochs=5)
    assert copy.max_epochs == 5 and model.max_epochs == 3
    with pytest.raises(ValueError, match="Invalid parameter"):
        copy.set_params(no_such_parameter=1)


def test_ppca_parameters_exclude_its_fixed_settings():
    params = fastvi.PPCA().get_params()
    assert not {"decoder_hidden", "likelihood", "variance"} & params.keys()
    assert "n_latent" in params and "encoder_hidden" in params


@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_pickle_round_trip_predicts_the_same(model, data):
    model = clone(model).fit(data)
    loaded = pickle.loads(pickle.dumps(model))
    for ours, theirs in zip(outputs(model, data), outputs(loaded, data)):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_unfitted_methods_raise_scikit_learn_not_fitted_error(model, data):
    methods = ["score_samples", "score", "gap_report"]
    methods += ["transform"] if hasattr(model, "transform") else ["predict_proba", "predict"]
    for method in methods:
        try:
            getattr(model, method)(data)
        except NotFittedError as exc:
            assert "not fitted" in str(exc)
        else:
            pytest.fail(f"{method} of an unfitted model did not raise NotFittedError")
    if isinstance(model, fastvi.PPCA):
        with pytest.raises(NotFittedError):
            model.components_


def test_pipeline_scales_then_fits(data):
    X = data * np.array([1.0, 10.0, 0.1, 3.0, 1.0]) + 5.0
    pipe = make_pipeline(StandardScaler(), fastvi.PPCA(2, max_epochs=5, random_state=0))
    Z = pipe.fit(X).transform(X)
    scaled = StandardScaler().fit_transform(X)
    alone = fastvi.PPCA(2, max_epochs=5, random_state=0).fit(scaled)
    np.testing.assert_allclose(Z, alone.transform(scaled), rtol=1e-12)
    assert pipe.score(X) == pytest.approx(alone.score(scaled), rel=1e-12)
    assert pipe.get_feature_names_out().tolist() == ["ppca0", "ppca1"]


def test_grid_search_picks_the_true_latent_dimension():
    """Data with two latent dimensions: the held-out ELBO (the default ``score``) prefers
    two over one, and the grid's scores are those of fits on the folds by hand."""
    X, *_ = ppca_data(1500, n_features=5, n_latent=2, seed=5)
    model = fastvi.PPCA(max_epochs=120, batch_size=50, learning_rate=3e-2, random_state=0)
    folds = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(model, {"n_latent": [1, 2]}, cv=folds).fit(X)
    assert search.best_params_ == {"n_latent": 2}
    by_hand = [clone(model).set_params(n_latent=1).fit(X[train]).score(X[test])
               for train, test in folds.split(X)]
    np.testing.assert_allclose(search.cv_results_["split0_test_score"][0], by_hand[0],
                               rtol=1e-12)
    assert search.cv_results_["mean_test_score"][0] == pytest.approx(np.mean(by_hand),
                                                                     rel=1e-12)
    assert search.best_estimator_.n_latent == 2


@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_cross_val_score_equals_fold_fits_by_hand(model, data):
    folds = KFold(3)
    scores = cross_val_score(model, data, cv=folds)
    by_hand = [clone(model).fit(data[train]).score(data[test])
               for train, test in folds.split(data)]
    np.testing.assert_allclose(scores, by_hand, rtol=1e-12)


# ------------------------------------------------------------------ input validation

@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_dataframes_set_and_check_feature_names(model, data):
    columns = [f"f{i}" for i in range(5)]
    frame = pd.DataFrame(data, columns=columns)
    fitted = clone(model).fit(frame)
    assert fitted.feature_names_in_.tolist() == columns
    from_array = clone(model).fit(data)
    assert not hasattr(from_array, "feature_names_in_")
    for ours, theirs in zip(outputs(fitted, frame), outputs(from_array, data)):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError, match="feature names should match"):
        fitted.score_samples(frame[columns[::-1]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        fitted.score_samples(data)


@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_object_arrays_of_numbers_fit_like_floats(model, data):
    objects = clone(model).fit(data.astype(object))
    floats = clone(model).fit(data)
    for ours, theirs in zip(outputs(objects, data.astype(object)), outputs(floats, data)):
        np.testing.assert_array_equal(ours, theirs)
    bad = data.astype(object)
    bad[3, 1] = {"not": "a number"}
    with pytest.raises(TypeError, match="must be a string or a (real )?number"):
        clone(model).fit(bad)


@pytest.mark.parametrize("model", small_models(), ids=lambda m: type(m).__name__)
def test_sparse_input_is_refused_with_a_type_error(model, data):
    matrix = sparse.csr_matrix(data)
    with pytest.raises(TypeError, match="[Ss]parse data was passed"):
        clone(model).fit(matrix)
    fitted = clone(model).fit(data)
    with pytest.raises(TypeError, match="[Ss]parse data was passed"):
        fitted.score_samples(matrix)


def test_wrong_feature_counts_use_scikit_learn_wording(tmp_path, data):
    model = fastvi.VAE(2, max_epochs=1, random_state=0).fit(data[:, :2])
    with pytest.raises(ValueError, match="X has 5 features, but VAE is expecting 2 features "
                                         "as input"):
        model.transform(data)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["X"] = data
    with h5py.File(tmp_path / "x.h5", "r") as f:
        with pytest.raises(ValueError, match="has 5 features, but VAE is expecting 2 "
                                             "features as input"):
            model.score_samples(f["X"])
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        model.transform(data[:, 0])
    bad = data[:, :2].copy()
    bad[7, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity \\(first at row 7\\)"):
        model.transform(bad)


def test_streamed_inputs_still_stream_and_agree_with_arrays(tmp_path, data):
    """An h5py dataset and a chunk source are read chunk by chunk, never whole, and give
    what the array gives; a refit on a dataset drops the feature names of an earlier fit
    on a DataFrame (else arrays would be warned about names they need not have)."""
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=data, chunks=(100, 5))
    kwargs = dict(max_epochs=2, chunk_size=100, random_state=0)
    from_array = fastvi.PPCA(2, **kwargs).fit(data)

    class CountingSource(fastvi.ArraySource):
        largest = 0

        def _read(self, start, stop):
            CountingSource.largest = max(CountingSource.largest, stop - start)
            return super()._read(start, stop)

    from_file = fastvi.PPCA(2, **kwargs).fit(pd.DataFrame(data, columns=list("abcde")))
    assert from_file.feature_names_in_.tolist() == list("abcde")
    with h5py.File(tmp_path / "x.h5", "r") as f:
        from_file.fit(f["X"])       # a refit on a dataset forgets the frame's names
        assert not hasattr(from_file, "feature_names_in_") and from_file.n_features_in_ == 5
        np.testing.assert_array_equal(from_file.transform(f["X"]), from_array.transform(data))
    source = CountingSource(data, chunk_rows=100)
    np.testing.assert_array_equal(from_array.score_samples(source),
                                  from_array.score_samples(data))
    assert CountingSource.largest == 100
    np.testing.assert_array_equal(from_file.components_, from_array.components_)


# ------------------------------------------------------------------ row-wise estimates

@pytest.mark.parametrize("inference", ["amortized", "semi_amortized", "per_example"])
def test_per_row_estimates_do_not_depend_on_the_other_rows(inference, data):
    model = fastvi.VAE(2, decoder_hidden=(4,), inference=inference, refine_steps=3,
                       max_epochs=2, random_state=0).fit(data)
    subset = np.array([5, 400, 17, 3])
    for method in (model.score_samples, model.transform,
                   lambda X: model.importance_weighted_bound(X, n_samples=50)):
        whole = method(data)
        np.testing.assert_allclose(method(data[subset]), whole[subset], rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(method(data[::-1]), whole[::-1], rtol=1e-10, atol=1e-12)


def test_row_keyed_draws_are_independent_across_rows(data):
    """Each row's ELBO estimate is unbiased and the errors of different rows are
    uncorrelated: for PPCA the exact ELBO is known, so the estimation errors can be
    compared against it directly."""
    from fastvi.amortized import ppca
    model = fastvi.PPCA(2, max_epochs=10, learning_rate=1e-2, random_state=0).fit(data)
    psi = model.encoder_.forward(data)
    W, b, sigma2 = model.components_.T, model.mean_, model.noise_variance_
    closed = ppca.elbo(data, W, b, sigma2, psi[:, :2], psi[:, 2:])
    errors = np.array([model.score_samples(data, n_samples=4, random_state=seed) - closed
                       for seed in range(40)])              # (seeds, rows)
    # unbiased: the mean error over seeds and rows is near zero relative to its spread
    spread = errors.std()
    assert abs(errors.mean()) < 4 * spread / np.sqrt(errors.size)
    # independent rows: the mean over rows has the variance of a mean of independent
    # errors (common draws would leave most of one row's variance in it)
    row_means = errors.mean(axis=1)
    assert row_means.var() < 3 * errors.var() / errors.shape[1]


# ------------------------------------------------------------------ PPCA against PCA

def test_ppca_components_have_pca_shape_and_span_its_subspace():
    X, *_ = ppca_data(4000, n_features=6, n_latent=2, seed=1)
    pca = PCA(2).fit(X)
    model = fastvi.PPCA(2, max_epochs=60, learning_rate=3e-2, batch_size=100,
                        random_state=0).fit(X)
    assert model.components_.shape == pca.components_.shape == (2, 6)
    q_model = np.linalg.qr(model.components_.T)[0]
    cosines = np.linalg.svd(q_model.T @ pca.components_.T, compute_uv=False)
    assert np.degrees(np.arccos(np.clip(cosines.min(), -1, 1))) < 5.0
    np.testing.assert_allclose(model.mean_, pca.mean_, atol=0.05)
    # scikit-learn's PCA.noise_variance_ is the maximum likelihood sigma^2 (T&B eq. 8)
    assert model.noise_variance_ == pytest.approx(pca.noise_variance_, rel=0.1)


# ------------------------------------------------------------------ the mixture encoder

def test_mixture_encoder_fits_an_unfitted_mixture_and_keeps_a_fitted_one():
    X, _ = blobs(n_per=150, scale=1.4)
    unfitted = fastvi.GaussianMixture(3)
    encoder = fastvi.MixtureEncoder(unfitted, hidden=(8,), max_epochs=5,
                                    random_state=0).fit(X)
    assert not hasattr(unfitted, "means_")          # the given mixture is left alone
    assert encoder.mixture_ is not unfitted and encoder.mixture_.n_components == 3
    seed = encoder.mixture_.random_state
    assert isinstance(seed, int)                    # drawn from the encoder's seed
    again = fastvi.MixtureEncoder(unfitted, hidden=(8,), max_epochs=5, random_state=0).fit(X)
    np.testing.assert_array_equal(again.predict_proba(X), encoder.predict_proba(X))
    reference = fastvi.GaussianMixture(3, random_state=seed).fit(X)
    np.testing.assert_array_equal(encoder.mixture_.means_, reference.means_)

    prefit = fastvi.GaussianMixture(3, covariance_type="diag", random_state=1).fit(X)
    means = prefit.means_.copy()
    encoder = fastvi.MixtureEncoder(prefit, hidden=(8,), max_epochs=5,
                                    random_state=0).fit(X[:50])
    np.testing.assert_array_equal(encoder.mixture_.means_, means)   # not refitted
    np.testing.assert_array_equal(prefit.means_, means)
    with pytest.raises(ValueError, match="X has 2 features, but the fitted mixture is "
                                         "expecting 3 features"):
        fastvi.MixtureEncoder(prefit).fit(X[:, :2])
    with pytest.raises(TypeError, match="mixture must be a fastvi GaussianMixture"):
        fastvi.MixtureEncoder(PCA()).fit(X)
    default = fastvi.MixtureEncoder(max_epochs=1, random_state=0).fit(X)
    assert type(default.mixture_) is fastvi.GaussianMixture
    assert default.mixture is None and default.mixture_.n_components == 1


def test_mixture_encoder_scores_are_its_elbo():
    """score_samples is log p(x) minus KL(q || responsibilities), row by row."""
    X, _ = blobs(n_per=150, scale=1.6)
    gmm = fastvi.GaussianMixture(3, random_state=0).fit(X)
    encoder = fastvi.MixtureEncoder(gmm, hidden=(8,), max_epochs=10, learning_rate=1e-2,
                                    random_state=0).fit(X)
    log_rho = naive.log_rho_em(X, gmm.weights_, gmm.means_, gmm.covariances_, "full")
    log_px, resp = naive.responsibilities(log_rho)
    q = encoder.predict_proba(X)
    np.testing.assert_allclose(encoder.score_samples(X),
                               log_px - np.sum(rel_entr(q, resp), axis=1), rtol=1e-9)
    assert encoder.score(X) == pytest.approx(encoder.gap_report(X)["elbo_inference"],
                                             rel=1e-12)
    np.testing.assert_array_equal(encoder.predict(X), np.argmax(q, axis=1))
