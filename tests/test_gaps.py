"""The VAE's gap report (fastvi.amortized.gaps): against the per-draw computation it
replaced (tests/naive-style, on the model's own one-draw methods), against PPCA's closed
forms for a linear decoder, in float32 against float64, and cut into parts."""
import numpy as np
import pytest

import fastvi
from fastvi.amortized import gaps, ppca
from fastvi.amortized.training import report as make_report
from fastvi.data.checks import check_random_state
from test_ppca import ppca_data


@pytest.fixture(scope="module")
def rows():
    X, *_ = ppca_data(3000, n_features=5, n_latent=2, seed=4)
    return X


@pytest.fixture(scope="module")
def linear_vae(rows):
    """A VAE whose decoder is linear: PPCA's model, so its gaps are closed form.  Its
    psi* steps are 0.05 (refine_learning_rate): with the default 0.01, 200 steps from
    this encoder's psi end 0.07-0.12 nats below the best diagonal q (the optimiser, not
    the estimates, falls short)."""
    return fastvi.VAE(2, max_epochs=5, learning_rate=1e-2, refine_learning_rate=0.05,
                      random_state=0).fit(rows[:2500])


@pytest.fixture(scope="module")
def mlp_vae(rows):
    return fastvi.VAE(2, decoder_hidden=(16,), encoder_hidden=(8,), max_epochs=3,
                      learning_rate=1e-2, random_state=0).fit(rows[:2500])


def per_draw_report(model, X, n_importance, optimise_steps, n_samples, random_state):
    """The report as it was computed before the draws were stacked: one (B, d) draw and
    one decoder call (forward and full backward) at a time, through the model's own
    one-draw methods (``_refine``, ``_elbo``, ``_iw_bound``)."""
    fresh = model._draws(check_random_state(random_state))
    X = np.ascontiguousarray(X, dtype=model.dtype)
    psi = model._psi(X, fresh)
    best_psi = model._refine(X, psi.copy(), fresh, optimise_steps, draws=4, decay=0.6)
    noise = [fresh(X.shape[0]) for _ in range(n_samples)]
    better = model._elbo(X, best_psi, noise) >= model._elbo(X, psi, noise)
    best_psi = np.where(better[:, None], best_psi, psi)
    noise = [fresh(X.shape[0]) for _ in range(n_samples)]
    given, best = model._elbo(X, psi, noise), model._elbo(X, best_psi, noise)
    log_px = model._iw_bound(X, best_psi, fresh, n_importance)
    return make_report(log_px.mean(), best.mean(), given.mean())


@pytest.mark.parametrize("which", ["linear_vae", "mlp_vae"])
def test_stacked_draws_give_the_per_draw_report(request, which, rows):
    """The same draws in the same order: the stacked report is the per-draw one to
    rounding (precision='model': float64 throughout)."""
    model = request.getfixturevalue(which)
    X = rows[2500:2800]
    kwargs = dict(n_importance=50, optimise_steps=20, n_samples=16, random_state=3)
    expected = per_draw_report(model, X, **kwargs)
    got = model.gap_report(X, precision="model", **kwargs)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_float32_evaluation_agrees_with_float64(mlp_vae, rows):
    """'auto' runs the decoder in float32 on these rows: the same draws, so the two
    reports differ by rounding alone, far below the Monte Carlo noise."""
    X = rows[2500:2800]
    kwargs = dict(n_importance=100, optimise_steps=30, n_samples=16, random_state=0)
    assert gaps.evaluation_dtype(mlp_vae, X, "auto") == np.float32
    f32 = mlp_vae.gap_report(X, **kwargs)
    f64 = mlp_vae.gap_report(X, precision="model", **kwargs)
    for key in f64:
        assert f32[key] == pytest.approx(f64[key], abs=1e-4), key


def test_auto_keeps_float64_for_rows_far_out_against_the_noise(mlp_vae, rows):
    sigma = np.exp(0.5 * mlp_vae.log_variance_)
    far = rows[:10] + 2 * gaps.FLOAT32_RANGE * sigma
    assert gaps.evaluation_dtype(mlp_vae, far, "auto") == np.float64
    assert gaps.evaluation_dtype(mlp_vae, far, "float32") == np.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        mlp_vae.gap_report(rows[:10], precision="half")


def test_linear_decoder_report_matches_the_closed_forms(linear_vae, rows):
    """A linear Gaussian decoder is PPCA: log p(x), the best diagonal q's ELBO and the
    encoder's ELBO are closed form (Tipping & Bishop 1999), and the Monte Carlo report
    must find them (1000 importance draws from a q near the posterior; psi* from 200
    steps; ELBOs of 64 draws)."""
    model = linear_vae
    X = rows[2500:]
    W, b = model.decoder_.params[0].T, model.decoder_.params[1]
    sigma2 = float(np.exp(model.log_variance_))
    psi = model.encoder_.forward(X)
    exact = ppca.gaps(X, W, b, sigma2, psi[:, :2], psi[:, 2:])
    got = model.gap_report(X, n_importance=1000, optimise_steps=200)
    assert got["log_px"] == pytest.approx(exact["log_px"].mean(), abs=0.01)
    assert got["elbo_inference"] == pytest.approx(exact["elbo_given"].mean(), abs=0.02)
    assert got["elbo_best"] == pytest.approx(exact["elbo_best"].mean(), abs=0.02)
    assert got["elbo_best"] <= exact["elbo_best"].mean() + 0.005  # none beats the best q
    gap = exact["elbo_best"].mean() - exact["elbo_given"].mean()
    assert got["amortization_gap"] == pytest.approx(gap, abs=0.02)


def test_parts_and_threads_do_not_change_the_report(mlp_vae, rows, monkeypatch):
    """A block cut into parts, one a thread, gets each row the same draws."""
    X = rows[:2 * gaps.PART_ROWS]
    kwargs = dict(n_importance=20, optimise_steps=5, n_samples=8, random_state=1)
    monkeypatch.setattr(gaps, "n_threads", lambda: 1)
    one = mlp_vae.gap_report(X, **kwargs)
    monkeypatch.setattr(gaps, "n_threads", lambda: 2)
    two = mlp_vae.gap_report(X, **kwargs)
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-9), key


def test_progress_adds_up_to_one_block(mlp_vae, rows):
    steps = []
    mlp_vae.gap_report(rows[:100], n_importance=30, optimise_steps=7, n_samples=8,
                       callback=steps.append)
    assert all(step > 0 for step in steps)
    assert sum(steps) == pytest.approx(1.0)


def test_report_is_deterministic_for_a_seed(mlp_vae, rows):
    kwargs = dict(n_importance=20, optimise_steps=5, n_samples=8)
    assert (mlp_vae.gap_report(rows[:50], random_state=7, **kwargs)
            == mlp_vae.gap_report(rows[:50], random_state=7, **kwargs))
