"""Sufficient statistics of a Gaussian mixture as an additive value.

Chunks, threads, memoized batches and Dask workers all produce a ``SufficientStats``; the
algorithms only ever add them up and map the sum to parameters.  The moments are kept
centred about a reference point per component (the mean the E-step used), because raw
moments ``sum r x x^T`` lose the covariance to cancellation when the mean is large
compared with the spread.
"""
from dataclasses import dataclass

import numpy as np


def _add_carried(name, left, right):
    """The sum of what two statistics carry (``pair_loss``, ``proposal``): both or none."""
    if left is None and right is None:
        return None
    if left is None or right is None:
        raise ValueError(f"statistics with and without {name} added: every chunk of a pass "
                         "carries the same extras")
    return left + right


@dataclass
class SufficientStats:
    """Weighted, centred sufficient statistics of K components.

    Attributes
    ----------
    nk : (K,) ndarray
        ``sum_n w_n r_nk``.
    s1 : (K, D) ndarray
        ``sum_n w_n r_nk (x_n - ref_k)``.
    s2 : (K, D, D) or (K, D) ndarray
        ``sum_n w_n r_nk (x_n - ref_k)(x_n - ref_k)^T``, or its diagonal.
    ref : (K, D) ndarray
        The reference point of each component.
    log_norm : float
        ``sum_n w_n log sum_k rho_nk`` of the rows that produced these statistics.
    weight : float
        ``sum_n w_n``, the (weighted) number of rows.
    pair_loss : (P,) ndarray or None
        Only on statistics from a backend asked for it (merge moves):
        ``local.pair_entropy_loss`` of the pass's candidate pairs over the rows.  A sum
        of such statistics (the chunks of a step, added in the tree) sums them too; the
        chunk loop takes it off at the end of a step.
    proposal : SufficientStats or None
        Likewise, only from a backend asked for a birth or delete proposal: the same
        rows' statistics under the proposal's kernel parameters, summed alike.
    """

    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    ref: np.ndarray
    log_norm: float = 0.0
    weight: float = 0.0
    pair_loss: object = None
    proposal: object = None

    @classmethod
    def zeros(cls, ref, full):
        """Empty statistics about ``ref`` (K, D); ``full`` selects (K, D, D) second moments."""
        ref = np.array(ref, dtype=np.float64)
        n_components, n_features = ref.shape
        shape2 = (n_components, n_features, n_features) if full else (n_components, n_features)
        return cls(np.zeros(n_components), np.zeros((n_components, n_features)),
                   np.zeros(shape2), ref)

    @property
    def full(self):
        return self.s2.ndim == 3

    def shift(self, new_ref):
        """The same statistics about ``new_ref``; exact up to rounding.

        With ``d = ref - new_ref``, ``x - new_ref = (x - ref) + d``, so
        ``s1' = s1 + N d`` and ``s2' = s2 + s1 d^T + d s1^T + N d d^T``.
        """
        new_ref = np.asarray(new_ref, dtype=np.float64)
        d = self.ref - new_ref
        nk = self.nk[:, None]
        s1 = self.s1 + nk * d
        if self.full:
            outer = self.s1[:, :, None] * d[:, None, :]
            s2 = (self.s2 + outer + outer.transpose(0, 2, 1)
                  + nk[:, :, None] * d[:, :, None] * d[:, None, :])
        else:
            s2 = self.s2 + 2.0 * self.s1 * d + nk * d * d
        return SufficientStats(self.nk.copy(), s1, s2, new_ref.copy(),
                               self.log_norm, self.weight)

    def __add__(self, other):
        pair_loss = _add_carried("pair_loss", self.pair_loss, other.pair_loss)
        proposal = _add_carried("proposal", self.proposal, other.proposal)
        if not np.array_equal(self.ref, other.ref):
            other = other.shift(self.ref)
        return SufficientStats(self.nk + other.nk, self.s1 + other.s1, self.s2 + other.s2,
                               self.ref.copy(), self.log_norm + other.log_norm,
                               self.weight + other.weight, pair_loss, proposal)

    def __sub__(self, other):
        if not np.array_equal(self.ref, other.ref):
            other = other.shift(self.ref)
        return SufficientStats(self.nk - other.nk, self.s1 - other.s1, self.s2 - other.s2,
                               self.ref.copy(), self.log_norm - other.log_norm,
                               self.weight - other.weight)

    def merged(self, j, k):
        """These statistics with components ``j`` and ``k`` (j != k) merged into
        ``min(j, k)``: a merge move's q(z) gives each row r_nj + r_nk there (Hughes &
        Sudderth 2013, section 4.2), and the moments of a sum of responsibilities add.

        The merged component keeps ``min(j, k)``'s reference point (the other's moments
        are shifted to it, exactly up to rounding); the other is removed and the rest keep
        their order.
        """
        j, k = sorted((int(j), int(k)))
        n_components = self.nk.shape[0]
        if j == k or not 0 <= j < k < n_components:
            raise ValueError(f"merge needs two distinct components of {n_components}, "
                             f"got {j} and {k}")
        ref = self.ref.copy()
        ref[k] = ref[j]
        moved = self.shift(ref)           # k about j's reference: its moments add to j's
        moved.nk[j] += moved.nk[k]
        moved.s1[j] += moved.s1[k]
        moved.s2[j] += moved.s2[k]
        keep = np.delete(np.arange(n_components), k)
        return SufficientStats(moved.nk[keep], moved.s1[keep], moved.s2[keep],
                               ref[keep].copy(), self.log_norm, self.weight)

    def mirror_upper(self):
        """Copy the upper triangle of full second moments into the lower one, in place
        (kernels accumulate the upper triangle only); returns ``self``."""
        if self.full:
            lower = np.tril_indices(self.s2.shape[1], -1)
            self.s2[:, lower[0], lower[1]] = self.s2[:, lower[1], lower[0]]
        return self

    def scale(self, factor):
        """The statistics of ``factor`` copies of the data (used by stochastic updates)."""
        return SufficientStats(self.nk * factor, self.s1 * factor, self.s2 * factor,
                               self.ref.copy(), self.log_norm * factor, self.weight * factor)

    def moments(self, nk_floor=0.0):
        """Per-component weighted means and centred covariances (not regularised).

        Parameters
        ----------
        nk_floor : float
            Added to ``nk`` before dividing, so that empty components stay finite.

        Returns
        -------
        nk, means, covariances : (K,), (K, D), (K, D, D) or (K, D)
        """
        nk = self.nk + nk_floor
        delta = self.s1 / nk[:, None]
        means = self.ref + delta
        if self.full:
            cov = self.s2 / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
        else:
            # A variance is >= 0; s2 / N - delta^2 can round below it (a column without
            # spread), and a negative variance would make the update's covariance or
            # Gamma rate non-positive.
            cov = np.maximum(self.s2 / nk[:, None] - delta * delta, 0.0)
        return nk, means, cov
