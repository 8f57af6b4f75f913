"""Data opening, generated mixtures, and model files (fastvi.io, fastvi.datasets)."""
import json
import os

import h5py
import numpy as np
import pytest

from fastvi import BayesianGaussianMixture, GaussianMixture
from fastvi.data import generate as datasets   # where BLOCK_ROWS is read
from fastvi.datasets import make_mixture, write_mixture_h5
from fastvi.data.atomic import atomic_path
from fastvi.data.files import open_data, open_source, open_sources, resolve_spec
from fastvi.io.model import get_params, load_model, save_model
from fastvi.data.sources import ArraySource, ConcatSource, HDF5Source

COV_TYPES = ("full", "tied", "diag", "spherical")

# The fits here stop after a few iterations on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::fastvi.ConvergenceWarning")


@pytest.fixture(scope="module")
def small_data():
    X, labels, truth = make_mixture(600, 3, 3, separation=5.0, random_state=1)
    return X, labels, truth


def _fit(cls, cov, X, **kwargs):
    # Few iterations: the round trip, not convergence, is under test.
    return cls(n_components=3, covariance_type=cov, max_iter=5, tol=0.0, random_state=0,
               **kwargs).fit(X)


# ----------------------------------------------------------------------------- datasets

def test_make_mixture_is_deterministic_and_separated():
    X, labels, truth = make_mixture(2000, 5, 4, separation=3.0, random_state=7)
    X2, labels2, _ = make_mixture(2000, 5, 4, separation=3.0, random_state=7)
    assert X.dtype == np.float32 and X.shape == (2000, 5)
    assert labels.dtype == np.int32 and set(np.unique(labels)) <= set(range(4))
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(labels, labels2)
    means = truth["means"]
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(4, 1)]
    assert dist.min() >= 3.0
    eig = np.linalg.eigvalsh(truth["covariances"])
    assert eig.min() >= 0.25 - 1e-12 and eig.max() <= 1.0 + 1e-12
    assert np.isclose(truth["weights"].sum(), 1.0)
    # The rows follow the truth: per-component means are close to the true means.
    for k in range(4):
        assert np.allclose(X[labels == k].mean(axis=0), means[k], atol=0.2)
    other, _, _ = make_mixture(2000, 5, 4, separation=3.0, random_state=8)
    assert not np.array_equal(X, other)


@pytest.mark.parametrize("cov", COV_TYPES)
def test_make_mixture_covariance_layouts(cov):
    X, _, truth = make_mixture(50, 3, 2, covariance_type=cov, dtype="float64")
    shapes = {"full": (2, 3, 3), "tied": (3, 3), "diag": (2, 3), "spherical": (2,)}
    assert truth["covariances"].shape == shapes[cov]
    assert X.dtype == np.float64


def test_write_mixture_h5_matches_make_mixture(tmp_path, monkeypatch):
    # Small generator blocks so that several blocks and an unaligned chunking are exercised.
    monkeypatch.setattr(datasets, "BLOCK_ROWS", 700)
    X, labels, truth = make_mixture(2500, 4, 3, random_state=3)
    path = tmp_path / "mix.h5"
    write_mixture_h5(path, 2500, 4, 3, random_state=3, chunk_rows=512)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["X"][()], X)
        np.testing.assert_array_equal(f["labels"][()], labels)
        assert f["X"].chunks == (512, 4) and f["X"].dtype == np.float32
        assert f["labels"].dtype == np.int32
        for key in ("weights", "means", "covariances"):
            np.testing.assert_array_equal(f["truth"][key][()], truth[key])
        assert f.attrs["seed"] == "3" and f.attrs["n_components"] == 3
        assert f.attrs["generator"] == "fastvi.datasets.write_mixture_h5"
    assert os.listdir(tmp_path) == ["mix.h5"]          # no temporary file left behind


def test_make_mixture_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_samples"):
        make_mixture(0)
    with pytest.raises(ValueError, match="covariance_type"):
        make_mixture(10, covariance_type="banana")
    with pytest.raises(ValueError, match="dtype"):
        make_mixture(10, dtype="int32")


def test_atomic_path_removes_the_temporary_file_on_error(tmp_path):
    target = tmp_path / "out.h5"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"new")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.h5"]


# ----------------------------------------------------------------------------- open_data

@pytest.fixture
def data_files(tmp_path):
    X = np.arange(24, dtype=np.float32).reshape(8, 3)
    npy = tmp_path / "rows.npy"
    np.save(npy, X)
    h5 = tmp_path / "rows.h5"
    with h5py.File(h5, "w") as f:
        f["X"] = X
        f["group/other"] = X[:, :2]
        f["flat"] = np.arange(5.0)
        f["text"] = np.array([[b"a", b"b"], [b"c", b"d"]])
        f.create_group("empty")
    single = tmp_path / "single.h5"
    with h5py.File(single, "w") as f:
        f["data/rows"] = X
        f["ids"] = np.arange(8)
    return X, npy, h5, single


def test_open_data_npy_and_h5(data_files):
    X, npy, h5, single = data_files
    with open_data(npy) as rows:
        assert isinstance(rows, np.memmap)
        np.testing.assert_array_equal(rows, X)
    for spec in (str(h5), f"{h5}:/X", f"{h5}:X"):
        source = open_data(spec)
        with source as rows:
            assert isinstance(rows, h5py.Dataset)
            np.testing.assert_array_equal(rows[()], X)
        assert source.label.endswith(":/X")
    with open_data(f"{h5}:/group/other") as rows:
        assert rows.shape == (8, 2)
    with open_data(single) as rows:                     # its only 2-D dataset
        assert rows.name == "/data/rows"


def test_open_data_closes_the_file(data_files):
    _, _, h5, _ = data_files
    source = open_data(h5)
    with source as rows:
        pass
    assert not rows.id.valid


@pytest.mark.parametrize("suffix, error, words", [
    ("missing.h5", FileNotFoundError, ["missing.h5", "does not exist"]),
    ("missing.npy", FileNotFoundError, ["missing.npy"]),
    ("rows.h5:/nope", KeyError, ["/nope", "rows.h5", "/X", "/group/other"]),
    ("rows.h5:/empty", KeyError, ["/empty", "group"]),
    ("rows.h5:/flat", ValueError, ["rows.h5:/flat", "2-D", "(5,)"]),
    ("rows.h5:/text", ValueError, ["rows.h5:/text", "dtype"]),
    ("rows.npy:/X", ValueError, ["rows.npy", ".npy"]),
])
def test_open_data_errors_name_the_file_and_dataset(data_files, tmp_path, suffix, error, words):
    with pytest.raises(error) as info:
        open_data(f"{tmp_path}/{suffix}")
    message = info.value.args[0]
    for word in words:
        assert word in message


def test_open_data_corrupt_and_ambiguous_files(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="corrupt.h5.*not an HDF5 file"):
        open_data(corrupt)
    truncated = tmp_path / "truncated.h5"
    with h5py.File(truncated, "w") as f:
        f["X"] = np.zeros((1000, 10))
    truncated.write_bytes(truncated.read_bytes()[:3000])
    with pytest.raises((OSError, ValueError), match="truncated.h5"):
        open_data(truncated)
    two = tmp_path / "two.h5"
    with h5py.File(two, "w") as f:
        f["a"] = np.zeros((3, 2))
        f["b"] = np.zeros((3, 2))
    with pytest.raises(KeyError, match="/a, /b"):
        open_data(two)
    bad_npy = tmp_path / "objects.npy"
    np.save(bad_npy, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy"):
        open_data(bad_npy)


def test_open_source_hdf5_is_aligned_and_closes(tmp_path):
    X = np.arange(2000 * 3, dtype=np.float32).reshape(2000, 3)
    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(300, 3))
    source = open_source(path, chunk_rows=500)
    assert isinstance(source, HDF5Source)
    assert source.chunk_rows == 600                          # rounded up to the chunking
    assert source.label == f"{path}:/X" and source.spec == f"{path}:/X"
    assert source.dtype == np.float32 and source.shape == (2000, 3)
    with source:
        rows = np.vstack([chunk for _, _, chunk in source.chunks()])
        dataset = source.dataset
    np.testing.assert_array_equal(rows, X)
    assert not dataset.id.valid                             # closed on leaving the block


def test_open_source_npy_and_relative_specs(data_files, monkeypatch):
    X, npy, h5, single = data_files
    source = open_source(npy, chunk_rows=3)
    assert isinstance(source, ArraySource) and source.chunk_bounds()[-1] == (6, 8)
    assert source.label == str(npy) and source.spec == str(npy)
    np.testing.assert_array_equal(source.read(0, 8), X)
    monkeypatch.chdir(h5.parent)
    assert open_source("rows.h5").spec == f"{h5}:/X"          # absolute, dataset explicit
    assert resolve_spec("single.h5") == f"{single}:/data/rows"
    assert resolve_spec("rows.npy") == str(npy)


@pytest.mark.parametrize("suffix, error, words", [
    ("missing.h5", FileNotFoundError, ["missing.h5", "does not exist"]),
    ("rows.h5:/nope", KeyError, ["/nope", "rows.h5", "/X"]),
    ("rows.h5:/flat", ValueError, ["rows.h5:/flat", "2-D"]),
    ("rows.h5:/text", ValueError, ["rows.h5:/text", "dtype"]),
])
def test_open_source_errors_are_open_datas(data_files, tmp_path, suffix, error, words):
    with pytest.raises(error) as info:
        open_source(f"{tmp_path}/{suffix}")
    for word in words:
        assert word in info.value.args[0]


def test_open_sources_concatenates_in_order(data_files):
    X, npy, h5, _ = data_files
    source = open_sources([str(h5), str(npy)], chunk_rows=4)
    assert isinstance(source, ConcatSource)
    assert source.shape == (16, 3) and source.spec == [f"{h5}:/X", str(npy)]
    with source:
        rows = np.vstack([chunk for _, _, chunk in source.chunks()])
    np.testing.assert_array_equal(rows, np.vstack([X, X]))
    assert isinstance(open_sources([str(npy)]), ArraySource)
    with pytest.raises(ValueError, match="same number of features.*:/X: 3.*other: 2"):
        open_sources([str(h5), f"{h5}:/group/other"])
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        open_sources([str(h5), str(h5.parent / "nothing.h5")])


# ----------------------------------------------------------------------------- models

def _assert_same_predictions(a, b, X):
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("cov", COV_TYPES)
def test_gaussian_mixture_round_trip(tmp_path, small_data, cov):
    X = small_data[0]
    model = _fit(GaussianMixture, cov, X)
    path = tmp_path / "gmm.h5"
    save_model(path, model)
    loaded = load_model(path)
    assert type(loaded) is GaussianMixture
    assert get_params(loaded)[0] == get_params(model)[0]
    for key in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(model, key))
    for key in ("converged_", "n_iter_", "lower_bound_", "n_features_in_"):
        assert getattr(loaded, key) == getattr(model, key)
    assert loaded.covariance_type == cov and loaded.n_components == 3
    _assert_same_predictions(model, loaded, X)
    assert loaded.score(X) == model.score(X)


@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
@pytest.mark.parametrize("cov", COV_TYPES)
def test_bayesian_mixture_round_trip(tmp_path, small_data, cov, prior_type):
    X = small_data[0]
    model = _fit(BayesianGaussianMixture, cov, X, weight_concentration_prior_type=prior_type)
    path = tmp_path / "bgmm.h5"
    save_model(path, model)
    loaded = load_model(path)
    assert type(loaded) is BayesianGaussianMixture
    assert loaded.weight_concentration_prior_type == prior_type
    _assert_same_predictions(model, loaded, X)
    assert loaded.elbo(X) == model.elbo(X)
    if prior_type == "dirichlet_process":
        assert isinstance(loaded.weight_concentration_, tuple)
        for part, original in zip(loaded.weight_concentration_, model.weight_concentration_):
            np.testing.assert_array_equal(part, original)
    else:
        np.testing.assert_array_equal(loaded.weight_concentration_,
                                      model.weight_concentration_)
    for key in ("mean_precision_", "degrees_of_freedom_", "mean_prior_", "covariance_prior_",
                "weights_"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(model, key))
    for key in ("weight_concentration_prior_", "mean_precision_prior_",
                "degrees_of_freedom_prior_", "lower_bound_", "n_iter_", "converged_"):
        assert getattr(loaded, key) == getattr(model, key)
    # A loaded model can be refitted (warm start reuses the rebuilt private state).
    loaded.warm_start, loaded.max_iter = True, 2
    loaded.fit(X)


def test_model_file_schema(tmp_path, small_data):
    X = small_data[0]
    model = _fit(GaussianMixture, "diag", X, means_init=np.zeros((3, 3)), dtype=np.float64)
    path = tmp_path / "gmm.h5"
    save_model(path, model)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "fastvi-model"
        assert f.attrs["format_version"] == 1
        assert f.attrs["class"] == "GaussianMixture"
        params = json.loads(f.attrs["params"])
        assert params["covariance_type"] == "diag" and params["n_components"] == 3
        assert params["dtype"] == "float64" and params["random_state"] == 0
        assert "means_init" not in params and "weights_init" not in params
        np.testing.assert_array_equal(f["param_arrays/means_init"][()], np.zeros((3, 3)))
        assert f["weights_"].shape == (3,) and f["covariances_"].shape == (3, 3)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.means_init, np.zeros((3, 3)))
    assert loaded.weights_init is None and loaded.dtype == "float64"
    assert os.listdir(tmp_path) == ["gmm.h5"]


def test_load_model_errors(tmp_path, small_data):
    X = small_data[0]
    path = tmp_path / "gmm.h5"
    save_model(path, _fit(GaussianMixture, "full", X))
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 2
        f.attrs["fastvi_version"] = "9.0"
    with pytest.raises(ValueError, match="format_version 2.*upgrade"):
        load_model(path)
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["X"] = X
    with pytest.raises(ValueError, match="data.h5.*not a fastvi model"):
        load_model(data)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="junk.h5"):
        load_model(junk)
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        load_model(tmp_path / "nothing.h5")
    with pytest.raises(ValueError, match="unfitted"):
        save_model(tmp_path / "unfitted.h5", GaussianMixture(2))
    assert not (tmp_path / "unfitted.h5").exists()


# ----------------------------------------------------------------------------- file modes

@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_usual_mode_and_checkpoints_stay_private(tmp_path, small_data,
                                                                 umask, expected):
    import stat

    import fastvi
    from fastvi.io.amortized import save_amortized
    from fastvi.cli.predict import predict_to_h5
    X, _, _ = small_data
    gmm = _fit(GaussianMixture, "diag", X)
    vae = fastvi.PPCA(1, max_epochs=1, random_state=0).fit(X)
    previous = os.umask(umask)
    try:
        # what open() gives a new file under this umask: the independent reference
        with open(tmp_path / "plain", "w"):
            pass
        with atomic_path(tmp_path / "raw.bin") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x")
        save_model(tmp_path / "model.h5", gmm)
        save_amortized(vae, tmp_path / "ppca.h5")
        write_mixture_h5(tmp_path / "data.h5", 100, 3, 2)
        predict_to_h5(gmm, X, tmp_path / "labels.h5")
        fastvi.Checkpointer(tmp_path / "fit.ckpt").write({"any": "state"})
    finally:
        os.umask(previous)

    def mode(name):
        return stat.S_IMODE(os.stat(tmp_path / name).st_mode)

    assert mode("plain") == expected
    for name in ("raw.bin", "model.h5", "ppca.h5", "data.h5", "labels.h5"):
        assert mode(name) == expected, name
    assert mode("fit.ckpt") == 0o600


# ----------------------------------------------------------------------------- fastvi.load

@pytest.fixture(scope="module")
def fitted_models(small_data):
    import fastvi
    X, _, _ = small_data
    return {"GaussianMixture": _fit(GaussianMixture, "full", X),
            "BayesianGaussianMixture": _fit(BayesianGaussianMixture, "diag", X),
            "VAE": fastvi.VAE(2, decoder_hidden=(5,), encoder_hidden=(4,), max_epochs=2,
                              random_state=0).fit(X),
            "PPCA": fastvi.PPCA(1, max_epochs=2, random_state=0).fit(X)}


@pytest.mark.parametrize("name", ["GaussianMixture", "BayesianGaussianMixture", "VAE",
                                  "PPCA"])
def test_save_then_load_predicts_as_the_fitted_model(tmp_path, small_data, fitted_models,
                                                     name):
    import fastvi
    from fastvi.io import save
    X, _, _ = small_data
    model = fitted_models[name]
    save(model, tmp_path / "m.h5")
    loaded = fastvi.load(tmp_path / "m.h5")
    assert type(loaded) is type(model)
    if name.endswith("GaussianMixture"):
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    else:
        np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
        np.testing.assert_array_equal(loaded.score_samples(X, random_state=1),
                                      model.score_samples(X, random_state=1))
    # the file is the one the specific writers produce, so their readers take it too
    from fastvi.io.amortized import load_amortized
    reader = load_model if name.endswith("GaussianMixture") else load_amortized
    assert type(reader(tmp_path / "m.h5")) is type(model)


def test_load_names_the_path_of_anything_else(tmp_path):
    import fastvi
    from fastvi.io import save
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        fastvi.load(missing)
    (tmp_path / "text.h5").write_text("not HDF5")
    with pytest.raises(ValueError, match="text.h5"):
        fastvi.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["X"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match="other.h5.*not a fastvi model file"):
        fastvi.load(tmp_path / "other.h5")
    with pytest.raises(TypeError, match="GaussianMixture"):
        save(object(), tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


# ----------------------------------------------------------------------------- checkpoints

def test_checkpointer_finish_removes_the_file_unless_kept(tmp_path):
    import fastvi
    done = fastvi.Checkpointer(tmp_path / "a.ckpt")
    done.write({"state": 1})
    assert done.finish() is True and not (tmp_path / "a.ckpt").exists()
    assert done.finish() is False                      # nothing left: no error
    kept = fastvi.Checkpointer(tmp_path / "b.ckpt", keep=True)
    kept.write({"state": 2})
    assert kept.finish() is False
    assert fastvi.load_checkpoint(tmp_path / "b.ckpt")[0] == {"state": 2}


# ----------------------------------------------------------------------------- held-out rows

def test_sample_seed_draws_other_rows_of_the_same_mixture(tmp_path):
    train = write_mixture_h5(tmp_path / "train.h5", 20000, 3, 4, random_state=5)
    held = write_mixture_h5(tmp_path / "held.h5", 20000, 3, 4, random_state=5,
                            sample_seed=1)
    other = write_mixture_h5(tmp_path / "other.h5", 20000, 3, 4, random_state=6)
    for key in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(held[key], train[key])
    assert not np.allclose(other["means"], train["means"])
    with h5py.File(tmp_path / "train.h5", "r") as a, h5py.File(tmp_path / "held.h5", "r") as b:
        X, Y, labels = a["X"][()], b["X"][()], b["labels"][()]
        assert b.attrs["sample_seed"] == "1"
    assert not np.any(np.all(X == Y, axis=1))           # different rows
    # ... drawn from the stored mixture: each component's rows centre on its true mean
    for k in range(4):
        rows = Y[labels == k]
        np.testing.assert_allclose(rows.mean(axis=0), train["means"][k],
                                   atol=5 / np.sqrt(len(rows)))
    # without sample_seed the rows are those of the seed, as before
    X0, _, _ = make_mixture(20000, 3, 4, random_state=5)
    np.testing.assert_array_equal(X0, X)
    X1, _, truth1 = make_mixture(20000, 3, 4, random_state=5, sample_seed=1)
    np.testing.assert_array_equal(X1, Y)


@pytest.mark.parametrize("keep", [False, True])
def test_a_finished_fit_removes_its_checkpoint_unless_kept(tmp_path, small_data, keep):
    """Python's fit and `fastvi fit` agree: only an interrupted fit leaves a checkpoint."""
    import fastvi
    X, _, _ = small_data
    path = tmp_path / "fit.ckpt"
    checkpointer = fastvi.Checkpointer(path, every_seconds=None, keep=keep)
    GaussianMixture(3, max_iter=3, tol=0.0, random_state=0).fit(X, checkpoint=checkpointer)
    assert checkpointer.writes > 0                     # it was written during the fit
    assert path.exists() == keep


def test_atomic_path_names_its_temporary_by_pid_and_removes_dead_writers_temps(tmp_path):
    import subprocess
    import sys
    target = tmp_path / "out.h5"
    # a writer that was SIGKILLed: its pid is gone (a reaped child's pid)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".out.h5.{dead.pid}.0123abcd.tmp"
    live = tmp_path / f".out.h5.{os.getppid()}.0123abcd.tmp"      # a running process
    other = tmp_path / f".other.h5.{dead.pid}.0123abcd.tmp"       # another target
    unknown = tmp_path / ".out.h5.k2j3h4g5.tmp"                   # not of this form
    for leftover in (stale, live, other, unknown):
        leftover.write_bytes(b"x")
    with atomic_path(target) as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(f".out.h5.{os.getpid()}.") and name.endswith(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(b"new")
    assert not stale.exists()
    assert live.exists() and other.exists() and unknown.exists()
    assert target.read_bytes() == b"new"


def test_atomic_path_mode_is_private_before_and_after_the_rename(tmp_path):
    with atomic_path(tmp_path / "fit.ckpt", mode=0o600) as tmp:
        assert os.stat(tmp).st_mode & 0o777 == 0o600
        with open(tmp, "wb") as fh:
            fh.write(b"state")
    assert os.stat(tmp_path / "fit.ckpt").st_mode & 0o777 == 0o600


@pytest.mark.parametrize("chunk_rows", [1000, 65536 * 2])
def test_a_generated_source_holds_the_rows_of_make_mixture(chunk_rows):
    # made on read, block by block (chunks of 1000 rows cut the 65,536-row generator
    # blocks; 131,072 hold two): the rows of make_mixture for the same seeds
    from fastvi.datasets import GeneratedSource
    n = 140_000
    X, _, truth = make_mixture(n, 3, 4, covariance_type="diag", random_state=9)
    source = GeneratedSource(n, 3, 4, covariance_type="diag", random_state=9,
                             chunk_rows=chunk_rows)
    assert source.shape == X.shape and source.dtype == X.dtype
    np.testing.assert_array_equal(source.truth["means"], truth["means"])
    got = np.concatenate([chunk for _, _, chunk in source.chunks()])
    np.testing.assert_array_equal(got, X)
    np.testing.assert_array_equal(source.remote_reader().read(65530, 65540), X[65530:65540])
    held_out = GeneratedSource(1000, 3, 4, covariance_type="diag", random_state=9,
                               sample_seed=1)
    np.testing.assert_array_equal(held_out.read(0, 1000),
                                  make_mixture(1000, 3, 4, covariance_type="diag",
                                               random_state=9, sample_seed=1)[0])


def test_a_generated_source_with_a_block_per_chunk_makes_each_chunk_alone():
    from fastvi.datasets import GeneratedSource
    source = GeneratedSource(2500, 3, 2, random_state=4, chunk_rows=1000, block_rows=1000)
    whole = source.read(0, 2500)
    # chunk 1 from (seed, 1) alone: the same rows whichever range asks for them
    np.testing.assert_array_equal(source.remote_reader().read(1000, 2000), whole[1000:2000])
    np.testing.assert_array_equal(source.read(1500, 2100), whole[1500:2100])
    other = GeneratedSource(2500, 3, 2, random_state=4, chunk_rows=1000)
    assert not np.array_equal(other.read(1000, 2000), whole[1000:2000])
