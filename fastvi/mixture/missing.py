"""Missing values as latent variables (``missing="marginalize"``).

A NaN entry is missing at random: the E-step uses each row's observed coordinates only and
the M-step the expected statistics of the missing ones (Ghahramani & Jordan 1994; the
kernel is ``fastvi.kernels.missing``, reached through ``KernelParams.marginalize``).  This
module holds what the estimators do around it: the parameter's check, the NaN-tolerant
reads, the fill of the initialisation sample, the default prior's data moments, and
``impute``.  A row with no observed entry says nothing about the parameters: it adds
nothing to the statistics or to the bound, and its per-row outputs are those of the
empty observation (for EM: log-likelihood 0, the weights as responsibilities).

Decisions (docs/missing.md):

* Initialisation (k-means and the others) runs on the sample with each NaN replaced by
  its column's mean over the sample's observed entries; the EM iterations then treat the
  entries as latent.  Mean imputation only seeds the fit.
* The Bayesian model's default priors from the data (``mean_prior``, ``covariance_prior``)
  are the available-case moments: each column's mean and variance over its observed
  entries, each covariance over the rows where both columns are seen; where those
  covariances are not positive definite, their diagonal.  Data without a NaN keep the
  ordinary (bit-identical) pass.
* The truncated q (``n_active``) and the CUDA backend refuse ``missing="marginalize"``.
"""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..data.checks import InvalidParameterError
from ..engine.stats import SufficientStats

MISSING = ("error", "marginalize")


def check_missing(estimator, backend_name, truncated):
    """``missing`` is one of ``MISSING``, and not combined with what cannot take it."""
    missing = estimator.missing
    if not isinstance(missing, str) or missing not in MISSING:
        raise InvalidParameterError(f"missing must be one of {MISSING}, got {missing!r}")
    if missing != "marginalize":
        return
    if truncated:
        raise InvalidParameterError(
            "missing='marginalize' needs the dense E-step: the truncated q (n_active) does "
            "not marginalise missing entries; leave n_active=None")
    if backend_name == "cuda":
        raise InvalidParameterError(
            "missing='marginalize' runs on the CPU backends only ('local', 'dask'): the "
            "CUDA kernels do not marginalise missing entries")


def fill_with_column_means(sample):
    """``sample`` with each NaN replaced by its column's mean over the observed entries
    (0 for a column with none): what the initialisation methods run on."""
    holes = np.isnan(sample)
    if not holes.any():
        return sample
    seen = (~holes).sum(axis=0)
    sums = np.where(holes, 0.0, sample).sum(axis=0)
    means = np.divide(sums, seen, out=np.zeros_like(sums), where=seen > 0)
    return np.where(holes, means, sample)


KPOD_ROUNDS = 30        # at most; they stop when no label changes
SEED_ROWS_PER_COMPONENT = 10    # complete rows per component to seed on them alone


def nearest_observed(sample, centres):
    """Each row's nearest centre by the squared distance over its observed entries."""
    holes = np.isnan(sample)
    observed = np.where(holes, 0.0, sample)
    distances = (-2.0 * observed @ centres.T + (~holes) @ (centres * centres).T)
    return np.argmin(distances, axis=1)


def cluster_means(rows, labels, n_components, weights=None):
    """The (weighted) mean of each label's ``rows``; an empty cluster gets the mean of all
    (a centre far from nothing)."""
    w = np.ones(rows.shape[0]) if weights is None else weights
    mass = np.bincount(labels, weights=w, minlength=n_components)
    sums = np.zeros((n_components, rows.shape[1]))
    np.add.at(sums, labels, rows * w[:, None])
    overall = np.average(rows, axis=0, weights=w if w.sum() > 0 else None)
    return np.where(mass[:, None] > 0, sums / np.maximum(mass, 1e-300)[:, None], overall)


def refine_labels(sample, filled, labels, n_components, weights=None):
    """k-POD (Chi, Chi & Baraniuk 2016, "k-POD: a method for k-means clustering of
    missing data"): from hard initial ``labels`` of the mean-filled rows ``filled``,
    alternate filling each hole of ``sample`` with its row's centre and Lloyd's step on
    the filled rows, a majorise-minimise of the k-means loss over the observed entries
    only.  Returns the filled rows and the labels.  Mean filling alone pulls the
    incomplete rows toward the middle, and at 50% missing EM started there stayed in a
    worse optimum (0.36 nats per row of held-out likelihood, on every seed tried)."""
    holes = np.isnan(sample)
    for _ in range(KPOD_ROUNDS):
        centres = cluster_means(filled, labels, n_components, weights)
        filled = np.where(holes, centres[labels], sample)
        distances = ((filled * filled).sum(axis=1)[:, None] - 2.0 * filled @ centres.T
                     + (centres * centres).sum(axis=1)[None, :])
        new = np.argmin(distances, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return filled, labels


def add_hole_variances(stats, sample, rows, labels, weights=None):
    """Add to the initial ``stats`` (of ``rows``: ``sample`` with each hole at its centre's
    value, and hard ``labels``) each hole's variance: the variance of its column's
    observed entries in its row's cluster, on the diagonal of the second moments; nothing
    when the sample had no hole or the labels are soft.  Without it every hole adds zero
    spread, and a cluster of incomplete rows starts narrower than its rows."""
    if rows is sample or np.ndim(labels) != 1:
        return stats
    holes = np.isnan(sample)
    w = np.ones(sample.shape[0]) if weights is None else weights
    n_components = stats.nk.shape[0]
    seen_w = np.zeros((n_components, sample.shape[1]))
    sums, squares = np.zeros_like(seen_w), np.zeros_like(seen_w)
    observed = np.where(holes, 0.0, sample)
    np.add.at(seen_w, labels, (~holes) * w[:, None])
    np.add.at(sums, labels, observed * w[:, None])
    np.add.at(squares, labels, observed * observed * w[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / seen_w
        variance = np.maximum(squares / seen_w - mean * mean, 0.0)
    variance = np.where(seen_w > 0, variance, 0.0)
    hole_w = np.zeros_like(seen_w)
    np.add.at(hole_w, labels, holes * w[:, None])
    extra = hole_w * variance
    if stats.full:
        index = np.arange(sample.shape[1])
        stats.s2[:, index, index] += extra
    else:
        stats.s2 += extra
    return stats


def record_missing(estimator, source):
    """Set ``missing_fraction_`` (of the entries), ``n_incomplete_rows_`` and
    ``n_empty_rows_`` (none observed) of the fitted rows (of ``partial_fit``'s first
    minibatch) when ``missing`` marginalises them (one read pass, here; the default
    prior's moments are chosen by them); else remove them (a refit)."""
    if not estimator._marginalize:
        for name in ("missing_fraction_", "n_incomplete_rows_", "n_empty_rows_"):
            estimator.__dict__.pop(name, None)
        return
    entries = incomplete = empty = 0
    for _, _, chunk in source.chunks():
        holes = np.isnan(chunk)
        per_row = holes.sum(axis=1)
        entries += int(per_row.sum())
        incomplete += int(np.count_nonzero(per_row))
        empty += int(np.count_nonzero(per_row == source.n_features))
    estimator.missing_fraction_ = entries / max(source.n_rows * source.n_features, 1)
    estimator.n_incomplete_rows_ = incomplete
    estimator.n_empty_rows_ = empty


def available_case_stats(source, sample_weight, full):
    """One-component statistics of the data's available-case moments (module
    docstring), as ``SufficientStats`` about their mean: ``moments()`` gives back that
    mean and covariance (weighted, ddof 0).  One pass, here."""
    n_features = source.n_features
    count, total = np.zeros((n_features, n_features)), np.zeros((n_features, n_features))
    square = np.zeros((n_features, n_features))
    # pairwise sums about the first row's observed values (less cancellation), per pair
    ref = None
    for _, start, chunk in source.chunks():
        chunk = np.asarray(chunk, dtype=np.float64)
        if ref is None:     # the first rows' column means (0 where none is seen)
            head = chunk[:1024]
            ref = fill_with_column_means(head).mean(axis=0) if head.size else \
                np.zeros(n_features)
        seen = ~np.isnan(chunk)
        w = (np.ones(chunk.shape[0]) if sample_weight is None
             else sample_weight[start:start + chunk.shape[0]])
        centred = np.where(seen, chunk - ref, 0.0)
        ws = seen * w[:, None]
        count += ws.T @ seen                          # weight of rows seeing i and j
        total += (centred * w[:, None]).T @ seen      # sum of x_i over rows seeing j
        square += (centred * w[:, None]).T @ centred
    weight = np.diag(count).copy()
    mean_delta = np.divide(np.diag(total), weight, out=np.zeros(n_features),
                           where=weight > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # cov_ij over rows seeing both: E[x_i x_j] - E[x_i] E[x_j], each mean on those rows
        mean_i = total / count                        # [i, j]: mean of x_i where j seen
        cov = square / count - mean_i * mean_i.T
    cov = np.where(count > 0, cov, 0.0)
    variances = np.maximum(np.diag(cov), 0.0)
    if full:
        cov = 0.5 * (cov + cov.T)
        if np.linalg.eigvalsh(cov).min() <= 0.0:
            cov = np.diag(variances)
    n_rows = float(weight.max()) if weight.size else 0.0
    mean = ref + mean_delta
    stats = SufficientStats.zeros(mean[None, :], full)
    stats.nk[0] = n_rows
    stats.s2[0] = n_rows * (cov if full else variances)
    stats.weight = n_rows
    return stats


class MixtureImputer(TransformerMixin, BaseEstimator):
    """Fill missing entries (NaN) with their conditional mean under a Gaussian mixture.

    ``fit`` fits a clone of ``estimator`` with ``missing="marginalize"`` (the missing
    entries as latent variables, exact EM or VB-EM); ``transform`` returns a copy of the
    rows with each NaN replaced by E[x_m | x_o] under the fitted mixture (its
    ``impute``).  Usable in a ``Pipeline`` before any estimator that refuses NaN.

    Parameters
    ----------
    estimator : fastvi.GaussianMixture or fastvi.BayesianGaussianMixture, optional
        The mixture to fit (unfitted; cloned).  None: ``GaussianMixture(n_components=1)``,
        a single Gaussian, whose conditional mean is the classic EM imputation
        (Dempster, Laird & Rubin 1977); more components follow clustered data.

    Attributes
    ----------
    estimator_ : the fitted mixture
    n_features_in_ : int
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y=None, sample_weight=None):
        from .estimators import GaussianMixture
        base = GaussianMixture(n_components=1) if self.estimator is None else self.estimator
        if not hasattr(base, "missing"):
            raise InvalidParameterError("estimator must be a fastvi mixture "
                                        f"(GaussianMixture, BayesianGaussianMixture), got {base!r}")
        self.estimator_ = clone(base).set_params(missing="marginalize")
        self.estimator_.fit(X, sample_weight=sample_weight)
        self.n_features_in_ = self.estimator_.n_features_in_
        if hasattr(self.estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.estimator_.feature_names_in_
        return self

    def transform(self, X):
        check_is_fitted(self, "estimator_")
        return self.estimator_.impute(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


class MissingValues:
    """What a mixture estimator adds for ``missing`` (a mixin of ``BaseMixture``)."""

    missing = "error"       # estimators read from files written before the parameter

    @property
    def _marginalize(self):
        return self.missing == "marginalize"

    def _marked(self, params):
        """``params`` (KernelParams) marginalising NaN entries when ``missing`` says so."""
        params.marginalize = self._marginalize
        return params

    def _initial_rows_and_resp(self, sample, rng, weights):
        """The initialisation's rows and responsibilities (``BaseMixture._initialize``).

        With holes in the sample: the hard methods seed on its complete rows when there
        are at least ``SEED_ROWS_PER_COMPONENT`` per component (the centres then label
        every row by its observed entries), else on the rows filled by column means;
        k-POD (``refine_labels``) then settles the labels and the holes' values.
        ``random`` takes the mean-filled rows.  Mean filling alone seeded two components
        inside one true cluster at 50% missing, on every seed tried."""
        holes = np.isnan(sample)
        if not holes.any():
            return sample, self._initial_resp(sample, rng, weights)
        filled = fill_with_column_means(sample)
        complete = ~holes.any(axis=1)
        if weights is not None:
            complete &= weights > 0
        n_components = self._initial_components()
        if np.count_nonzero(complete) >= SEED_ROWS_PER_COMPONENT * n_components:
            kept = None if weights is None else weights[complete]
            labels = self._initial_resp(sample[complete], rng, kept)
            if np.ndim(labels) != 1:                     # random: soft, on all rows
                return filled, self._initial_resp(filled, rng, weights)
            centres = cluster_means(sample[complete], labels, n_components, kept)
            labels = nearest_observed(sample, centres)
        else:
            labels = self._initial_resp(filled, rng, weights)
            if np.ndim(labels) != 1:
                return filled, labels
        return refine_labels(sample, filled, labels, n_components, weights)

    def impute(self, X):
        """A copy of ``X`` with each NaN replaced by its conditional mean E[x_m | x_o]
        under the fitted mixture: sum_k p(k | x_o) E[x_m | x_o, z = k], each term the
        Gaussian conditional mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o).  Observed entries
        are kept; a row with nothing observed gets the mixture's mean.  Works whatever
        ``missing`` the model was fitted with.

        Parameters
        ----------
        X : array-like, h5py.Dataset or ChunkSource of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_features), in the working dtype of ``X``
        """
        self._check_is_fitted()
        source = self._validate_X(X, reset=False)
        with self._running():
            return self._backend().impute(source, self._kernel_params())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._marginalize
        return tags
