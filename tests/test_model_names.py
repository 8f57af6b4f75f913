"""Model files keep ``feature_names_in_``; a Pipeline is refused with what to do instead;
``fastvi info`` on a model file shows what it showed when it built the estimator.

The truths: the fitted estimator itself (its names, and how scikit-learn's validation
treats a DataFrame with other names or a bare array), the file's datasets read with
h5py, and, for ``fastvi info``, the summary as it was computed before issue 30, from an
estimator built by ``fastvi.load`` (``_summary_from_estimator`` below).
"""
import contextlib
import io
import json
import warnings

import h5py
import numpy as np
import pytest

import fastvi
from fastvi.cli import main
from fastvi.io.model import get_params

pd = pytest.importorskip("pandas")

COLUMNS = ["height", "weight", "age"]
KINDS = ["GaussianMixture", "BayesianGaussianMixture", "VAE", "PPCA"]


def _make(kind):
    if kind == "GaussianMixture":
        return fastvi.GaussianMixture(2, max_iter=5, random_state=0)
    if kind == "BayesianGaussianMixture":
        return fastvi.BayesianGaussianMixture(
            n_components=3, weight_concentration_prior_type="dirichlet_process", max_iter=5,
            random_state=0)
    if kind == "VAE":
        return fastvi.VAE(2, decoder_hidden=(5,), encoder_hidden=(4,), max_epochs=2,
                          random_state=0)
    return fastvi.PPCA(1, inference="per_example", max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3)) + np.repeat([[0.0], [5.0]], 60, axis=0)
    return pd.DataFrame(X, columns=COLUMNS)


@pytest.fixture(scope="module")
def fitted(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning of the short fits
        return {kind: _make(kind).fit(frame) for kind in KINDS}


def _output(model):
    """What a model returns per row: labels of a mixture, latent means of the others."""
    return model.predict if hasattr(model, "predict") else model.transform


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_fitted_on_a_dataframe_keeps_its_feature_names(tmp_path, frame, fitted,
                                                                kind):
    model = fitted[kind]
    assert list(model.feature_names_in_) == COLUMNS       # the premise: fit stored them
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert list(f["feature_names_in_"].asstr()[()]) == COLUMNS
    loaded = fastvi.load(tmp_path / "m.h5")
    # as scikit-learn holds them: an object array of str
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == COLUMNS
    np.testing.assert_array_equal(_output(loaded)(frame), _output(model)(frame))
    # scikit-learn's validation, restored with the attribute: other names are refused ...
    other = frame.rename(columns={"height": "size"})
    for estimator in (model, loaded):
        with pytest.raises(ValueError, match="feature names should match"):
            _output(estimator)(other)
    # ... and a bare array warns, as the fitted model does
    for estimator in (model, loaded):
        with pytest.warns(UserWarning, match="does not have valid feature names"):
            _output(estimator)(frame.to_numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_fitted_on_an_array_has_no_names_and_old_files_load(tmp_path, frame, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _make(kind).fit(frame.to_numpy())
    model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "feature_names_in_" not in f
    assert not hasattr(fastvi.load(tmp_path / "m.h5"), "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # no names, no feature-name warning
        _output(fastvi.load(tmp_path / "m.h5"))(frame.to_numpy())


@pytest.mark.parametrize("name", ["gmm_full.h5", "bgmm_dp_full.h5", "vae_amortized.h5",
                                  "ppca_per_example.h5"])
def test_legacy_files_without_names_load_without_them(name):
    import pathlib
    path = pathlib.Path(__file__).parent / "data" / "legacy" / "models" / name
    assert not hasattr(fastvi.load(path), "feature_names_in_")


@pytest.mark.parametrize("kind", ["GaussianMixture", "VAE"])
@pytest.mark.parametrize("edit, message", [
    (lambda f: f.__setitem__("feature_names_in_", ["a", "b"]),
     r"feature_names_in_ has shape \(2,\), expected \(3,\)"),
    (lambda f: f.__setitem__("feature_names_in_", np.arange(3.0)),
     "feature_names_in_ is not a one-dimensional dataset of strings"),
])
def test_corrupt_names_are_refused_naming_the_file(tmp_path, fitted, kind, edit, message):
    fitted[kind].save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f["feature_names_in_"]
        edit(f)
    with pytest.raises(ValueError, match=r"model file '.*m\.h5': " + message):
        fastvi.load(tmp_path / "m.h5")


def test_a_pipeline_is_refused_in_one_sentence_saying_what_to_do(tmp_path, frame, fitted):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    pipe = make_pipeline(StandardScaler(), fastvi.GaussianMixture(2, max_iter=5,
                                                                   random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(frame)
    with pytest.raises(TypeError) as caught:
        fastvi.io.save(pipe, tmp_path / "p.h5")
    message = str(caught.value)
    assert "\n" not in message and message.count(". ") == 0
    for words in ("Pipeline", "joblib", "pickle", "pipe[-1].save(path)"):
        assert words in message
    assert not (tmp_path / "p.h5").exists()
    # what it says works: the last step alone, and the whole Pipeline pickled
    import pickle
    pipe[-1].save(tmp_path / "step.h5")
    np.testing.assert_array_equal(fastvi.load(tmp_path / "step.h5").predict(
        pipe[:-1].transform(frame)), pipe.predict(frame))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(pipe)).predict(frame),
                                  pipe.predict(frame))


# ----------------------------------------------------------------------------- fastvi info

def _summary_from_estimator(path):
    """``fastvi info``'s lines as they were computed before issue 30: from the estimator
    ``fastvi.load`` builds (the attributes of the model, ``get_params`` of it)."""
    model = fastvi.load(path)
    with h5py.File(path, "r") as f:
        version = f.attrs["format_version"]
        written_by = f.attrs.get("fastvi_version")
    if isinstance(model, (fastvi.GaussianMixture, fastvi.BayesianGaussianMixture)):
        params, arrays = get_params(model)
        status = "converged" if model.converged_ else "not converged"
        lines = [f"{path}: fastvi model (format_version {version}, written by fastvi "
                 f"{written_by})",
                 f"class        {type(model).__name__}",
                 f"params       {json.dumps(params, sort_keys=True)}",
                 f"n_features   {model.n_features_in_}",
                 f"K            {model.means_.shape[0]}",
                 f"iterations   {model.n_iter_} ({status})",
                 f"lower bound  {model.lower_bound_:.6f} per row",
                 "weights      " + " ".join(f"{w:.4f}" for w in model.weights_)]
        if arrays:
            lines.insert(3, f"param arrays {', '.join(sorted(arrays))}")
        return lines
    ppca = type(model).__name__ == "PPCA"
    widths = {name: "-".join(str(w) for w in getattr(model, f"{name}_hidden", ()) or ())
              or "linear" for name in ("encoder", "decoder")}
    inference = model.inference + ("" if model.encoder_ is not None else
                                   f" ({model.psi_.shape[0]} rows of psi)")
    history = model.elbo_history_
    return [f"{path}: fastvi amortized model (format fastvi-amortized, format_version "
            f"{version})",
            f"class        {type(model).__name__}",
            f"n_latent     {model.n_latent}",
            f"n_features   {model.n_features_in_}",
            f"inference    {inference}"
            + ("" if model.encoder_ is None else f", encoder {widths['encoder']}")
            + ("" if ppca else f", decoder {widths['decoder']}"),
            f"likelihood   {model.likelihood}, variance {np.exp(model.log_variance_):.6g}"
            if model.likelihood == "gaussian" else f"likelihood   {model.likelihood}",
            f"epochs       {len(history)}",
            f"final ELBO   {history[-1]:.6f} per row" if history else "final ELBO   -"]


def _info(path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["info", str(path)]) == 0
    return out.getvalue().splitlines()


@pytest.mark.parametrize("kind", KINDS + ["GaussianMixture-init", "VAE-bernoulli"])
def test_info_on_a_model_file_shows_what_the_estimator_showed(tmp_path, frame, kind):
    X = frame.to_numpy()
    if kind == "GaussianMixture-init":          # with an array parameter
        model = fastvi.GaussianMixture(2, means_init=X[:2], max_iter=3, random_state=0)
    elif kind == "VAE-bernoulli":               # no variance line; per-example psi
        X = (X > 0).astype(float)
        model = fastvi.VAE(1, likelihood="bernoulli", inference="per_example",
                           max_epochs=2, random_state=0)
    else:
        model = _make(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    model.save(tmp_path / "m.h5")
    info = _info(tmp_path / "m.h5")
    assert info == _summary_from_estimator(tmp_path / "m.h5")
    if getattr(model, "encoder_", True) is None:    # per-example psi: no encoder to show
        assert not any("encoder" in line for line in info), info


@pytest.mark.parametrize("kind, key, value, expected", [
    ("GaussianMixture", "means_", np.zeros((5, 3)), "means_ has shape (5, 3), expected (2, 3)"),
    ("VAE", "decoder/W1", np.zeros((5, 4)), "decoder/W1 has shape (5, 4), expected (5, 3)"),
    ("VAE", "encoder/b0", np.full(4, np.nan), "encoder/b0 contains NaN or infinity"),
    ("PPCA", "psi", np.zeros((120, 3)), "psi has shape (120, 3), expected (120, 2)"),
])
def test_info_on_a_corrupt_model_file_names_it(tmp_path, fitted, capsys, kind, key, value,
                                               expected):
    """``fastvi info`` checks what it reads as loading does, with loading's message."""
    fitted[kind].save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f[key]
        f[key] = value
    with pytest.raises(ValueError) as loading:
        fastvi.load(tmp_path / "m.h5")
    assert main(["info", str(tmp_path / "m.h5")]) != 0
    assert capsys.readouterr().err.strip() == f"fastvi: error: {loading.value}"
    assert expected in str(loading.value)


@pytest.mark.parametrize("kind, name", [
    ("GaussianMixture", "MixtureEncoder"),      # a class checkpoints hold, no model file's
    ("GaussianMixture", "VAE"),                 # the other format's
    ("VAE", "GaussianMixture"),
    ("VAE", "os.system"),
])
def test_a_class_the_format_does_not_list_is_refused(tmp_path, fitted, kind, name):
    """The registry is an allow-list per format: a ``class`` attribute names a class of
    that format, or the file is refused (by ``load`` and by ``fastvi info``) before any
    constructor runs."""
    fitted[kind].save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "a") as f:
        f.attrs["class"] = name
    with pytest.raises(ValueError, match=f"holds an unknown model class '{name}'"):
        fastvi.load(tmp_path / "m.h5")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["info", str(tmp_path / "m.h5")]) != 0
    assert f"holds an unknown model class '{name}'" in err.getvalue()
