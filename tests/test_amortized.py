"""Amortized, per-example and semi-amortized VI on PPCA (where every gap is closed form)
and on small VAEs."""
import h5py
import numpy as np
import pytest
from scipy import stats

import fastvi
from fastvi.amortized import ppca
from test_ppca import ppca_data


@pytest.fixture(scope="module")
def ppca_split():
    X, *_ = ppca_data(6000, n_features=5, n_latent=2, seed=0)
    return X[:5000], X[5000:]


@pytest.fixture(scope="module")
def amortized_ppca(ppca_split):
    train, _ = ppca_split
    # from a random start: these tests are of the optimiser (the default starts at the
    # closed-form solution: test_ppca.test_default_fit_is_the_maximum_likelihood_solution)
    return fastvi.PPCA(2, max_epochs=60, learning_rate=1e-2, batch_size=100,
                       random_state=0, init="random").fit(train)


def test_amortized_ppca_reaches_the_maximum_likelihood_solution(amortized_ppca, ppca_split):
    train, test = ppca_split
    W, b, sigma2 = ppca.maximum_likelihood(train, 2)
    best = ppca.log_marginal(test, W, b, sigma2).mean()
    fitted = amortized_ppca.log_likelihood(test).mean()
    assert fitted == pytest.approx(best, abs=0.03)
    model = amortized_ppca
    assert model.noise_variance_ == pytest.approx(sigma2, rel=0.15)
    # the same principal subspace: cosines of the principal angles near 1
    assert model.components_.shape == (2, 5)          # (n_latent, n_features), as PCA's
    cosines = np.linalg.svd(np.linalg.qr(model.components_.T)[0].T @ np.linalg.qr(W)[0],
                            compute_uv=False)
    assert cosines.min() > 0.99


def test_linear_encoder_closes_the_amortization_gap(amortized_ppca, ppca_split):
    """A linear encoder can output the best diagonal q exactly (its mean is linear in x,
    its variance constant), so the gap is only the optimiser's noise."""
    _, test = ppca_split
    report = amortized_ppca.gap_report(test)
    assert 0.0 <= report["amortization_gap"] < 0.03
    assert report["approximation_gap"] >= 0.0
    assert report["log_px"] == pytest.approx(report["elbo_inference"]
                                             + report["approximation_gap"]
                                             + report["amortization_gap"], rel=1e-12)


def test_reported_values_match_independent_computations(amortized_ppca, ppca_split):
    _, test = ppca_split
    model = amortized_ppca
    report = model.gap_report(test)
    density = stats.multivariate_normal(
        model.mean_, model.components_.T @ model.components_
        + model.noise_variance_ * np.eye(5))
    assert report["log_px"] == pytest.approx(density.logpdf(test).mean(), rel=1e-10)
    # the closed-form ELBO of the encoder's q against the sampled one
    sampled = model.score_samples(test, n_samples=400).mean()
    assert report["elbo_inference"] == pytest.approx(sampled, abs=0.01)
    # the importance-weighted bound is below log p(x) and tightens with more samples
    few = model.importance_weighted_bound(test[:200], n_samples=2).mean()
    many = model.importance_weighted_bound(test[:200], n_samples=500).mean()
    exact = density.logpdf(test[:200]).mean()
    assert few < many <= exact + 5e-3     # a bound in expectation; 500 draws are close
    assert many == pytest.approx(exact, abs=0.01)


def test_per_example_and_semi_amortized_inference_train(ppca_split):
    """From a random start (init='random'; the default starts at the solution)."""
    train, test = ppca_split
    per_example = fastvi.PPCA(2, inference="per_example", max_epochs=30, learning_rate=3e-2,
                              random_state=0, init="random").fit(train)
    assert per_example.encoder_ is None and per_example.psi_.shape == (5000, 4)
    assert per_example.elbo_history_[-1] > per_example.elbo_history_[0] + 0.5
    kwargs = dict(max_epochs=20, learning_rate=1e-2, random_state=0, init="random")
    semi = fastvi.PPCA(2, inference="semi_amortized", refine_steps=5, **kwargs).fit(train)
    amortized = fastvi.PPCA(2, **kwargs).fit(train)
    # the decoder learns from refined q's: a better model in the same number of epochs
    assert semi.log_likelihood(test).mean() > amortized.log_likelihood(test).mean() + 0.1
    assert semi.transform(test).shape == (1000, 2)


def test_vae_with_mlps_improves_its_elbo_and_gaps_are_consistent():
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 3000)
    X = np.c_[np.cos(angle), np.sin(angle), np.cos(2 * angle)] + 0.05 * rng.standard_normal(
        (3000, 3))
    model = fastvi.VAE(1, decoder_hidden=(16,), encoder_hidden=(16,), max_epochs=15,
                       learning_rate=5e-3, random_state=0).fit(X)
    assert model.elbo_history_[-1] > model.elbo_history_[0]
    report = model.gap_report(X[:200], n_importance=200, optimise_steps=50)
    assert report["approximation_gap"] >= -0.05
    assert report["amortization_gap"] >= -0.01     # Monte Carlo estimates, 64 draws
    assert model.transform(X[:10]).shape == (10, 1)


def test_bernoulli_vae_on_binary_rows():
    rng = np.random.default_rng(1)
    prototypes = rng.uniform(size=(3, 12)) > 0.5
    X = (prototypes[rng.integers(0, 3, 2000)] ^ (rng.uniform(size=(2000, 12)) < 0.05))
    model = fastvi.VAE(2, likelihood="bernoulli", decoder_hidden=(16,), max_epochs=20,
                       learning_rate=1e-2, random_state=0).fit(X.astype(np.float64))
    assert model.elbo_history_[-1] > model.elbo_history_[0] + 2.0
    assert np.all(model.score_samples(X[:50].astype(np.float64)) < 0)


def test_fit_streams_hdf5_like_memory(tmp_path, ppca_split):
    train, _ = ppca_split
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=train, chunks=(1000, 5))
    kwargs = dict(max_epochs=3, learning_rate=1e-2, chunk_size=1000, random_state=0)
    memory = fastvi.PPCA(2, **kwargs).fit(train)
    with h5py.File(path, "r") as f:
        streamed = fastvi.PPCA(2, **kwargs).fit(f["X"])
    np.testing.assert_array_equal(memory.components_, streamed.components_)
    assert memory.elbo_history_ == streamed.elbo_history_


@pytest.mark.parametrize("kwargs,message", [
    (dict(inference="exact"), "inference must be one of"),
    (dict(likelihood="poisson"), "likelihood must be one of"),
    (dict(variance=-1.0), "variance must be 'learned' or a number > 0"),
    (dict(n_latent=0), "n_latent must be an integer >= 1"),
    (dict(activation="sigmoid", decoder_hidden=(3,)), "activation must be one of"),
])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fastvi.VAE(**kwargs).fit(np.zeros((10, 3)))


def test_bernoulli_data_outside_the_unit_interval_names_the_row():
    X = np.random.default_rng(0).uniform(size=(50, 3))
    X[17, 1] = 1.5
    with pytest.raises(ValueError, match="row 17 has values outside \\[0, 1\\]"):
        fastvi.VAE(likelihood="bernoulli", max_epochs=1).fit(X)


def test_unfitted_model_says_so():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="not fitted"):
        fastvi.VAE().transform(np.zeros((2, 3)))


# ------------------------------------------------------------------ mixture E-step

def test_mixture_encoder_gap_is_the_exact_mean_kl():
    from scipy.special import rel_entr

    import naive
    from conftest import blobs
    X, _ = blobs(n_per=400, scale=1.6)
    gmm = fastvi.GaussianMixture(3, random_state=0).fit(X)
    encoder = fastvi.MixtureEncoder(gmm, hidden=(16,), max_epochs=30, learning_rate=1e-2,
                                    random_state=0).fit(X)
    assert encoder.elbo_history_[-1] > encoder.elbo_history_[0]
    report = encoder.gap_report(X)
    log_rho = naive.log_rho_em(X, gmm.weights_, gmm.means_, gmm.covariances_, "full")
    log_norm, resp = naive.responsibilities(log_rho)
    q = encoder.predict_proba(X)
    kl = np.sum(rel_entr(q, resp), axis=1)
    assert report["amortization_gap"] == pytest.approx(kl.mean(), rel=1e-8, abs=1e-12)
    assert report["approximation_gap"] == 0.0
    assert report["log_px"] == pytest.approx(gmm.score(X), rel=1e-12)
    assert 0.0 <= report["amortization_gap"] < 0.05


def test_mixture_encoder_gradient_matches_finite_differences():
    from conftest import blobs
    from test_dense import central_difference
    X, _ = blobs(n_per=20)
    gmm = fastvi.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    encoder = fastvi.MixtureEncoder(gmm, hidden=(4,), max_epochs=0, random_state=0).fit(X)
    logits = np.random.default_rng(0).standard_normal((5, 3))
    rows = X[:5]

    def elbo_of(a):
        log_q = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
        return float(np.sum(np.exp(log_q) * (encoder._log_rho(rows) - log_q)))

    encoder.network_.forward = lambda _: logits
    _, grad = encoder._elbo_and_grad(rows)
    np.testing.assert_allclose(grad, central_difference(lambda: elbo_of(logits), logits),
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ files and CLI

def test_saved_model_predicts_like_the_original(tmp_path, amortized_ppca, ppca_split):
    from fastvi.io.amortized import load_amortized, save_amortized
    _, test = ppca_split
    save_amortized(amortized_ppca, tmp_path / "m.h5")
    loaded = load_amortized(tmp_path / "m.h5")
    assert type(loaded) is fastvi.PPCA
    np.testing.assert_array_equal(loaded.transform(test), amortized_ppca.transform(test))
    assert loaded.gap_report(test) == amortized_ppca.gap_report(test)
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.h5: not a readable HDF5 file"):
        load_amortized(tmp_path / "junk.h5")


def test_cli_fit_then_gap(tmp_path, capsys, ppca_split):
    from fastvi.cli import main
    train, test = ppca_split
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    assert main(["amortized", "fit", str(tmp_path / "train.npy"), "--model", "ppca",
                 "--latent", "2", "--epochs", "60", "--batch-size", "100",
                 "--learning-rate", "1e-2",
                 "-o", str(tmp_path / "m.h5")]) == 0
    assert main(["amortized", "gap", str(tmp_path / "m.h5"), str(tmp_path / "test.npy")]) == 0
    out = capsys.readouterr().out
    gap = float(out.split("amortization_gap")[1].split()[0])
    assert 0.0 <= gap < 0.1
    assert main(["amortized", "fit", str(tmp_path / "train.npy"), "--encoder-hidden", "a,b",
                 "-o", str(tmp_path / "x.h5")]) == 2
    assert "layer widths must be comma-separated integers" in capsys.readouterr().err


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_whole_loss_gradients_match_finite_differences(likelihood):
    """d(-ELBO)/d psi through the decoder and the reparameterisation, and d/d log sigma^2,
    for a fixed draw of eps."""
    from test_dense import central_difference
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(6, 4))
    model = fastvi.VAE(2, decoder_hidden=(5,), likelihood=likelihood, max_epochs=0,
                       random_state=0).fit(X)
    model.log_variance_ = 0.4
    psi = 0.5 * rng.standard_normal((6, 4))
    eps = rng.standard_normal((6, 2))

    def loss():
        return float(model._loss(X, psi, eps)[0].sum())

    _, grad_psi, grad_log_variance = model._loss(X, psi, eps)
    np.testing.assert_allclose(grad_psi, central_difference(loss, psi), rtol=1e-6, atol=1e-8)
    holder = np.array([model.log_variance_])

    def loss_of_variance():
        model.log_variance_ = float(holder[0])
        return loss()
    expected = central_difference(loss_of_variance, holder)[0]
    assert grad_log_variance == pytest.approx(expected if likelihood == "gaussian" else 0.0,
                                              rel=1e-6, abs=1e-8)


def test_resumed_training_equals_uninterrupted_training(tmp_path, ppca_split):
    train, _ = ppca_split
    kwargs = dict(max_epochs=6, learning_rate=1e-2, random_state=0)
    whole = fastvi.VAE(2, decoder_hidden=(4,), **kwargs).fit(train)

    class StopAfter:
        def __call__(self, state, force=False):
            fastvi.Checkpointer(tmp_path / "vae.ckpt").write(state)
            if state.epochs == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fastvi.VAE(2, decoder_hidden=(4,), **kwargs).fit(train, checkpoint=StopAfter())
    state, _ = fastvi.load_checkpoint(tmp_path / "vae.ckpt")
    resumed = fastvi.VAE(2, decoder_hidden=(4,), **kwargs).fit(train, resume=state)
    for ours, theirs in zip(resumed.decoder_.params, whole.decoder_.params):
        np.testing.assert_array_equal(ours, theirs)
    assert resumed.elbo_history_ == whole.elbo_history_


@pytest.mark.parametrize("cls", [fastvi.VAE, fastvi.PPCA])
def test_save_then_load_gives_the_same_model(cls, tmp_path, ppca_split):
    train, test = ppca_split
    model = cls(2, max_epochs=2, random_state=0).fit(train)
    model.save(tmp_path / "m.h5")
    loaded = fastvi.load(tmp_path / "m.h5")
    assert type(loaded) is cls
    np.testing.assert_array_equal(loaded.transform(test), model.transform(test))
    np.testing.assert_array_equal(loaded.score_samples(test), model.score_samples(test))


def test_a_finished_fit_removes_its_checkpoint_unless_kept(tmp_path, ppca_split):
    train, _ = ppca_split
    path = tmp_path / "vae.ckpt"
    fastvi.VAE(2, max_epochs=2, random_state=0).fit(
        train, checkpoint=fastvi.Checkpointer(path, every_seconds=None))
    assert not path.exists()
    fastvi.VAE(2, max_epochs=2, random_state=0).fit(
        train, checkpoint=fastvi.Checkpointer(path, every_seconds=None, keep=True))
    state, _ = fastvi.load_checkpoint(path)
    assert state.epochs == 2


def test_cli_resume_finishes_an_interrupted_fit(tmp_path, capsys, ppca_split):
    from fastvi.io.amortized import load_amortized
    from fastvi.cli import main
    train, _ = ppca_split
    np.save(tmp_path / "train.npy", train)
    argv = ["amortized", "fit", str(tmp_path / "train.npy"), "--decoder-hidden", "4",
            "--epochs", "4", "--learning-rate", "1e-2"]
    assert main(argv + ["-o", str(tmp_path / "whole.h5")]) == 0
    # an interrupted run: the same model stopped after its second epoch's checkpoint
    out = tmp_path / "resumed.h5"
    checkpointer = fastvi.Checkpointer(str(out) + ".ckpt", every_seconds=None)

    def stop_after_two(state, force=False):
        checkpointer(state, force)
        if state.epochs == 2:
            raise KeyboardInterrupt

    interrupted = fastvi.VAE(2, decoder_hidden=(4,), max_epochs=4, learning_rate=1e-2,
                             random_state=0, verbose=1)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(train, checkpoint=stop_after_two)
    assert main(argv + ["-o", str(out), "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out
    whole, resumed = load_amortized(tmp_path / "whole.h5"), load_amortized(out)
    for ours, theirs in zip(resumed.decoder_.params, whole.decoder_.params):
        np.testing.assert_array_equal(ours, theirs)
    assert not (tmp_path / "resumed.h5.ckpt").exists()
