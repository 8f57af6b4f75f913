"""Merge moves for variational Bayes mixtures: what a merge does to the statistics and to
the ELBO, computed without a pass over the data, and which merges a memoized fit makes
(``BayesianGaussianMixture(moves=("merge",))``; the chunk loop applies them to its caches).

Hughes & Sudderth (2013), "Memoized online variational inference for Dirichlet process
mixture models", section 4.2: merging components j < k gives the rows the responsibility
r_nj + r_nk in j and removes k.  Under the merged q(z) and the q(theta) that the M-step
makes of it,

    ELBO = H[q(z)] + sum_n sum_k r_nk E[log rho_nk] - KL(q(theta) || p(theta)),

and every term but the entropy is a function of the sufficient statistics, which add:
the merged component's are the sum of the two (about a common reference point).  The
entropy changes by minus

    L_jk = sum_n w_n [ (r_nj + r_nk) log(r_nj + r_nk) - r_nj log r_nj - r_nk log r_nk ]  >= 0,

a sum over rows that is additive over chunks like the statistics (so a memoized fit can
cache it per chunk for the candidate pairs of a pass; ``engine.local.pair_entropy_loss``).
The merged statistics are ``SufficientStats.merged``.  So the ELBO after a merge is known
exactly from (statistics, entropy, L_jk): a merge is accepted only when it raises it.

The components keep their order, the merged one in j's place: under the stick-breaking
prior the ELBO depends on the order, and this is the order the next pass sees.
"""
import numpy as np

from ..engine.loop import expected_log_rho_sum
from . import vb as _vb


def bound(stats, entropy, covariance_type, prior):
    """The ELBO (in nats, not per row) of the q(z) behind ``stats`` and ``entropy`` and of
    the q(theta) that the M-step makes of ``stats``: what a memoized pass reports."""
    posterior = _vb.m_step(stats, covariance_type, prior)
    params = _vb.kernel_params(posterior, covariance_type, prior)
    return (entropy + expected_log_rho_sum(stats, params)
            - _vb.kl_divergence(posterior, covariance_type, prior))


def merge_gain(stats, entropy, j, k, loss, covariance_type, prior):
    """The ELBO change of merging ``j`` and ``k``: bound after minus bound before, with
    ``loss`` the pair's L_jk summed over all rows (``engine.local.pair_entropy_loss``)."""
    before = bound(stats, entropy, covariance_type, prior)
    after = bound(stats.merged(j, k), entropy - loss, covariance_type, prior)
    return after - before


def candidate_pairs(params, n_nearest=2):
    """The pairs worth trying to merge: each component with its ``n_nearest`` nearest
    others, by the Mahalanobis distance of their means under its own expected precision
    (Hughes & Sudderth 2013 also propose merges between components that share rows; the
    two agree for split clusters, whose halves sit next to each other).

    Parameters
    ----------
    params : KernelParams, the current components (means, precision factors)

    Returns
    -------
    (P, 2) int64 array of pairs (j < k), sorted, or None for a single component
    """
    means, factor = params.means, params.factor
    n_components = means.shape[0]
    if n_components < 2:
        return None
    diff = means[None, :, :] - means[:, None, :]               # [j, k] = m_k - m_j
    if factor.ndim == 3:                                       # ||U_j^T (m_k - m_j)||^2
        distance = (np.einsum("jkd,jde->jke", diff, factor) ** 2).sum(axis=2)
    else:
        distance = ((diff * factor[:, None, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    nearest = np.argsort(distance, axis=1, kind="stable")[:, :min(n_nearest, n_components - 1)]
    pairs = {tuple(sorted((j, int(k)))) for j in range(n_components) for k in nearest[j]}
    return np.array(sorted(pairs), dtype=np.int64)


def greedy_merges(stats, entropy, pairs, loss, covariance_type, prior):
    """Merges to accept, best first, each raising the ELBO of the statistics as merged so far.

    Every pair's gain is computed first; then, in descending order of gain, a pair whose
    components have not been merged yet this round is merged if it still raises the bound
    of the current (already merged) statistics.  A component takes part in one merge per
    round: the pairs' entropy losses were computed for the unmerged columns.

    Parameters
    ----------
    stats : SufficientStats, all rows; entropy : float, H[q(z)] of the same q(z)
    pairs : (P, 2) candidate pairs; loss : (P,) their entropy losses over all rows

    Returns
    -------
    moves : list of dicts, in the order to apply them: ``pair`` (index into ``pairs``),
        ``components`` (j, k: the positions to merge when applied in this order),
        ``gain`` (the bound's change, nats), ``accepted``; then the rejected pairs with
        their first gain, ``accepted`` False.
    bound : float, the bound after the accepted merges
    """
    current = bound(stats, entropy, covariance_type, prior)
    gains = np.array([bound(stats.merged(j, k), entropy - loss[p], covariance_type, prior)
                      - current for p, (j, k) in enumerate(pairs)])
    ids = list(range(stats.nk.shape[0]))       # the original component at each position
    used, moves = set(), []
    for p in np.argsort(-gains, kind="stable"):
        a, b = (int(v) for v in pairs[p])
        if not gains[p] > 0.0 or a in used or b in used:
            continue
        j, k = sorted((ids.index(a), ids.index(b)))
        merged = stats.merged(j, k)
        after = bound(merged, entropy - loss[p], covariance_type, prior)
        if after > current:
            moves.append({"move": "merge", "pair": int(p), "components": [j, k],
                          "gain": float(after - current), "accepted": True})
            stats, entropy, current = merged, entropy - loss[p], after
            ids.pop(k)
            used.update((a, b))
    accepted = {move["pair"] for move in moves}
    moves += [{"move": "merge", "pair": int(p), "components": [int(v) for v in pairs[p]],
               "gain": float(gains[p]), "accepted": False}
              for p in range(len(pairs)) if p not in accepted]
    return moves, current
