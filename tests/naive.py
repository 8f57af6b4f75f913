"""Plain NumPy/SciPy reference implementation of EM and variational Bayes (VB) EM.

Slow, simple textbook code with full (N, K) arrays, used by the tests as ground truth for
the fused kernels.  Equation numbers refer to Bishop, *Pattern Recognition and Machine
Learning* (2006), section 10.2 and appendix B.

Conventions (those of scikit-learn): ``X`` is (N, D); covariances are (K, D, D) for
``full``, (K, D) for ``diag``, (K,) for ``spherical`` and (D, D) for ``tied``.
``sample_weight`` is (N,) or None (all ones) and weights every statistic like a frequency:
an integer weight behaves like that many copies of the row.
"""
import numpy as np
from scipy import stats
from scipy.special import betaln, digamma, gammaln, logsumexp

EPS10 = 10 * np.finfo(np.float64).eps  # scikit-learn adds this to every N_k


def _sample_weight(X, sample_weight):
    """The weights w_n (N,); all ones for None."""
    return np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)


def _full_matrices(covariances, covariance_type, K, D):
    """Expand any covariance (or precision) layout into (K, D, D) matrices."""
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "tied":
        return np.array([c for _ in range(K)])
    if covariance_type == "diag":
        return np.array([np.diag(c[k]) for k in range(K)])
    if covariance_type == "spherical":
        return np.array([c[k] * np.eye(D) for k in range(K)])
    raise ValueError(covariance_type)


# --------------------------------------------------------------------------- EM

def log_gaussian(X, means, covariances, covariance_type):
    """(N, K) array of log N(x_n | mu_k, Sigma_k)."""
    N, D = X.shape
    K = means.shape[0]
    sigmas = _full_matrices(covariances, covariance_type, K, D)
    out = np.empty((N, K))
    for k in range(K):
        logpdf = stats.multivariate_normal.logpdf(X, mean=means[k], cov=sigmas[k])
        out[:, k] = np.reshape(logpdf, N)
    return out


def log_rho_em(X, weights, means, covariances, covariance_type):
    """(N, K) array of log pi_k + log N(x_n | mu_k, Sigma_k)."""
    return np.log(weights)[None, :] + log_gaussian(X, means, covariances, covariance_type)


def responsibilities(log_rho):
    """Return ``(log_norm, resp)``: log sum_k rho_nk (N,) and r_nk = rho_nk / sum_j rho_nj."""
    log_norm = logsumexp(log_rho, axis=1)
    return log_norm, np.exp(log_rho - log_norm[:, None])


def truncated_responsibilities(log_rho, n_active):
    """The truncated q of variational EM: each row on its ``n_active`` largest log rho.

    Returns ``(log_norm, resp)`` with log_norm the log-sum-exp over the support (the row's
    free energy, Forster & Lucke 2018 eq. 6) and resp zero off the support.  None (or
    n_active >= K) is the dense ``responsibilities``.
    """
    if n_active is None or n_active >= log_rho.shape[1]:
        return responsibilities(log_rho)
    support = np.argsort(-log_rho, axis=1, kind="stable")[:, :n_active]
    kept = np.take_along_axis(log_rho, support, axis=1)
    log_norm = logsumexp(kept, axis=1)
    resp = np.zeros_like(log_rho)
    np.put_along_axis(resp, support, np.exp(kept - log_norm[:, None]), axis=1)
    return log_norm, resp


def sufficient_stats(X, resp, ref, covariance_type, sample_weight=None):
    """Weighted statistics centred about ``ref`` (K, D).

    Returns a dict: "N" (K,) sum_n w_n r_nk; "s1" (K, D) sum_n w_n r_nk (x_n - ref_k);
    "s2" (K, D, D) sum_n w_n r_nk (x_n - ref_k)(x_n - ref_k)^T for full/tied, or its
    diagonal (K, D) for diag/spherical.  No epsilon is added to N here.
    """
    w = _sample_weight(X, sample_weight)
    D, K = X.shape[1], resp.shape[1]
    wr = w[:, None] * resp                                   # (N, K): w_n r_nk
    Nk = wr.sum(axis=0)
    s1 = np.zeros((K, D))
    s2 = np.zeros((K, D, D))
    for k in range(K):
        diff = X - ref[k]                                    # (N, D)
        s1[k] = wr[:, k] @ diff
        s2[k] = (wr[:, k][:, None] * diff).T @ diff
    if covariance_type in ("diag", "spherical"):
        s2 = np.array([np.diag(s2[k]) for k in range(K)])
    return {"N": Nk, "s1": s1, "s2": s2}


def _gaussian_moments(X, resp, covariance_type, reg_covar, sample_weight):
    """N_k (+10 eps), weighted means xbar_k and S_k = centred scatter / N_k + reg on the diagonal.

    S_k is (K, D, D) for full/tied and (K, D) (the diagonal) for diag/spherical.
    """
    K, D = resp.shape[1], X.shape[1]
    raw = sufficient_stats(X, resp, np.zeros((K, D)), covariance_type, sample_weight)
    Nk = raw["N"] + EPS10                                    # as scikit-learn
    xbar = raw["s1"] / Nk[:, None]                           # Bishop 10.52
    centred = sufficient_stats(X, resp, xbar, covariance_type, sample_weight)
    if covariance_type in ("full", "tied"):
        S = centred["s2"] / Nk[:, None, None] + reg_covar * np.eye(D)[None]   # Bishop 10.53
    else:
        S = centred["s2"] / Nk[:, None] + reg_covar
    return Nk, xbar, S


def em_m_step(X, resp, covariance_type, reg_covar, sample_weight=None):
    """Maximum-likelihood M-step, as scikit-learn's GaussianMixture.

    Returns ``(weights, means, covariances)``.  weights = N_k / sum_j N_j (N_k includes the
    10 eps of scikit-learn, so sum_j N_j = sum_n w_n up to 10 K eps).
    """
    Nk, means, S = _gaussian_moments(X, resp, covariance_type, 0.0, sample_weight)
    N_total = Nk.sum()
    weights = Nk / N_total
    D = X.shape[1]
    if covariance_type == "full":
        cov = S + reg_covar * np.eye(D)[None]
    elif covariance_type == "tied":
        scatter = sum(Nk[k] * S[k] for k in range(len(Nk)))  # sum_k sum_n w r (x-mu)(x-mu)^T
        cov = scatter / N_total + reg_covar * np.eye(D)
    elif covariance_type == "diag":
        cov = S + reg_covar
    elif covariance_type == "spherical":
        cov = (S + reg_covar).mean(axis=1)
    else:
        raise ValueError(covariance_type)
    return weights, means, cov


def em_fit(X, weights, means, covariances, covariance_type, reg_covar, n_iter,
           sample_weight=None, n_active=None):
    """Run ``n_iter`` EM iterations (truncated variational EM with ``n_active``).

    Returns a list of dicts {"weights", "means", "covariances", "loglik"}: entry t holds the
    parameters after the M-step of iteration t and the weighted mean log-likelihood
    sum_n w_n log p(x_n) / sum_n w_n of the parameters that entered iteration t.
    """
    w = _sample_weight(X, sample_weight)
    history = []
    for _ in range(n_iter):
        log_rho = log_rho_em(X, weights, means, covariances, covariance_type)
        log_norm, resp = truncated_responsibilities(log_rho, n_active)
        loglik = np.sum(w * log_norm) / np.sum(w)
        weights, means, covariances = em_m_step(X, resp, covariance_type, reg_covar,
                                                sample_weight)
        history.append({"weights": weights, "means": means, "covariances": covariances,
                        "loglik": loglik})
    return history


# --------------------------------------------------------------------------- VB
#
# Precision-part parameters of the posterior (q) and the prior (p):
#   full:      Wishart(W_k, nu_k) per component,    covariances = W_k^{-1} / nu_k, W_0^{-1} = covariance_prior
#   tied:      one Wishart(W, nu),                  covariances = W^{-1} / nu
#   diag:      Gamma(a_k, b_kd) per k and d,        a_k = nu_k / 2,   covariances = b_kd / a_k
#   spherical: Gamma(a_k, b_k) per k,               a_k = D nu_k / 2, covariances = b_k / a_k

def _wishart_params(state, covariance_type, prior):
    """Posterior (W (K,D,D), nu (K,)) and prior (W0, nu0); tied gives one matrix (K=1)."""
    cov = np.asarray(state["covariances"])
    nu = np.asarray(state["degrees_of_freedom"], dtype=np.float64)
    if covariance_type == "tied":
        cov, nu = cov[None], nu[:1]
    W = np.array([np.linalg.inv(nu[k] * cov[k]) for k in range(len(nu))])
    W0 = np.linalg.inv(np.asarray(prior["covariance_prior"], dtype=np.float64))
    return W, nu, W0, float(prior["degrees_of_freedom_prior"])


def _gamma_params(state, covariance_type, prior, D):
    """Posterior (a, b) and prior (a0, b0) of the Gamma precisions (shape, rate)."""
    nu = np.asarray(state["degrees_of_freedom"], dtype=np.float64)
    cov = np.asarray(state["covariances"], dtype=np.float64)
    nu0, cp = prior["degrees_of_freedom_prior"], np.asarray(prior["covariance_prior"])
    if covariance_type == "diag":
        a = nu / 2.0                                         # (K,)
        return a, cov * a[:, None], nu0 / 2.0, cp / 2.0      # b (K, D), b0 (D,)
    a = D * nu / 2.0
    return a, cov * a, D * nu0 / 2.0, D * cp / 2.0           # b (K,), b0 scalar


def _wishart_log_B(W, nu):
    """ln B(W, nu), Bishop B.79."""
    D = W.shape[0]
    i = np.arange(1, D + 1)
    return (-0.5 * nu * np.linalg.slogdet(W)[1] - 0.5 * nu * D * np.log(2.0)
            - 0.25 * D * (D - 1) * np.log(np.pi) - np.sum(gammaln((nu + 1 - i) / 2.0)))


def _wishart_E_logdet(W, nu):
    """E[ln |Lambda|] under Wishart(W, nu), Bishop B.81 / 10.65."""
    D = W.shape[0]
    i = np.arange(1, D + 1)
    return np.sum(digamma((nu + 1 - i) / 2.0)) + D * np.log(2.0) + np.linalg.slogdet(W)[1]


def _wishart_entropy(W, nu):
    """H[Lambda] under Wishart(W, nu), Bishop B.82."""
    D = W.shape[0]
    return -_wishart_log_B(W, nu) - 0.5 * (nu - D - 1) * _wishart_E_logdet(W, nu) + 0.5 * nu * D


def _kl_wishart(W, nu, W0, nu0):
    """KL(Wishart(W, nu) || Wishart(W0, nu0)) = -H[q] - E_q[ln p]."""
    D = W.shape[0]
    # E_q[ln p(Lambda)] = ln B(W0, nu0) + (nu0 - D - 1)/2 E[ln|Lambda|] - 1/2 tr(W0^{-1} E[Lambda])  (B.78)
    E_log_p = (_wishart_log_B(W0, nu0) + 0.5 * (nu0 - D - 1) * _wishart_E_logdet(W, nu)
               - 0.5 * np.trace(np.linalg.inv(W0) @ (nu * W)))
    return -_wishart_entropy(W, nu) - E_log_p


def _kl_gamma(a, b, a0, b0):
    """KL(Gamma(a, rate b) || Gamma(a0, rate b0)) = -H[q] - E_q[ln p] (B.26-B.31)."""
    E_lam, E_log_lam = a / b, digamma(a) - np.log(b)
    E_log_p = a0 * np.log(b0) - gammaln(a0) + (a0 - 1) * E_log_lam - b0 * E_lam
    return -stats.gamma(a, scale=1.0 / b).entropy() - E_log_p


def _kl_beta(a, b, a0, b0):
    """KL(Beta(a, b) || Beta(a0, b0)) = -H[q] - E_q[ln p] (B.6-B.9)."""
    E_log_v, E_log_1mv = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
    E_log_p = -betaln(a0, b0) + (a0 - 1) * E_log_v + (b0 - 1) * E_log_1mv
    return -stats.beta(a, b).entropy() - E_log_p


def _kl_dirichlet(alpha, alpha0):
    """KL(Dir(alpha) || Dir(alpha0)) = -H[q] - E_q[ln p] (B.16-B.22)."""
    E_log_pi = digamma(alpha) - digamma(alpha.sum())
    log_C0 = gammaln(alpha0.sum()) - np.sum(gammaln(alpha0))          # B.23
    E_log_p = log_C0 + np.sum((alpha0 - 1) * E_log_pi)
    return -stats.dirichlet(alpha).entropy() - E_log_p


def _expected_log_weights(state, prior):
    """E[ln pi_k] (K,): Dirichlet (Bishop 10.66) or stick-breaking (all K sticks random)."""
    if prior["weight_concentration_prior_type"] == "dirichlet_process":
        a, b = state["weight_concentration"]
        E_log_v = digamma(a) - digamma(a + b)
        E_log_1mv = digamma(b) - digamma(a + b)
        K = len(a)
        return np.array([E_log_v[k] + np.sum(E_log_1mv[:k]) for k in range(K)])
    alpha = np.asarray(state["weight_concentration"])
    return digamma(alpha) - digamma(alpha.sum())


def _expected_precision_and_logdet(state, covariance_type, prior, D):
    """E[Lambda_k] (K, D, D) and E[ln |Lambda_k|] (K,)."""
    K = len(state["mean_precision"])
    if covariance_type in ("full", "tied"):
        W, nu, _, _ = _wishart_params(state, covariance_type, prior)
        E_lam = np.array([nu[j] * W[j] for j in range(len(nu))])       # E[Lambda] = nu W (B.80)
        E_logdet = np.array([_wishart_E_logdet(W[j], nu[j]) for j in range(len(nu))])
        if covariance_type == "tied":
            E_lam, E_logdet = np.repeat(E_lam, K, axis=0), np.repeat(E_logdet, K)
        return E_lam, E_logdet
    a, b, _, _ = _gamma_params(state, covariance_type, prior, D)
    if covariance_type == "diag":
        E_lam = np.array([np.diag(a[k] / b[k]) for k in range(K)])
        E_logdet = np.array([np.sum(digamma(a[k]) - np.log(b[k])) for k in range(K)])
    else:
        E_lam = np.array([a[k] / b[k] * np.eye(D) for k in range(K)])
        E_logdet = D * (digamma(a) - np.log(b))
    return E_lam, E_logdet


def vb_m_step(X, resp, covariance_type, prior, sample_weight=None):
    """Variational M-step, Bishop 10.58-10.63 (and the Normal-Gamma analogues): the exact
    coordinate-ascent update, so no regulariser on S_k (fastvi's reg_covar is in the prior;
    see ``sklearn_like_prior``).

    Returns the posterior state dict: "weight_concentration", "mean_precision" (K,),
    "means" (K, D), "degrees_of_freedom" (K,), "covariances".
    """
    Nk, xbar, S = _gaussian_moments(X, resp, covariance_type, 0.0, sample_weight)
    K, D = xbar.shape
    gamma0, beta0 = prior["weight_concentration_prior"], prior["mean_precision_prior"]
    m0, nu0 = np.asarray(prior["mean_prior"], dtype=np.float64), prior["degrees_of_freedom_prior"]
    cp = np.asarray(prior["covariance_prior"], dtype=np.float64)

    if prior["weight_concentration_prior_type"] == "dirichlet_process":
        b = np.array([gamma0 + np.sum(Nk[k + 1:]) for k in range(K)])
        weight_concentration = (1.0 + Nk, b)
    else:
        weight_concentration = gamma0 + Nk                   # Bishop 10.58

    beta = beta0 + Nk                                        # Bishop 10.60
    m = (beta0 * m0[None, :] + Nk[:, None] * xbar) / beta[:, None]     # Bishop 10.61
    diff = xbar - m0[None, :]
    shrink = beta0 * Nk / (beta0 + Nk)                       # beta0 N_k / (beta0 + N_k)

    if covariance_type == "full":
        nu = nu0 + Nk                                        # Bishop 10.63
        W_inv = np.array([cp + Nk[k] * S[k] + shrink[k] * np.outer(diff[k], diff[k])
                          for k in range(K)])                # Bishop 10.62
        cov = W_inv / nu[:, None, None]
    elif covariance_type == "tied":
        nu = np.full(K, nu0 + Nk.sum())
        W_inv = cp + sum(Nk[k] * S[k] + shrink[k] * np.outer(diff[k], diff[k]) for k in range(K))
        cov = W_inv / nu[0]
    elif covariance_type == "diag":
        nu = nu0 + Nk
        a = (nu0 + Nk) / 2.0
        b = cp[None, :] / 2.0 + 0.5 * (Nk[:, None] * S + shrink[:, None] * diff ** 2)
        cov = b / a[:, None]
    elif covariance_type == "spherical":
        nu = nu0 + Nk
        a = D * (nu0 + Nk) / 2.0
        b = D * cp / 2.0 + 0.5 * (Nk * S.sum(axis=1) + shrink * np.sum(diff ** 2, axis=1))
        cov = b / a
    else:
        raise ValueError(covariance_type)
    return {"weight_concentration": weight_concentration, "mean_precision": beta,
            "means": m, "degrees_of_freedom": nu, "covariances": cov}


def vb_log_rho(X, state, covariance_type, prior):
    """(N, K) log rho_nk, Bishop 10.46 with 10.64-10.66.

    ln rho_nk = E[ln pi_k] + 1/2 E[ln|Lambda_k|] - D/2 ln(2 pi)
                - 1/2 (D / beta_k + (x_n - m_k)^T E[Lambda_k] (x_n - m_k)).
    """
    N, D = X.shape
    beta, m = state["mean_precision"], state["means"]
    K = len(beta)
    E_log_pi = _expected_log_weights(state, prior)
    E_lam, E_logdet = _expected_precision_and_logdet(state, covariance_type, prior, D)
    log_rho = np.empty((N, K))
    for k in range(K):
        diff = X - m[k]
        quad = np.einsum("ni,ij,nj->n", diff, E_lam[k], diff)          # Bishop 10.64
        log_rho[:, k] = (E_log_pi[k] + 0.5 * E_logdet[k] - 0.5 * D * np.log(2 * np.pi)
                         - 0.5 * (D / beta[k] + quad))
    return log_rho


def vb_kl(state, covariance_type, prior):
    """KL(q(pi, mu, Lambda) || p(pi, mu, Lambda))."""
    beta, m = np.asarray(state["mean_precision"]), np.asarray(state["means"])
    K, D = m.shape
    gamma0, beta0 = prior["weight_concentration_prior"], prior["mean_precision_prior"]
    m0 = np.asarray(prior["mean_prior"], dtype=np.float64)

    # weights: Dirichlet, or K Beta sticks against Beta(1, gamma0)
    if prior["weight_concentration_prior_type"] == "dirichlet_process":
        a, b = state["weight_concentration"]
        kl = sum(_kl_beta(a[k], b[k], 1.0, gamma0) for k in range(K))
    else:
        alpha = np.asarray(state["weight_concentration"], dtype=np.float64)
        kl = _kl_dirichlet(alpha, np.full(K, gamma0))

    # means: E_q(Lambda)[KL(N(m_k, (beta_k Lambda)^-1) || N(m0, (beta0 Lambda)^-1))]
    #   = 1/2 [D beta0/beta_k - D + D ln(beta_k/beta0) + beta0 (m_k-m0)^T E[Lambda_k] (m_k-m0)]
    E_lam, _ = _expected_precision_and_logdet(state, covariance_type, prior, D)
    for k in range(K):
        d = m[k] - m0
        kl += 0.5 * (D * beta0 / beta[k] - D + D * np.log(beta[k] / beta0)
                     + beta0 * d @ E_lam[k] @ d)

    # precisions
    if covariance_type in ("full", "tied"):
        W, nu, W0, nu0 = _wishart_params(state, covariance_type, prior)
        kl += sum(_kl_wishart(W[j], nu[j], W0, nu0) for j in range(len(nu)))
    else:
        a, b, a0, b0 = _gamma_params(state, covariance_type, prior, D)
        if covariance_type == "diag":
            kl += sum(_kl_gamma(a[k], b[k, d], a0, b0[d]) for k in range(K) for d in range(D))
        else:
            kl += sum(_kl_gamma(a[k], b[k], a0, b0) for k in range(K))
    return float(kl)


def vb_elbo(X, state, covariance_type, prior, sample_weight=None):
    """ELBO = sum_n w_n ln sum_k rho_nk - KL(q(theta) || p(theta)).

    Equals Bishop 10.70 when q(z_n) is proportional to rho_n (the optimal q(Z)).
    """
    w = _sample_weight(X, sample_weight)
    log_norm, _ = responsibilities(vb_log_rho(X, state, covariance_type, prior))
    return float(np.sum(w * log_norm) - vb_kl(state, covariance_type, prior))


def vb_fit(X, state, covariance_type, prior, n_iter, sample_weight=None, n_active=None):
    """Run ``n_iter`` VB-EM iterations (with a truncated q(z) given ``n_active``).

    Returns a list of dicts: the state after the M-step of iteration t, plus "elbo", the
    ELBO of the q(z) chosen at the E-step of iteration t and the q(theta) that entered it.
    """
    w = _sample_weight(X, sample_weight)
    history = []
    for _ in range(n_iter):
        log_rho = vb_log_rho(X, state, covariance_type, prior)
        log_norm, resp = truncated_responsibilities(log_rho, n_active)
        elbo = float(np.sum(w * log_norm) - vb_kl(state, covariance_type, prior))
        state = vb_m_step(X, resp, covariance_type, prior, sample_weight)
        history.append(dict(state, elbo=elbo))
    return history


def sklearn_like_prior(X, covariance_type, n_components, sample_weight=None, reg_covar=1e-6):
    """Prior dict with scikit-learn's BayesianGaussianMixture defaults (weighted), plus
    ``reg_covar`` on the covariance prior's diagonal (fastvi's regulariser).

    The weighted covariance uses frequency weights: sum_n w_n (x_n - xbar)(x_n - xbar)^T
    / (sum_n w_n - 1), which is np.cov(X.T) (ddof=1) when all weights are one.
    """
    w = _sample_weight(X, sample_weight)
    D = X.shape[1]
    mean = w @ X / w.sum()
    diff = X - mean
    C = (w[:, None] * diff).T @ diff / (w.sum() - 1.0) + reg_covar * np.eye(D)
    covariance_prior = {"full": C, "tied": C, "diag": np.diag(C).copy(),
                        "spherical": float(np.mean(np.diag(C)))}[covariance_type]
    return {"weight_concentration_prior_type": "dirichlet_process",
            "weight_concentration_prior": 1.0 / n_components,
            "mean_precision_prior": 1.0,
            "mean_prior": mean,
            "degrees_of_freedom_prior": float(D),
            "covariance_prior": covariance_prior}


def pair_entropy_loss(resp, pairs, sample_weight=None):
    """sum_n w_n [(r_j + r_k) log(r_j + r_k) - r_j log r_j - r_k log r_k] per pair (j, k),
    0 log 0 = 0: the entropy a merge of j and k takes from q(z)."""
    w = np.ones(resp.shape[0]) if sample_weight is None else np.asarray(sample_weight)
    out = []
    for j, k in np.asarray(pairs).reshape(-1, 2):
        merged = resp[:, j] + resp[:, k]
        terms = [np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)
                 for v in (merged, resp[:, j], resp[:, k])]
        out.append(float(w @ (terms[0] - terms[1] - terms[2])))
    return np.array(out)


# --------------------------------------------------------------------------- missing values
# Issue 29's reference: a NaN entry is missing at random, one more latent variable
# (Ghahramani & Jordan 1994).  Per row, per component, with explicit sub-matrices of the
# observed (o) and missing (m) coordinates.

def observed_mask(X):
    """(N, D) bool: the entries that are not NaN."""
    return ~np.isnan(np.asarray(X, dtype=np.float64))


def log_gaussian_observed(X, means, covariances, covariance_type):
    """(N, K) array of log N(x_o | mu_o, Sigma_oo), the marginal of each row's observed
    coordinates; 0 for a row with none observed (it says nothing)."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = means.shape[0]
    sigmas = _full_matrices(covariances, covariance_type, K, D)
    seen = observed_mask(X)
    out = np.zeros((N, K))
    for n in range(N):
        o = np.flatnonzero(seen[n])
        if o.size == 0:
            continue
        for k in range(K):
            out[n, k] = stats.multivariate_normal.logpdf(
                X[n, o], mean=means[k, o], cov=sigmas[k][np.ix_(o, o)])
    return out


def conditional_gaussian(x, mean, sigma):
    """Row ``x`` (D,) with NaN where missing, under N(mean, sigma): ``(filled, cov)``,
    ``filled`` the row with E[x_m | x_o] = mu_m + S_mo S_oo^-1 (x_o - mu_o) in the missing
    places, ``cov`` (D, D) zero but for the missing block, S_mm - S_mo S_oo^-1 S_om."""
    x = np.asarray(x, dtype=np.float64)
    m, o = np.flatnonzero(np.isnan(x)), np.flatnonzero(~np.isnan(x))
    filled, cov = x.copy(), np.zeros((x.size, x.size))
    if m.size == 0:
        return filled, cov
    if o.size == 0:
        filled[m] = mean[m]
        cov[np.ix_(m, m)] = sigma[np.ix_(m, m)]
        return filled, cov
    gain = sigma[np.ix_(m, o)] @ np.linalg.inv(sigma[np.ix_(o, o)])
    filled[m] = mean[m] + gain @ (x[o] - mean[o])
    cov[np.ix_(m, m)] = sigma[np.ix_(m, m)] - gain @ sigma[np.ix_(o, m)]
    return filled, cov


def missing_sufficient_stats(X, resp, ref, means, covariances, covariance_type,
                             sample_weight=None):
    """Expected statistics under q(x_m | x_o, z_n = k) (the E-step's Gaussians): the
    ``sufficient_stats`` dict with x_n replaced by E[x_n | x_o, k] and the conditional
    covariance added to s2: s2_k = sum_n w_n r_nk [(xhat_nk - ref_k)(...)^T + C_nk]."""
    X = np.asarray(X, dtype=np.float64)
    w = _sample_weight(X, sample_weight)
    N, D = X.shape
    K = resp.shape[1]
    sigmas = _full_matrices(covariances, covariance_type, K, D)
    Nk, s1, s2 = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    for k in range(K):
        for n in range(N):
            filled, cov = conditional_gaussian(X[n], means[k], sigmas[k])
            weight = w[n] * resp[n, k]
            diff = filled - ref[k]
            Nk[k] += weight
            s1[k] += weight * diff
            s2[k] += weight * (np.outer(diff, diff) + cov)
    if covariance_type in ("diag", "spherical"):
        s2 = np.array([np.diag(s2[k]) for k in range(K)])
    return {"N": Nk, "s1": s1, "s2": s2}


def conditional_entropy(X, covariances, covariance_type, K):
    """(N, K) entropy of q(x_m | x_o, z = k), 1/2 log det(2 pi e C_mm) (0 for a complete
    row): the term an exact ELBO with missing values adds for each row and component."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    sigmas = _full_matrices(covariances, covariance_type, K, D)
    out = np.zeros((N, K))
    for n in range(N):
        m = np.flatnonzero(np.isnan(X[n]))
        if m.size == 0:
            continue
        for k in range(K):
            _, cov = conditional_gaussian(X[n], np.zeros(D), sigmas[k])
            _, logdet = np.linalg.slogdet(cov[np.ix_(m, m)])
            out[n, k] = 0.5 * (m.size * np.log(2.0 * np.pi * np.e) + logdet)
    return out
