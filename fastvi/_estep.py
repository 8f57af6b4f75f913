"""Drives the fused kernel over the chunks of a data set.

The data arrive through a chunk source (``fastvi.sources``): an ndarray, an h5py dataset or
a list of HDF5 files.  Each chunk is handed to the kernel as a C-contiguous float32 or
float64 array; the statistics of the chunks are added in chunk order, so a result depends
on the chunk size but never on the number of threads.
"""
from dataclasses import dataclass

import numpy as np

from ._stats import SufficientStats
from .kernels import estep_diag, estep_full
from .sources import DEFAULT_CHUNK_ROWS, as_source

_EMPTY1 = np.zeros(0)


@dataclass
class KernelParams:
    """Components in the canonical form ``log rho_nk = c_k - 1/2 ||U_k^T (x_n - m_k)||^2``.

    ``factor`` is (K, D, D) upper-triangular for full/tied, (K, D) for diag/spherical.
    """

    c: np.ndarray
    means: np.ndarray
    factor: np.ndarray

    @property
    def full(self):
        return self.factor.ndim == 3

    @property
    def kernel(self):
        return estep_full if self.full else estep_diag


def _weights_arg(weights):
    return _EMPTY1 if weights is None else np.ascontiguousarray(weights, dtype=np.float64)


def _chunk_weights(sample_weight, start, chunk):
    return None if sample_weight is None else sample_weight[start:start + chunk.shape[0]]


def accumulate(X, params, sample_weight=None, chunk_rows=DEFAULT_CHUNK_ROWS):
    """One E-step pass: the sufficient statistics of ``X`` (array, dataset or chunk
    source) about ``params.means``."""
    stats = SufficientStats.zeros(params.means, params.full)
    source = as_source(X, chunk_rows)
    for _, start, chunk in source.chunks(check=False, reuse=True):
        weights = _chunk_weights(sample_weight, start, chunk)
        log_norm = accumulate_chunk(chunk, params, weights, stats)
        check_result(source, start, chunk, log_norm)
        stats.log_norm += log_norm
        stats.weight += chunk.shape[0] if weights is None else float(weights.sum())
    mirror_upper(stats)
    return stats


def check_result(source, start, chunk, log_norm):
    """A chunk's sum of log-normalisers is finite unless a row is NaN or inf (the kernel
    carries NaN and -inf through), so the rows are scanned only when it is not."""
    if not np.isfinite(log_norm):
        source.check_finite(chunk, start)
        raise FloatingPointError(
            f"{source.label}: rows {start}:{start + chunk.shape[0]} have a non-finite "
            f"log-likelihood ({log_norm}) under the current parameters although the data are "
            "finite; a component may have collapsed (increase reg_covar) or the data may be "
            "far out of the float range of the parameters")


def accumulate_chunk(chunk, params, weights, stats):
    """Add one chunk's statistics into ``stats`` (upper triangle); return its log-norm sum."""
    n_components = params.means.shape[0]
    none = np.zeros((0, n_components))
    return params.kernel(chunk, _weights_arg(weights), params.c, params.means, params.factor,
                         stats.nk, stats.s1, stats.s2, _EMPTY1, none,
                         np.zeros((0, 1), dtype=np.int64))


def mirror_upper(stats):
    """Copy the accumulated upper triangle of full second moments into the lower one."""
    if stats.full:
        lower = np.tril_indices(stats.s2.shape[1], -1)
        stats.s2[:, lower[0], lower[1]] = stats.s2[:, lower[1], lower[0]]


def per_row(X, params, log_norm=False, resp=False, labels=False,
            chunk_rows=DEFAULT_CHUNK_ROWS):
    """Per-row outputs without statistics: any of log-normaliser, responsibilities, labels.

    ``labels=True`` gives the most probable component (n,); an integer L > 1 gives the L
    most probable (n, L), most probable first.

    Returns a dict with the requested arrays (``resp`` is the one N x K array fastvi makes,
    and only because the caller asked for it).
    """
    source = as_source(X, chunk_rows)
    n_rows = source.n_rows
    n_components, n_features = params.means.shape
    out = {}
    if log_norm:
        out["log_norm"] = np.empty(n_rows)
    if resp:
        out["resp"] = np.empty((n_rows, n_components))
    if labels:
        out["labels"] = np.empty((n_rows, int(labels)), dtype=np.int64)
    no_stats = (np.zeros(0), np.zeros((0, n_features)),
                np.zeros((0, n_features, n_features)) if params.full else np.zeros((0, n_features)))
    for _, start, chunk in source.chunks():
        stop = start + chunk.shape[0]
        params.kernel(chunk, _EMPTY1, params.c, params.means, params.factor, *no_stats,
                      out["log_norm"][start:stop] if log_norm else _EMPTY1,
                      out["resp"][start:stop] if resp else np.zeros((0, n_components)),
                      out["labels"][start:stop] if labels else np.zeros((0, 1), dtype=np.int64))
    if labels == 1:
        out["labels"] = out["labels"][:, 0]
    return out
