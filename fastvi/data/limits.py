"""The values a row may hold: finite (NaN, where allowed, as a missing entry) and within
the magnitude the arithmetic takes, by the working dtype (``check_values``).  Chunk
sources check every read with it; the backends check a chunk whose E-step result is not
finite.
"""
import numpy as np


# The largest magnitude of a value that fastvi reads, by the working dtype of the rows.
#
# float64: a value's square overflows from 1.3e154 on, so such data cannot work at all
# (unchecked, 1e300 rows end in a fit's FloatingPointError, NaN responsibilities, -inf
# scores).  Below that, the kernels and updates sum squared differences weighted by
# precisions: ||U^T (x - m)||^2 in the E-step (U up to 1/sqrt(reg_covar), 1e3 by
# default, for a collapsed component) and sum_n r_nk (x_n - m_k)^2 in the second moments.
# With |x|, |m| <= 1e140 a squared difference is at most 4e280; times the 1e6 of a
# precision at reg_covar and summed over 1e16 entries (rows x features: beyond any data
# set) it stays below 4e302 < 1.8e308, and a covariance of 1e280 has a precision of
# 1e-280, above the subnormals (2.2e-308).  (600 x 16 rows fit up to 1e152 and fail at
# 1e153: the rest of the range is the headroom for many rows.)
LARGEST_FLOAT64 = 1e140
# float32: the arithmetic is float64 (above), but a fit publishes its parameters in the
# data's dtype, as scikit-learn does.  A covariance is about the square of the values (at
# most 5 T^2 with a Bayesian prior's mean term) and float32 ends at 3.4e38: 1e18 keeps the
# covariances below 5e36.  Above it a fit would write infinite covariances, a model file
# that cannot be loaded.
LARGEST_FLOAT32 = 1e18
# Values up to these fit as well as any: the kernels centre each row on the means, and
# float64 data from 1e6 to 1e139 fit in every covariance type.  The limits are checked
# where NaN and inf are: on every checked read of a chunk, and on the chunk of an
# unchecked E-step whose result is not finite (``fastvi.engine.backend.check_result``).


def check_values(chunk, label, first_row, index=None, allow_nan=False):
    """Raise the error that names the first row of ``chunk`` holding NaN or infinity, or
    a value beyond the limit of its dtype (``LARGEST_FLOAT64``, ``LARGEST_FLOAT32``).

    ``first_row``: the index of the chunk's first row in the data; ``index``: the rows'
    indices instead, for rows that are not consecutive (a sample).  A good chunk costs a
    min and a max (NaN propagates through both; a few times cheaper than ``np.isfinite``);
    the rows are scanned only to name a bad one.  ``allow_nan``: NaN is a missing entry
    (``missing="marginalize"``), not an error; infinity still is.
    """
    if chunk.size == 0:
        return
    limit = LARGEST_FLOAT32 if chunk.dtype == np.float32 else LARGEST_FLOAT64
    if allow_nan:       # fmin/fmax skip NaN (NaN only if every entry is)
        low, high = np.fmin.reduce(chunk, axis=None), np.fmax.reduce(chunk, axis=None)
        if np.isnan(low) or (-limit <= low and high <= limit):
            return
    elif -limit <= chunk.min() and chunk.max() <= limit:
        return
    fine = np.abs(chunk) <= limit                          # NaN compares False: bad too
    if allow_nan:
        fine |= np.isnan(chunk)
    bad = ~fine.all(axis=1)
    first = int(np.argmax(bad))
    row = first_row + first if index is None else int(index[first])
    values = chunk[first]
    if allow_nan:                   # the row's NaN are missing entries, not the fault
        values = values[~np.isnan(values)]
    if allow_nan and np.isinf(values).any():
        raise ValueError(f"{label} contains infinity (first at row {row}); missing "
                         "entries are NaN")
    if not np.isfinite(values).all():
        raise ValueError(f"{label} contains NaN or infinity (first at row {row}); if NaN "
                         "marks missing entries, fit with missing='marginalize' (fastvi fit "
                         "--missing marginalize)")
    peak = float(np.abs(values).max())
    if chunk.dtype == np.float32:
        why, advice = "a fit's float32 covariances overflow", " or store it as float64"
    else:
        why, advice = "sums of their squares overflow", ""
    raise ValueError(
        f"{label} has values too large for fastvi: {peak:.3g} at row {row} is the first "
        f"beyond {limit:g}, the most it takes in {chunk.dtype} data ({why}); rescale the "
        f"data (e.g. divide it by {10.0 ** np.floor(np.log10(peak)):g}, or standardise "
        f"each feature){advice}")
