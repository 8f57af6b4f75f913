"""The missing-value reference of ``tests/naive.py`` (issue 29), checked against what it
must equal by other routes: the chain rule p(x) = p(x_o) p(x_m | x_o), the precision form
of the conditional Gaussian, per-coordinate densities for diagonal covariances, sampling,
and the complete-data reference when nothing is missing.  Rows with 0, 1, D - 1 and D
missing entries.  fastvi's own ``missing="marginalize"`` is to be tested against it."""
import numpy as np
import pytest
from scipy import stats

import naive

D, K = 5, 3


def spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + d * np.eye(d)


@pytest.fixture
def model():
    rng = np.random.default_rng(29)
    means = rng.normal(scale=3.0, size=(K, D))
    covariances = np.array([spd(rng, D) for _ in range(K)])
    X = rng.standard_normal((8, D)) * 2.0
    holes = X.copy()
    holes[1, 2] = np.nan                           # 1 missing
    holes[2, :D - 1] = np.nan                      # D - 1 missing
    holes[3, :] = np.nan                           # all missing
    holes[4, [0, 3]] = np.nan
    return means, covariances, X, holes            # row 0 and 5..7 complete


def test_nothing_missing_is_the_complete_reference(model):
    means, covariances, X, _ = model
    for kind, cov in (("full", covariances),
                      ("diag", np.array([np.diag(c) for c in covariances]))):
        np.testing.assert_allclose(naive.log_gaussian_observed(X, means, cov, kind),
                                   naive.log_gaussian(X, means, cov, kind), rtol=1e-12)
        resp = np.full((X.shape[0], K), 1.0 / K)
        got = naive.missing_sufficient_stats(X, resp, means, means, cov, kind)
        want = naive.sufficient_stats(X, resp, means, kind)
        for key in ("N", "s1", "s2"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-12)
    assert not naive.conditional_entropy(X, covariances, "full", K).any()


def test_the_chain_rule_joins_marginal_and_conditional(model):
    # log N(x; mu, S) = log N(x_o; mu_o, S_oo) + log N(x_m; E[x_m|x_o], Cov[x_m|x_o])
    means, covariances, X, holes = model
    marginal = naive.log_gaussian_observed(holes, means, covariances, "full")
    joint = naive.log_gaussian(X, means, covariances, "full")
    for n in range(X.shape[0]):
        m = np.flatnonzero(np.isnan(holes[n]))
        for k in range(K):
            filled, cov = naive.conditional_gaussian(holes[n], means[k], covariances[k])
            rest = (stats.multivariate_normal.logpdf(X[n, m], filled[m], cov[np.ix_(m, m)])
                    if m.size else 0.0)
            assert marginal[n, k] + rest == pytest.approx(joint[n, k], rel=1e-10)
    assert not marginal[3].any()                   # a row with nothing seen says nothing


def test_the_conditional_is_the_precision_forms(model):
    # Cov[x_m | x_o] = (L_mm)^-1 and E[x_m | x_o] = mu_m - L_mm^-1 L_mo (x_o - mu_o),
    # L the precision: the Schur complement by the other route
    means, covariances, _, holes = model
    for n in (1, 2, 4):
        m, o = np.flatnonzero(np.isnan(holes[n])), np.flatnonzero(~np.isnan(holes[n]))
        for k in range(K):
            precision = np.linalg.inv(covariances[k])
            block = np.linalg.inv(precision[np.ix_(m, m)])
            mean = means[k, m] - block @ precision[np.ix_(m, o)] @ (holes[n, o] - means[k, o])
            filled, cov = naive.conditional_gaussian(holes[n], means[k], covariances[k])
            np.testing.assert_allclose(cov[np.ix_(m, m)], block, rtol=1e-10)
            np.testing.assert_allclose(filled[m], mean, rtol=1e-10)
            np.testing.assert_array_equal(filled[o], holes[n, o])


def test_diagonal_components_drop_the_missing_coordinates(model):
    means, covariances, _, holes = model
    variances = np.array([np.diag(c) for c in covariances])
    got = naive.log_gaussian_observed(holes, means, variances, "diag")
    seen = ~np.isnan(holes)
    for k in range(K):
        per_entry = stats.norm.logpdf(holes, means[k], np.sqrt(variances[k]))
        np.testing.assert_allclose(got[:, k], np.where(seen, per_entry, 0.0).sum(axis=1),
                                   rtol=1e-12)
    entropy = naive.conditional_entropy(holes, variances, "diag", K)
    for k in range(K):
        half_log = 0.5 * np.log(2 * np.pi * np.e * variances[k])
        np.testing.assert_allclose(entropy[:, k], np.where(seen, 0.0, half_log).sum(axis=1),
                                   rtol=1e-12)


def test_expected_statistics_are_the_average_over_drawn_completions(model):
    # s1 and s2 of a row are E[x - ref] and E[(x - ref)(x - ref)^T] under the conditional:
    # the mean over many completions drawn from it
    means, covariances, _, holes = model
    rng = np.random.default_rng(0)
    ref = means + 1.0
    for n in (1, 2, 3):
        resp = np.zeros((1, K))
        resp[0, 1] = 1.0
        got = naive.missing_sufficient_stats(holes[n:n + 1], resp, ref, means, covariances,
                                             "full")
        filled, cov = naive.conditional_gaussian(holes[n], means[1], covariances[1])
        m = np.flatnonzero(np.isnan(holes[n]))
        draws = np.tile(filled, (200_000, 1))
        draws[:, m] = rng.multivariate_normal(filled[m], cov[np.ix_(m, m)], 200_000)
        diff = draws - ref[1]
        np.testing.assert_allclose(got["s1"][1], diff.mean(axis=0), atol=0.03)
        np.testing.assert_allclose(got["s2"][1], diff.T @ diff / len(diff), rtol=0.02,
                                   atol=0.1)
        assert got["N"][1] == 1.0 and not got["N"][[0, 2]].any()
