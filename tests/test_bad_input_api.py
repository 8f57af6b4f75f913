"""Bad input to the Python API: every case ends in one ValueError that names the parameter
(or says what in the data is wrong), never in a TypeError, ZeroDivisionError,
AttributeError or FloatingPointError from deep inside a fit.

The cases are the rows of the "Python API" table of docs/errors.md; ``API_CASES`` is the
one list both use (``test_errors_doc_lists_api_cases`` checks the doc against it).
"""
import os

import h5py
import numpy as np
import pytest

import fastvi
from fastvi import BayesianGaussianMixture, GaussianMixture
from fastvi.data.sources import ArraySource, HDF5Source

from conftest import blobs

X, _ = blobs(n_per=60)
ROWS = X.shape[0]


def _weights(n_nonzero):
    w = np.zeros(ROWS)
    w[:n_nonzero] = 1.0
    return w


# (id, estimator class, constructor kwargs, how it is called, message regex)
# "fit", "partial_fit": called on X; (description, function): the function is called with
# the estimator.
API_CASES = [
    ("n_components=True", GaussianMixture, {"n_components": True}, "fit",
     r"n_components must be an integer >= 1, got True"),
    ("n_components=0", GaussianMixture, {"n_components": 0}, "fit",
     r"n_components must be an integer >= 1, got 0"),
    ("n_components=2.5", BayesianGaussianMixture, {"n_components": 2.5}, "fit",
     r"n_components must be an integer >= 1, got 2.5"),
    ("reg_covar=inf", GaussianMixture, {"reg_covar": np.inf}, "fit",
     r"reg_covar must be a finite number >= 0, got inf"),
    ("reg_covar=inf bgmm", BayesianGaussianMixture, {"reg_covar": np.inf}, "fit",
     r"reg_covar must be a finite number >= 0, got inf"),
    ("reg_covar=-1", GaussianMixture, {"reg_covar": -1.0}, "fit",
     r"reg_covar must be a finite number >= 0, got -1.0"),
    ("tol=nan", GaussianMixture, {"tol": np.nan}, "fit",
     r"tol must be a finite number >= 0, got nan"),
    ("tol=None", GaussianMixture, {"tol": None}, "fit",
     r"tol must be a finite number >= 0, got None"),
    ("max_iter=2.5", GaussianMixture, {"max_iter": 2.5}, "fit",
     r"max_iter must be an integer >= 0, got 2.5"),
    ("learning_offset=None", GaussianMixture, {"learning_offset": None}, "fit",
     r"learning_offset \(tau\) must be a finite number >= 0, got None"),
    ("learning_decay=None", GaussianMixture, {"learning_decay": None}, "fit",
     r"learning_decay \(kappa\) must be in \(0.5, 1\]"),
    ("learning_decay=0.5", BayesianGaussianMixture, {"learning_decay": 0.5}, "fit",
     r"learning_decay \(kappa\) must be in \(0.5, 1\]"),
    ("total_samples=0", GaussianMixture, {"total_samples": 0}, "partial_fit",
     r"total_samples must be a finite number > 0, got 0"),
    ("total_samples=nan", GaussianMixture, {"total_samples": np.nan}, "partial_fit",
     r"total_samples must be a finite number > 0, got nan"),
    ("total_samples=-1", BayesianGaussianMixture, {"total_samples": -1}, "partial_fit",
     r"total_samples must be a finite number > 0, got -1"),
    ("batch_size=True", GaussianMixture, {"batch_size": True, "algorithm": "stochastic"},
     "fit", r"batch_size must be an integer >= 1 \(or None\), got True"),
    ("chunk_size=0", GaussianMixture, {"chunk_size": 0}, "fit",
     r"chunk_size must be an integer >= 1, got 0"),
    ("n_jobs='2'", GaussianMixture, {"n_jobs": "2"}, "fit",
     r"n_jobs must be an integer, got '2'"),
    ("n_jobs=0", GaussianMixture, {"n_jobs": 0}, "fit",
     r"n_jobs must be -1 or between 1 and "),
    ("backend='gpu'", GaussianMixture, {"backend": "gpu"}, "fit",
     r"backend must be one of \('local', 'dask', 'cuda', 'auto'\) or a "
     r"fastvi.engine.backend.Backend instance, got 'gpu'"),
    ("missing='drop'", GaussianMixture, {"missing": "drop"}, "fit",
     r"missing must be one of \('error', 'marginalize'\), got 'drop'"),
    ("missing with n_active", BayesianGaussianMixture,
     {"missing": "marginalize", "n_active": 1}, "fit",
     r"missing='marginalize' needs the dense E-step: the truncated q \(n_active\) does not "
     r"marginalise missing entries; leave n_active=None"),
    ("verbose='x'", GaussianMixture, {"verbose": "x"}, "fit",
     r"verbose must be an integer >= 0, got 'x'"),
    ("warm_start='yes'", GaussianMixture, {"warm_start": "yes"}, "fit",
     r"warm_start must be True or False, got 'yes'"),
    ("shuffle=None", GaussianMixture, {"shuffle": None}, "fit",
     r"shuffle must be True or False, got None"),
    ("algorithm='sgd'", GaussianMixture, {"algorithm": "sgd"}, "fit",
     r"algorithm must be one of \('batch', 'stochastic', 'memoized'\), got 'sgd'"),
    ("init_params='x'", GaussianMixture, {"init_params": "x"}, "fit",
     r"init_params must be one of"),
    ("n_active=True", GaussianMixture, {"n_components": 3, "n_active": True}, "fit",
     r"n_active must be an integer in \[1, n_components=3\], got True"),
    ("means_init NaN", GaussianMixture,
     {"n_components": 2, "means_init": np.full((2, 3), np.nan)}, "fit",
     r"means_init contains NaN or infinity"),
    ("weights_init inf", GaussianMixture,
     {"n_components": 2, "weights_init": [np.inf, 0.5]}, "fit",
     r"weights_init contains NaN or infinity"),
    ("precisions_init strings", GaussianMixture,
     {"n_components": 2, "covariance_type": "spherical", "precisions_init": ["a", "b"]},
     "fit", r"precisions_init must be an array of numbers"),
    ("mean_prior NaN", BayesianGaussianMixture, {"mean_prior": [np.nan, 0.0, 0.0]}, "fit",
     r"mean_prior contains NaN or infinity"),
    ("random_state='x'", GaussianMixture, {"random_state": "x"}, "fit",
     r"random_state must be None, an int"),
    ("dtype='int32'", GaussianMixture, {"dtype": "int32"}, "fit",
     r"dtype must be float32 or float64, got 'int32'"),
    ("resume='x'", GaussianMixture, {},
     ("fit(X, resume=\"x\")", lambda est: est.fit(X, resume="x")),
     r"resume must be a FitState \(the state that fastvi.load_checkpoint returns\), got str"),
    ("fewer weighted rows than K", GaussianMixture, {"n_components": 3},
     ("fit(X, sample_weight=w), 2 rows nonzero", lambda est: est.fit(X, sample_weight=_weights(2))),
     r"Expected at least n_components = 3 rows of nonzero sample_weight, got 2"),
    ("fewer weighted rows than K, random_from_data", BayesianGaussianMixture,
     {"n_components": 4, "init_params": "random_from_data"},
     ("fit(X, sample_weight=w), 3 rows nonzero", lambda est: est.fit(X, sample_weight=_weights(3))),
     r"Expected at least n_components = 4 rows of nonzero sample_weight, got 3"),
    ("sample_weight negative", GaussianMixture, {},
     ("fit(X, sample_weight=-1 everywhere)", lambda est: est.fit(X, sample_weight=-np.ones(ROWS))),
     r"Negative values in data passed to `sample_weight`"),
    ("sample_weight wrong length", GaussianMixture, {},
     ("fit(X, sample_weight of 179 for 180 rows)", lambda est: est.fit(X, sample_weight=np.ones(ROWS - 1))),
     r"sample_weight.shape == \(179,\), expected \(180,\)"),
    ("X with NaN", GaussianMixture, {},
     ("fit(X) with NaN in row 7", lambda est: est.fit(np.where(np.arange(ROWS)[:, None] == 7, np.nan, X))),
     r"contains NaN or infinity \(first at row 7\)"),
    ("X 1-D", GaussianMixture, {}, ("fit(X[:, 0])", lambda est: est.fit(X[:, 0])),
     r"Expected 2D array, got 1D array"),
    ("X fewer rows than K", GaussianMixture, {"n_components": 5},
     ("fit(X[:4])", lambda est: est.fit(X[:4])),
     r"Expected n_samples >= n_components but got n_components = 5, n_samples = 4"),
    ("predict before fit", GaussianMixture, {}, ("predict(X) before fit", lambda est: est.predict(X)),
     r"This GaussianMixture instance is not fitted yet"),
    ("predict other width", GaussianMixture, {},
     ("fit(X).predict(X[:, :2])", lambda est: est.fit(X).predict(X[:, :2])),
     r"X has 2 features, but GaussianMixture is expecting 3 features as input"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[case[0] for case in API_CASES])
def test_bad_api_input_is_one_clear_value_error(case):
    _, cls, kwargs, call, message = case
    estimator = cls(**kwargs)
    with pytest.raises(ValueError, match=message):
        if call == "fit":
            estimator.fit(X)
        elif call == "partial_fit":
            estimator.partial_fit(X)
        else:
            call[1](estimator)


def test_parameter_errors_are_also_type_errors():
    """scikit-learn's InvalidParameterError is both; code catching TypeError still works."""
    with pytest.raises(TypeError, match="n_components"):
        GaussianMixture(n_components="3").fit(X)


@pytest.mark.parametrize("cls", [ArraySource, HDF5Source])
def test_sources_refuse_chunk_rows_zero_at_once(cls, tmp_path):
    if cls is ArraySource:
        make = lambda rows: ArraySource(X, chunk_rows=rows)     # noqa: E731
    else:
        path = tmp_path / "x.h5"
        with h5py.File(path, "w") as f:
            f["X"] = X
        make = lambda rows: HDF5Source(str(path), "/X", chunk_rows=rows)  # noqa: E731
    for rows in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"chunk_rows must be an integer >= 1"):
            make(rows)


def test_hdf5_source_closes_the_file_it_opened_on_bad_dtype(tmp_path):
    path = tmp_path / "ints.h5"
    with h5py.File(path, "w") as f:
        f["X"] = np.arange(12).reshape(6, 2)
    with pytest.raises(ValueError, match="holds int64 values"):
        HDF5Source(str(path), "/X")
    with h5py.File(path, "a"):      # fails on some platforms if a reader still holds it
        pass


# ----------------------------------------------------------------------------- zero weights

@pytest.mark.parametrize("algorithm", ["stochastic", "memoized"])
@pytest.mark.parametrize("cls", [GaussianMixture, BayesianGaussianMixture])
def test_a_minibatch_of_zero_weights_is_no_information(cls, algorithm):
    """Minibatches whose rows all weigh zero (the first of them, for memoized, and one in
    the middle): the fit ends with finite parameters, and the zero-weight rows' values do
    not matter at all: other values there give the same model, bit for bit."""
    w = np.ones(ROWS)
    w[:40] = 0.0            # chunks 0 and 1 of 20 rows
    w[100:120] = 0.0        # chunk 5
    kwargs = dict(n_components=3, algorithm=algorithm, batch_size=20, max_iter=4,
                  random_state=0, init_params="random_from_data", tol=0.0)
    if cls is BayesianGaussianMixture:
        # The default prior is centred on the first row (a zero-weight one here): other
        # values there change its rounding, not its value.  A given prior has none.
        kwargs.update(mean_prior=np.zeros(3), covariance_prior=np.eye(3))
    other = X.copy()
    other[w == 0] = np.random.default_rng(5).normal(50.0, 9.0, size=(int((w == 0).sum()), 3))
    with pytest.warns(fastvi.ConvergenceWarning):
        first = cls(**kwargs).fit(X, sample_weight=w)
    with pytest.warns(fastvi.ConvergenceWarning):
        second = cls(**kwargs).fit(other, sample_weight=w)
    for name in ("weights_", "means_", "covariances_"):
        assert np.all(np.isfinite(getattr(first, name)))
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert np.all(np.isfinite(first.lower_bounds_))
    assert first.lower_bounds_ == second.lower_bounds_


# ----------------------------------------------------------------------------- resume

def _checkpointed(tmp_path, estimator, data, sample_weight=None):
    """Fit with a kept checkpoint written every chunk; the state of the last write."""
    path = tmp_path / "fit.ckpt"
    estimator.fit(data, sample_weight=sample_weight,
                  checkpoint=fastvi.Checkpointer(path, every_chunks=1, keep=True))
    state, _ = fastvi.load_checkpoint(path)
    return state


@pytest.fixture
def stopped_state(tmp_path):
    """The checkpoint of a stochastic fit (3 components, 3 features, 9 chunks of 20)."""
    est = GaussianMixture(3, algorithm="stochastic", batch_size=20, max_iter=2,
                          random_state=0, tol=0.0)
    with pytest.warns(fastvi.ConvergenceWarning):
        return _checkpointed(tmp_path, est, X)


def _resume(data, state, sample_weight=None, **kwargs):
    params = dict(n_components=3, algorithm="stochastic", batch_size=20, max_iter=3,
                  random_state=0, tol=0.0)
    params.update(kwargs)
    return GaussianMixture(**params).fit(data, sample_weight=sample_weight, resume=state)


@pytest.mark.parametrize("change, message", [
    (dict(n_components=4), r"n_components=3, not 4"),
    (dict(data=X[:, :2]), r"fit to 180 x 3 rows; the data given are 180 x 2"),
    (dict(data=X[:160]), r"fit to 180 x 3 rows; the data given are 160 x 3"),
    (dict(batch_size=30), r"read in 9 chunks of up to 20 rows; these data are read in 6"),
    (dict(data=X + 1e-9), r"the data \(or sample_weight\) changed since the checkpoint"),
    (dict(sample_weight=np.full(ROWS, 2.0)), r"changed since the checkpoint"),
    (dict(algorithm="memoized"), r"written by algorithm='stochastic', not 'memoized'"),
])
def test_resume_refuses_a_state_of_other_data_or_model(stopped_state, change, message):
    change = dict(change)
    data = change.pop("data", X)
    weights = change.pop("sample_weight", None)
    with pytest.raises(ValueError, match=message):
        _resume(data, stopped_state, weights, **change)


def test_resume_on_the_same_data_still_goes_on(stopped_state):
    """The fingerprint check passes for the data of the checkpoint, even as a copy in
    another layout (Fortran order, float32 round trip excluded: that is other data)."""
    resumed = _resume(np.asfortranarray(X.copy()), stopped_state)
    assert resumed.n_iter_ == 3


def test_a_changed_middle_chunk_is_not_caught_by_design(stopped_state):
    """The fingerprint reads the first and last chunks only (two reads, whatever N): a
    change confined to the middle goes unnoticed. Documented in docs/errors.md."""
    data = X.copy()
    data[90] += 1.0
    _resume(data, stopped_state)


DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "errors.md")
BEGIN, END = "<!-- api-cases: begin -->", "<!-- api-cases: end -->"


def render(text):
    """``text`` (docs/errors.md) with its Python API table replaced by ``api_table()``."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{api_table()}\n{END}{tail}"


def test_errors_doc_lists_the_api_cases():
    with open(DOC) as handle:
        text = handle.read()
    assert render(text) == text, ("run `python tests/test_bad_input_api.py` to update "
                                  "docs/errors.md")


def _shown(value):
    if isinstance(value, np.ndarray):
        return f"<{value.shape} array of {value.flat[0]}>"
    return repr(value)


def api_table():
    """The Python API rows of docs/errors.md, rendered from ``API_CASES``
    (``python tests/test_bad_input_api.py`` rewrites them in the doc)."""
    lines = ["| case | call | ValueError message (start) |",
             "|---|---|---|"]
    for name, cls, kwargs, call, message in API_CASES:
        shown = ", ".join(f"{k}={_shown(v)}" for k, v in kwargs.items())
        how = f"`{cls.__name__}({shown}).{call if isinstance(call, str) else call[0]}`"
        if isinstance(call, str):
            how = how[:-1] + "(X)`"
        text = message.replace("\\", "")          # the regular expression, read as text
        lines.append(f"| `{name}` | {how.replace('|', '/')} | {text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    with open(DOC) as handle:
        updated = render(handle.read())
    with open(DOC, "w") as handle:
        handle.write(updated)


def test_resume_writes_only_into_its_own_support_file(tmp_path):
    """A checkpoint names the supports file a resumed fit writes into; the estimator must
    have been given that file, or a checkpoint from elsewhere could aim the writes at any
    HDF5 file with a /supports dataset."""
    kwargs = dict(n_components=4, n_active=2, n_candidates=3, algorithm="memoized",
                  batch_size=60, max_iter=1, random_state=0, tol=0.0)
    supports = str(tmp_path / "supports.h5")
    with pytest.warns(fastvi.ConvergenceWarning):
        state = _checkpointed(tmp_path, GaussianMixture(support_file=supports, **kwargs), X)
    kwargs["max_iter"] = 2
    for other in (None, str(tmp_path / "other.h5")):
        with pytest.raises(ValueError, match="the checkpoint keeps its supports in"):
            GaussianMixture(support_file=other, **kwargs).fit(X, resume=state)
    with pytest.warns(fastvi.ConvergenceWarning):
        GaussianMixture(support_file=supports, **kwargs).fit(X, resume=state)
