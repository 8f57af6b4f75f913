"""Model files are not trusted blindly: a corrupt or hand-edited file is refused when it
is loaded, with a message naming the file, the dataset and what was expected, instead of
predicting NaN, or another width's labels, with exit status 0."""
import json
import re
import shutil

import h5py
import numpy as np
import pytest

import fastvi
from fastvi import BayesianGaussianMixture, GaussianMixture
from fastvi.cli import main
from fastvi.io.model import load_model, save_model

K, D = 4, 2


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted model file of each class and covariance type used below."""
    d = tmp_path_factory.mktemp("models")
    X = np.random.default_rng(0).standard_normal((200, D)) + np.repeat(
        np.arange(K) * 6.0, 50)[:, None]
    np.save(d / "X.npy", X)
    files = {}
    for cls, cov, prior in ((GaussianMixture, "full", None), (GaussianMixture, "diag", None),
                            (BayesianGaussianMixture, "full", "dirichlet_process"),
                            (BayesianGaussianMixture, "spherical", "dirichlet_distribution")):
        kwargs = {} if prior is None else {"weight_concentration_prior_type": prior}
        model = cls(K, covariance_type=cov, max_iter=5, random_state=0, **kwargs).fit(X)
        path = d / f"{cls.__name__}-{cov}.h5"
        save_model(path, model)
        files[cls.__name__, cov] = path
    return d, files


def _broken(saved, tmp_path, which, edit):
    """A copy of a saved model file, changed by ``edit(h5py.File)``."""
    _, files = saved
    path = tmp_path / "m.h5"
    shutil.copy(files[which], path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _replace(key, value):
    def edit(f):
        del f[key]
        f.create_dataset(key, data=value)
    return edit


def _set_param(name, value):
    def edit(f):
        params = json.loads(f.attrs["params"])
        params[name] = value
        f.attrs["params"] = json.dumps(params)
    return edit


GMM, BGMM = ("GaussianMixture", "full"), ("BayesianGaussianMixture", "full")

# (id, model, edit, message regex after "model file '<path>': ")
CASES = [
    ("means NaN", GMM, _replace("means_", np.full((K, D), np.nan)),
     r"means_ contains NaN or infinity"),
    ("means wrong shape", GMM, _replace("means_", np.zeros((3, 5))),
     r"means_ has shape \(3, 5\), expected \(4, 2\) \(n_components=4, n_features_in_=2"),
    ("means integer", GMM, _replace("means_", np.zeros((K, D), dtype=np.int64)),
     r"means_ holds int64 values, expected floating point"),
    ("weights negative", GMM, _replace("weights_", np.array([1.5, -0.5, 0.0, 0.0])),
     r"weights_ must be >= 0 and sum to 1"),
    ("weights sum 2", GMM, _replace("weights_", np.full(K, 0.5)),
     r"weights_ must be >= 0 and sum to 1, got sum 2.0"),
    ("covariances wrong shape", GMM, _replace("covariances_", np.ones((K, D))),
     r"covariances_ has shape \(4, 2\), expected \(4, 2, 2\)"),
    ("diag covariances inf", ("GaussianMixture", "diag"),
     _replace("covariances_", np.full((K, D), np.inf)), r"covariances_ contains NaN or infinity"),
    ("precisions wrong shape", GMM, _replace("precisions_cholesky_", np.ones((D, D))),
     r"precisions_cholesky_ has shape \(2, 2\), expected \(4, 2, 2\)"),
    ("covariance_type corrupt", GMM, _set_param("covariance_type", "banana"),
     r"covariance_type 'banana' is not one of 'full', 'tied', 'diag', 'spherical'"),
    ("n_components corrupt", GMM, _set_param("n_components", 0),
     r"n_components 0 is not an integer >= 1"),
    ("n_components differs from arrays", GMM, _set_param("n_components", 5),
     r"weights_ has shape \(4,\), expected \(5,\)"),
    ("n_features_in_ array", GMM, _replace("n_features_in_", np.array([2, 2])),
     r"n_features_in_ must be a number"),
    ("means_ missing", GMM, lambda f: f.__delitem__("means_"),
     r"lacks the dataset 'means_'"),
    ("degrees_of_freedom_ negative", BGMM, _replace("degrees_of_freedom_", -np.ones(K)),
     r"degrees_of_freedom_ has values <= 0"),
    ("mean_prior_ wrong shape", BGMM, _replace("mean_prior_", np.zeros(3)),
     r"mean_prior_ has shape \(3,\), expected \(2,\)"),
    ("stick-breaking part NaN", BGMM,
     _replace("weight_concentration_/1", np.full(K, np.nan)),
     r"weight_concentration_/1 contains NaN or infinity"),
    ("weight prior type mismatch", BGMM,
     _set_param("weight_concentration_prior_type", "dirichlet_distribution"),
     r"weight_concentration_prior_type 'dirichlet_distribution' does not match"),
    ("spherical prior wrong shape", ("BayesianGaussianMixture", "spherical"),
     _replace("covariance_prior_", np.ones(D)),
     r"covariance_prior_ has shape \(2,\), expected \(\)"),
    ("prior scalar NaN", BGMM, _replace("mean_precision_prior_", np.nan),
     r"mean_precision_prior_ contains NaN or infinity"),
]


@pytest.mark.parametrize("name, which, edit, message", CASES, ids=[c[0] for c in CASES])
def test_load_model_refuses_a_corrupt_file_naming_it(saved, tmp_path, name, which, edit,
                                                     message):
    path = _broken(saved, tmp_path, which, edit)
    with pytest.raises(ValueError, match=re.escape(f"model file {str(path)!r}: ") + message):
        load_model(path)
    with pytest.raises(ValueError, match=message):
        fastvi.load(path)


def test_the_cli_names_the_model_file_not_the_data(saved, tmp_path, capsys):
    d, _ = saved
    for edit in (_replace("means_", np.full((K, D), np.nan)),
                 _set_param("covariance_type", "banana")):
        path = _broken(saved, tmp_path, GMM, edit)
        for argv in (["predict", str(path), str(d / "X.npy"), "-o", str(tmp_path / "p.h5")],
                     ["score", str(path), str(d / "X.npy")], ["info", str(path)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"fastvi: error: model file {str(path)!r}: "), err
            assert err.count("\n") == 1 and "X.npy" not in err
        assert not (tmp_path / "p.h5").exists()


@pytest.mark.parametrize("which", [GMM, ("GaussianMixture", "diag"), BGMM,
                                   ("BayesianGaussianMixture", "spherical")])
def test_good_files_still_load_bit_for_bit(saved, which):
    d, files = saved
    model = load_model(files[which])
    X = np.load(d / "X.npy")
    assert np.isfinite(model.score_samples(X)).all()


# ----------------------------------------------------------------------------- VAE / PPCA

@pytest.fixture(scope="module")
def saved_vae(tmp_path_factory):
    d = tmp_path_factory.mktemp("vae")
    X = np.random.default_rng(0).standard_normal((64, 3))
    path = d / "vae.h5"
    fastvi.VAE(2, decoder_hidden=(4,), encoder_hidden=(5,), max_epochs=1,
               random_state=0).fit(X).save(path)
    return path


@pytest.mark.parametrize("key, value, message", [
    ("decoder/W0", np.zeros((3, 4)), r"/decoder/W0 has shape \(3, 4\), expected \(2, 4\)"),
    ("decoder/b1", np.full(3, np.nan), r"/decoder/b1 contains NaN or infinity"),
    ("encoder/W1", np.zeros((5, 3)), r"/encoder/W1 has shape \(5, 3\), expected \(5, 4\)"),
])
def test_load_amortized_checks_the_layers(saved_vae, tmp_path, key, value, message):
    path = tmp_path / "vae.h5"
    shutil.copy(saved_vae, path)
    with h5py.File(path, "r+") as f:
        del f[key]
        f[key] = value
    with pytest.raises(ValueError, match=re.escape(f"model file {str(path)!r}: ") + message):
        fastvi.load(path)
