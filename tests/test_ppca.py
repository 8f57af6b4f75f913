"""PPCA closed forms against independent computations (SciPy densities, direct KL
minimisation, Tipping & Bishop's stationarity conditions)."""
import numpy as np
import pytest
from scipy import optimize, stats

from fastvi.amortized import ppca


def ppca_data(n_rows=4000, n_features=5, n_latent=2, sigma2=0.3, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_features, n_latent))
    b = rng.standard_normal(n_features)
    Z = rng.standard_normal((n_rows, n_latent))
    X = Z @ W.T + b + np.sqrt(sigma2) * rng.standard_normal((n_rows, n_features))
    return X, W, b, sigma2


def test_log_marginal_is_the_gaussian_density():
    X, W, b, sigma2 = ppca_data(50)
    expected = stats.multivariate_normal(b, W @ W.T + sigma2 * np.eye(5)).logpdf(X)
    np.testing.assert_allclose(ppca.log_marginal(X, W, b, sigma2), expected, rtol=1e-12)


def test_exact_posterior_q_makes_the_elbo_equal_log_px():
    """With q the full posterior the ELBO is log p(x); with a diagonal q it is below, and
    the best diagonal q's ELBO is the maximum over diagonal Gaussians."""
    X, W, b, sigma2 = ppca_data(30)
    means, cov = ppca.posterior(X, W, b, sigma2)
    log_px = ppca.log_marginal(X, W, b, sigma2)
    # ELBO of a full-covariance q at the posterior, by the same closed form extended:
    # E||x - b - W z||^2 = ||x - b - W m||^2 + tr(W S W^T); KL to N(0, I).
    resid = X - b - means @ W.T
    exp_ll = (-0.5 * 5 * np.log(2 * np.pi * sigma2)
              - (np.sum(resid ** 2, axis=1) + np.trace(W @ cov @ W.T)) / (2 * sigma2))
    kl = 0.5 * (np.sum(means ** 2, axis=1) + np.trace(cov) - 2 - np.linalg.slogdet(cov)[1])
    np.testing.assert_allclose(exp_ll - kl, log_px, rtol=1e-10)

    best_means, best_log_sigma = ppca.best_diagonal_q(X, W, b, sigma2)
    best = ppca.elbo(X, W, b, sigma2, best_means, best_log_sigma)
    assert np.all(best < log_px)

    def negative_elbo(flat):
        return -ppca.elbo(X[:1], W, b, sigma2, flat[None, :2], flat[None, 2:])[0]
    found = optimize.minimize(negative_elbo, np.zeros(4), method="BFGS", tol=1e-12)
    assert -found.fun == pytest.approx(best[0], rel=1e-8)
    np.testing.assert_allclose(found.x[:2], best_means[0], atol=1e-5)
    np.testing.assert_allclose(found.x[2:], best_log_sigma[0], atol=1e-5)


def test_approximation_gap_is_the_kl_of_the_best_diagonal_q():
    X, W, b, sigma2 = ppca_data(20)
    result = ppca.gaps(X, W, b, sigma2, *ppca.best_diagonal_q(X, W, b, sigma2))
    means, cov = ppca.posterior(X, W, b, sigma2)
    _, log_sigma = ppca.best_diagonal_q(X, W, b, sigma2)
    q_var = np.exp(2 * log_sigma[0])
    precision = np.linalg.inv(cov)
    # KL(N(m, diag v) || N(m, S)) = 1/2 (tr(S^-1 diag v) - d + log|S| - sum log v)
    kl = 0.5 * (np.sum(np.diag(precision) * q_var) - 2 + np.linalg.slogdet(cov)[1]
                - np.sum(np.log(q_var)))
    np.testing.assert_allclose(result["log_px"] - result["elbo_best"], kl, rtol=1e-9)
    np.testing.assert_allclose(result["elbo_best"], result["elbo_given"], rtol=1e-14)


def test_maximum_likelihood_is_stationary_and_beats_the_truth():
    X, W_true, b_true, sigma2_true = ppca_data()
    W, b, sigma2 = ppca.maximum_likelihood(X, 2)
    assert ppca.log_marginal(X, W, b, sigma2).sum() >= ppca.log_marginal(
        X, W_true, b_true, sigma2_true).sum()
    # Tipping & Bishop eq. 7: the ML W satisfies S C^-1 W = W
    S = np.cov(X, rowvar=False, bias=True)
    C = W @ W.T + sigma2 * np.eye(5)
    np.testing.assert_allclose(S @ np.linalg.solve(C, W), W, atol=1e-10)
    assert sigma2 == pytest.approx(sigma2_true, rel=0.1)
    np.testing.assert_allclose(W @ W.T, W_true @ W_true.T, atol=0.25)
    with pytest.raises(ValueError, match="n_latent must be in"):
        ppca.maximum_likelihood(X, 5)


@pytest.fixture(scope="module")
def readme_rows():
    """The README's PPCA example data: 20,000 rows of 4 features from 8 clusters (not a
    PPCA sample: the model is misspecified, as real data are)."""
    from fastvi.datasets import make_mixture
    X, _, _ = make_mixture(20_000, n_features=4, n_components=8, random_state=0)
    return X


def independent_optimum(X, n_latent):
    """Tipping & Bishop's ML log p(x) per row, from the sample covariance's eigenvalues
    alone: at the optimum C = W W^T + sigma^2 I has the d leading eigenvalues of S and
    sigma^2 (their mean) in the others, so log p = -1/2 (D log 2 pi + log|C| + tr(C^-1 S))
    (T&B eq. 4 and 7-8), and tr(C^-1 S) = D."""
    S = np.cov(np.asarray(X, dtype=np.float64), rowvar=False, bias=True)
    eigenvalues = np.sort(np.linalg.eigvalsh(S))[::-1]
    n_features = S.shape[0]
    sigma2 = eigenvalues[n_latent:].mean()
    log_det = np.log(eigenvalues[:n_latent]).sum() + (n_features - n_latent) * np.log(sigma2)
    return -0.5 * (n_features * np.log(2 * np.pi) + log_det + n_features)


@pytest.mark.parametrize("seed", [*range(10), None])
def test_default_fit_is_the_maximum_likelihood_solution(readme_rows, seed):
    """The README's call, PPCA(n_latent=2).fit(X), on every seed: log p(x) at the
    closed-form optimum and no amortization gap (a linear encoder contains the exact
    posterior).  From a random start the same call ended 0.1-2.9 nats short, with gaps of
    0.01-133 nats."""
    import fastvi
    model = fastvi.PPCA(n_latent=2, random_state=seed).fit(readme_rows)
    best = independent_optimum(readme_rows, 2)
    assert model.log_likelihood(readme_rows).mean() == pytest.approx(best, abs=0.05)
    assert model.log_likelihood(readme_rows).mean() <= best + 1e-9
    report = model.gap_report(readme_rows)
    assert 0.0 <= report["amortization_gap"] < 0.05


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3])
def test_default_fit_does_not_depend_on_the_data_scale(readme_rows, scale):
    """Adam's steps are scaled to the rows' spread: rows in other units end as close to
    the optimum (log p shifts by -D log scale)."""
    import fastvi
    X = readme_rows.astype(np.float64) * scale
    model = fastvi.PPCA(n_latent=2, random_state=0).fit(X)
    assert model.log_likelihood(X).mean() == pytest.approx(independent_optimum(X, 2), abs=0.05)
    assert model.gap_report(X)["amortization_gap"] < 0.05


def test_closed_form_start_from_a_streamed_source(tmp_path, readme_rows):
    """The moments pass reads an HDF5 dataset chunk by chunk; with no epochs the model is
    the closed-form solution, whose log p(x) is the independent optimum."""
    import h5py

    import fastvi
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=readme_rows, chunks=(1000, 4))
    with h5py.File(path, "r") as f:
        model = fastvi.PPCA(2, max_epochs=0, chunk_size=3000).fit(f["X"])
    assert model.log_likelihood(readme_rows).mean() == pytest.approx(
        independent_optimum(readme_rows, 2), abs=1e-9)
    assert model.gap_report(readme_rows)["amortization_gap"] == pytest.approx(0.0, abs=1e-9)
    per_example = fastvi.PPCA(2, inference="per_example", max_epochs=0).fit(readme_rows)
    means, _ = ppca.posterior(readme_rows, *per_example._model())
    np.testing.assert_allclose(per_example.psi_[:, :2], means, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("inference, steps", [("amortized", ["moments"]),
                                               ("per_example", ["moments", "psi"])])
def test_the_closed_form_start_reports_its_passes(readme_rows, inference, steps):
    """Before the first epoch's records: one ``init`` record per chunk of each pass of
    the start (the moments; then per-example psi), the pass's rows adding up to N."""
    import fastvi
    records = []
    fastvi.PPCA(2, inference=inference, max_epochs=1, chunk_size=1500).fit(
        readme_rows, callback=records.append)
    first_epoch = next(i for i, r in enumerate(records) if r["event"] != "init")
    start = records[:first_epoch]
    assert all(r["event"] == "init" for r in start)
    assert not any(r["event"] == "init" for r in records[first_epoch:])
    assert [r["step"] for r in start] == [s for s in steps for _ in range(
        -(-readme_rows.shape[0] // 1500))]
    for step in steps:
        assert sum(r["rows"] for r in start if r["step"] == step) == readme_rows.shape[0]
    records.clear()
    fastvi.PPCA(2, init="random", max_epochs=1).fit(readme_rows, callback=records.append)
    assert not any(r["event"] == "init" for r in records)


def test_a_model_from_before_init_existed_reads_as_closed_form(readme_rows):
    """A PPCA pickled (or checkpointed) before ``init`` was a parameter has no such
    attribute: it reads as the default, so get_params, clone and the resume checks
    work on it; its optimisers, without ``scales``, step as before (all 1)."""
    import pickle

    import fastvi
    from sklearn.base import clone
    model = fastvi.PPCA(2, max_epochs=1, random_state=0).fit(readme_rows[:500])
    del model.__dict__["init"]
    model._decoder_opt.__dict__.pop("scales")
    old = pickle.loads(pickle.dumps(model))
    assert old.get_params()["init"] == "closed_form" and clone(old).init == "closed_form"
    unit = pickle.loads(pickle.dumps(old))
    unit._decoder_opt.scales = [1.0, 1.0]
    for each in (old, unit):
        each._decoder_opt.step([np.ones_like(p) for p in each.decoder_.params])
    np.testing.assert_array_equal(old.components_, unit.components_)


def test_the_closed_form_start_has_one_sign_whatever_the_eigensolver_gives():
    """T&B's W from a known eigen-decomposition, each column with its largest entry
    positive (scikit-learn's svd_flip convention), whichever signs LAPACK returns."""
    from fastvi.amortized.ppca import from_moments
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    values = np.array([9.0, 4.0, 1.0, 0.5, 0.25])
    W, _, sigma2 = from_moments(np.zeros(5), basis @ np.diag(values) @ basis.T, 2)
    assert sigma2 == pytest.approx(values[2:].mean())
    for k, column in enumerate(W.T):
        expected = basis[:, k] * np.sqrt(values[k] - sigma2)
        expected *= np.sign(expected[np.argmax(np.abs(expected))])
        np.testing.assert_allclose(column, expected, atol=1e-12)
