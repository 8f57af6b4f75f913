"""Merge moves for variational Bayes mixtures: what a merge does to the statistics and to
the ELBO, computed without a pass over the data (issue 16, first part).

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
cache it per chunk for the candidate pairs of a pass).  So the ELBO after a merge is known
exactly from (statistics, entropy, L_jk): a merge is accepted only when it raises it.

The components keep their order, the merged one in j's place: under the stick-breaking
prior the ELBO depends on the order, and this is the order the next pass sees.
"""
import numpy as np

from ..engine.loop import expected_log_rho_sum
from ..engine.stats import SufficientStats
from . import vb as _vb


def merge_stats(stats, j, k):
    """The statistics with components ``j`` and ``k`` (j != k) merged into ``min(j, k)``.

    The merged component keeps ``min(j, k)``'s reference point (the other's statistics
    are shifted to it, exactly up to rounding); the other component is removed, the rest
    keep their order.
    """
    j, k = sorted((int(j), int(k)))
    if j == k or not 0 <= j < k < stats.nk.shape[0]:
        raise ValueError(f"merge needs two distinct components of {stats.nk.shape[0]}, "
                         f"got {j} and {k}")
    ref = stats.ref.copy()
    ref[k] = ref[j]
    moved = stats.shift(ref)            # k now about j's reference: its moments add to j's
    keep = np.delete(np.arange(stats.nk.shape[0]), k)
    nk, s1, s2 = moved.nk.copy(), moved.s1.copy(), moved.s2.copy()
    nk[j] += nk[k]
    s1[j] += s1[k]
    s2[j] += s2[k]
    return SufficientStats(nk[keep], s1[keep], s2[keep], ref[keep].copy(),
                           stats.log_norm, stats.weight)


def merge_entropy_loss(resp, pairs, sample_weight=None):
    """L_jk for each pair (j, k) of ``pairs``: the entropy of q(z) that merging them loses.

    Parameters
    ----------
    resp : (n, K) ndarray
        The responsibilities of a chunk of rows.
    pairs : (P, 2) array-like of int
    sample_weight : (n,) ndarray, optional

    Returns
    -------
    (P,) ndarray, each >= 0 (0 log 0 is 0).
    """
    resp = np.asarray(resp, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    w = np.ones(resp.shape[0]) if sample_weight is None else np.asarray(sample_weight, float)
    r_log_r = _xlogx(resp)
    loss = np.empty(pairs.shape[0])
    for p, (j, k) in enumerate(pairs):
        merged = resp[:, j] + resp[:, k]
        loss[p] = w @ (_xlogx(merged) - r_log_r[:, j] - r_log_r[:, k])
    return loss


def _xlogx(values):
    out = np.zeros_like(values)
    positive = values > 0.0
    out[positive] = values[positive] * np.log(values[positive])
    return out


def bound(stats, entropy, covariance_type, prior):
    """The ELBO (in nats, not per row) of the q(z) behind ``stats`` and ``entropy`` and of
    the q(theta) that the M-step makes of ``stats``: what a memoized pass reports."""
    posterior = _vb.m_step(stats, covariance_type, prior)
    params = _vb.kernel_params(posterior, covariance_type, prior)
    return (entropy + expected_log_rho_sum(stats, params)
            - _vb.kl_divergence(posterior, covariance_type, prior))


def merge_gain(stats, entropy, j, k, loss, covariance_type, prior):
    """The ELBO change of merging ``j`` and ``k``: bound after minus bound before, with
    ``loss`` the pair's :func:`merge_entropy_loss` summed over all rows."""
    before = bound(stats, entropy, covariance_type, prior)
    after = bound(merge_stats(stats, j, k), entropy - loss, covariance_type, prior)
    return after - before
