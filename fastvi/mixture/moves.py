"""Birth, merge and delete moves for variational Bayes mixtures
(``BayesianGaussianMixture(moves=...)``; the chunk loop applies them, ``engine.loop``).

Merges, first: what a merge does to the statistics and to the ELBO, computed without a
pass over the data, and which merges a fit makes.

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

Births and deletes are proposals judged after a pass: see the section below.
"""
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..engine.loop import expected_log_rho_sum
from . import vb as _vb
from .init import stats_from_resp


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


# ----------------------------------------------------------------------------- birth, delete
#
# A birth or a delete changes which q(z) the rows have, not just how cached terms combine,
# so its ELBO is known only after a pass: the move is a *proposal*, kernel parameters with
# other components, under which the next pass computes every chunk's statistics beside
# the fit's own (``Backend.open_pass(proposal=...)``).  At the pass's end the proposal's
# exact ELBO (its statistics, and the entropy of its q(z): log-normaliser minus expected
# log rho, chunk by chunk) is compared with the fit's; the proposal is accepted only if it
# is higher, and then its statistics (and a memoized fit's chunk caches) replace the fit's,
# which keeps the memoized bound exact (Hughes & Sudderth 2013, section 4.1 and 4.3: bnpy
# evaluates births after a pass in the same way).

MOVES = ("merge", "birth", "delete")
BIRTH_SAMPLE_ROWS = 50_000      # rows drawn to find and fit the births
BIRTH_TARGETS = 8               # components a birth round tries to split, at most
BIRTH_COMPONENTS = 10           # components of each small fit (before its own pruning)
DELETE_FRACTION = 0.1           # a delete target has < this share of the median mass


def without(params, k):
    """Kernel parameters with component ``k`` removed: the proposal of deleting it.  Under
    them a row's responsibility for j != k is r_nj / (1 - r_nk): k's rows go to the other
    components in proportion to how well each explains them (Hughes, Kim & Sudderth 2015,
    section 5's delete move)."""
    keep = np.delete(np.arange(params.means.shape[0]), k)
    return type(params)(params.c[keep].copy(), np.ascontiguousarray(params.means[keep]),
                        np.ascontiguousarray(params.factor[keep]))


def delete_target(nk, exclude=()):
    """The component to try deleting: the one of least mass ``nk``, if it has less than
    ``DELETE_FRACTION`` of the median component's and is not in ``exclude`` (positions
    tried since the components last changed); None otherwise."""
    if nk.shape[0] < 2:
        return None
    threshold = DELETE_FRACTION * np.median(nk)
    for k in np.argsort(nk, kind="stable"):
        if nk[k] >= threshold:
            return None
        if int(k) not in exclude:
            return int(k)
    return None


def split_components(sample, resp, weights, cap, covariance_type, prior, rng, tried,
                     n_targets=BIRTH_TARGETS, n_local=BIRTH_COMPONENTS):
    """Births: a q(z) on ``sample`` in which some components are split in several.

    The ``n_targets`` components that own the most rows of the sample (the rows for which
    they are the most probable) among those not in ``tried`` (which they are appended
    to) are each given a small variational fit of at most ``n_local`` components (same
    covariance type and prior, with merge moves; its own weight prior and merges prune
    what it does not need) to the rows they own.  A target is split only if that fit has
    at least two components of >= 2 D rows and a higher ELBO per row than one component
    on the same rows: a model selection on the rows the target explains, so a component
    that is one Gaussian is left alone.  A split target's responsibility r_nk is shared
    among its new components by the small fit's responsibilities (for every row of the
    sample): the first takes k's place, the others are appended, while the total stays
    within ``cap``.

    Returns
    -------
    resp : (n, K') responsibilities, or None when no target splits
    born : list of dicts ``{"component": k, "into": m}``, one per split target
    """
    from .estimators import BayesianGaussianMixture
    n_features = sample.shape[1]
    n_components = resp.shape[1]
    labels = np.argmax(resp, axis=1)
    owned = np.bincount(labels, minlength=n_components).astype(np.float64)
    min_rows = 2 * n_features
    eligible = [k for k in np.argsort(-owned, kind="stable")
                if owned[k] >= 4 * min_rows and int(k) not in tried]
    free = cap - n_components
    if free < 1 or not eligible:
        return None, []
    targets = [int(k) for k in eligible[:n_targets]]
    tried.extend(targets)
    settings = dict(covariance_type=covariance_type, reg_covar=0.0,
                    weight_concentration_prior_type=prior.weight_concentration_prior_type,
                    weight_concentration_prior=prior.weight_concentration_prior,
                    mean_precision_prior=prior.mean_precision_prior,
                    mean_prior=prior.mean_prior,
                    degrees_of_freedom_prior=prior.degrees_of_freedom_prior,
                    covariance_prior=prior.covariance_prior)
    base, extra, born = resp.copy(), [], []
    for k in targets:
        if free < 1:
            break
        owner = labels == k
        if weights is not None:
            owner &= weights > 0             # rows of zero weight say nothing
        rows = sample[owner]
        row_weights = None if weights is None else weights[owner]
        size = min(n_local, free + 1, rows.shape[0] // min_rows)
        seed = int(rng.integers(1 << 31))
        if size < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # merges clean up the small fit's own split clusters: without them a fit of
            # 10 components to two clusters often kept six, and lost to one component
            local = BayesianGaussianMixture(
                size, max_iter=50, tol=1e-4, random_state=seed, moves=("merge",),
                **settings).fit(rows, sample_weight=row_weights)
            one = BayesianGaussianMixture(1, max_iter=10, **settings).fit(
                rows, sample_weight=row_weights)
        mass = local.weights_ * rows.shape[0]
        live = np.flatnonzero(mass >= min_rows)
        if live.size < 2 or not local.lower_bound_ > one.lower_bound_:
            continue
        live = live[:free + 1]
        share = local.predict_proba(sample)[:, live]
        total = share.sum(axis=1, keepdims=True)
        share = np.where(total > 0, share / np.where(total > 0, total, 1.0), 1.0 / live.size)
        split = resp[:, k:k + 1] * share
        base[:, k] = split[:, 0]
        extra.append(split[:, 1:])
        born.append({"component": k, "into": int(live.size)})
        free -= live.size - 1
    if not born:
        return None, []
    return np.hstack([base] + extra), born


def proposal_from_resp(sample, resp, weights, total_weight, covariance_type, prior):
    """Kernel parameters for a proposal: the M-step of the sample's statistics under
    ``resp``, scaled to the whole data's weight (so the weights' expectations are those
    of the whole data)."""
    stats = stats_from_resp(sample, resp, resp.shape[1], covariance_type in ("full", "tied"),
                            weights)
    if stats.weight > 0:
        stats = stats.scale(total_weight / stats.weight)
    posterior = _vb.m_step(stats, covariance_type, prior)
    return _vb.kernel_params(posterior, covariance_type, prior)
