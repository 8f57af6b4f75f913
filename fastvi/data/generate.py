"""Generated Gaussian mixtures with known parameters, in memory or streamed to HDF5.

The rows are generated in fixed blocks of ``BLOCK_ROWS``, each from its own random stream
(``SeedSequence(seed, spawn_key=(1, block))``), so for a given seed the data are the same
whether they are made in memory by ``make_mixture`` or written to a file by
``write_mixture_h5`` with any ``chunk_rows``, and a file of any length is written with the
memory of one block.

The mixture's parameters come from ``random_state`` alone; ``sample_seed`` (default: the
rows of ``random_state`` itself) draws other rows from the same mixture, for example a
held-out file: ``SeedSequence([seed, sample_seed], spawn_key=(2, block))``.
"""
import os

import numpy as np

from .atomic import atomic_h5
from .memory import SizeError, array_bytes, check_memory, format_bytes, shape_text
from .sources import ChunkSource, _check_chunk_rows

__all__ = ["GeneratedSource", "make_mixture", "mixture_parameters", "write_mixture_h5"]

BLOCK_ROWS = 65536
# the root attribute "generator" of the files write_mixture_h5 writes: how make-data and
# demo --out know a file they may replace (fastvi.cli.paths)
GENERATOR = "fastvi.datasets.write_mixture_h5"
_LARGEST_FILE = 2 ** 63         # bytes: the offsets of NumPy, h5py and the OS are int64
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# Eigenvalues (variances) of every covariance lie in this range: condition number <= 4,
# and the largest standard deviation is 1, so distances between means are in units of it.
_VARIANCE_RANGE = (0.25, 1.0)


def _seed_entropy(random_state):
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, (int, np.integer)) and random_state >= 0:
        return int(random_state)
    raise ValueError(f"random_state must be a non-negative int or None, got {random_state!r}")


def _check_args(n_samples, n_features, n_components, separation, covariance_type, dtype):
    for name, value in (("n_samples", n_samples), ("n_features", n_features),
                        ("n_components", n_components)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not (separation >= 0 and np.isfinite(separation)):
        raise ValueError(f"separation (--separation) must be a finite number >= 0, got "
                         f"{separation!r}")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                         f"got {covariance_type!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _truth_needs(n_features, n_components, covariance_type):
    """(bytes, parameter, purpose) of the true parameters' arrays, one covariance's first
    (a covariance too large on its own is the features' fault, not the components').

    Covariances are held with their factors (Cholesky factors or standard deviations),
    and a full or tied one is drawn from a QR decomposition (three more D x D arrays);
    the means are placed with a distance check that holds another K x D array.
    """
    square = (n_features, n_features)
    if covariance_type in ("full", "tied"):
        yield (5 * array_bytes(square), f"n_features (--n-features) {n_features}",
               f"one {covariance_type} covariance, its Cholesky factor and its QR draw "
               f"(5 x {shape_text(square)})")
    means = (n_components, n_features)
    covariances = {"full": (n_components, *square), "tied": square,
                   "diag": means}.get(covariance_type, (n_components,))
    yield (2 * array_bytes(means) + 2 * array_bytes(covariances),
           f"n_components (--n-components) {n_components} with n_features (--n-features) "
           f"{n_features}",
           f"the components' means and {covariance_type} covariances with their factors "
           f"(2 x {shape_text(means)} and 2 x {shape_text(covariances)})")


def _rows_needs(n_samples, n_features, dtype, in_memory, chunk_rows=None):
    """(bytes, parameter, purpose) of the generated rows: all of them (``make_mixture``),
    or a block of ``BLOCK_ROWS`` (its float64 draws and their transforms) and the HDF5
    chunk being written (``write_mixture_h5``)."""
    if in_memory:
        rows = (n_samples, n_features)
        yield (array_bytes(rows, dtype) + array_bytes((n_samples,), np.int32),
               f"n_samples {n_samples}", f"the rows and labels ({shape_text(rows, dtype)})")
        return
    block = (min(BLOCK_ROWS, n_samples), n_features)
    yield (4 * array_bytes(block), f"n_features (--n-features) {n_features}",
           f"a block of generated rows (4 x {shape_text(block)})")
    chunk = (min(chunk_rows, n_samples), n_features)
    yield (array_bytes(chunk, dtype), f"chunk_rows (--chunk-rows) {chunk_rows}",
           f"the HDF5 chunk being written ({shape_text(chunk, dtype)})")


def _check_sizes(needs):
    """Refuse (SizeError) the first need beyond this machine's memory."""
    for n_bytes, what, purpose in needs:
        check_memory(n_bytes, what, purpose)


def _random_covariance(rng, n_features):
    """A random SPD matrix with eigenvalues in ``_VARIANCE_RANGE`` and random axes."""
    q, r = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    q *= np.sign(np.diag(r))                        # a uniformly random rotation
    eigenvalues = rng.uniform(*_VARIANCE_RANGE, size=n_features)
    cov = (q * eigenvalues) @ q.T
    return 0.5 * (cov + cov.T)


def _separated_means(rng, n_components, n_features, separation):
    """Means whose pairwise distances are all at least ``separation``.

    Candidates come from an isotropic Gaussian whose typical pairwise distance is about
    1.3 * separation (in high dimension distances concentrate, so most are accepted); the
    spread grows a little after each run of rejections, which keeps low dimensions finite.
    """
    scale = 1.3 * separation / np.sqrt(2.0 * n_features)
    means = np.empty((n_components, n_features))
    count, rejected = 0, 0
    while count < n_components:
        candidate = rng.standard_normal(n_features) * scale
        if count == 0 or np.min(np.linalg.norm(means[:count] - candidate, axis=1)) >= separation:
            means[count] = candidate
            count += 1
        else:
            rejected += 1
            if rejected % 20 == 0:
                scale *= 1.1
    return means


def mixture_parameters(n_features, n_components, separation=4.0, covariance_type="full",
                       random_state=0):
    """The true parameters drawn for a seed (the first step of ``make_mixture``).

    Returns
    -------
    dict
        ``weights`` (K,) from Dirichlet(5, ..., 5); ``means`` (K, D) pairwise at least
        ``separation`` apart; ``covariances`` in scikit-learn's layout for
        ``covariance_type``, with variances in [0.25, 1] along random axes (so the means
        are at least ``separation`` standard deviations apart in every direction);
        ``covariance_type``.

    Raises
    ------
    SizeError
        When the parameters' arrays cannot fit in this machine's memory.
    """
    _check_sizes(_truth_needs(n_features, n_components, covariance_type))
    entropy = _seed_entropy(random_state)
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(0,)))
    weights = rng.dirichlet(np.full(n_components, 5.0))
    with np.errstate(over="ignore", invalid="ignore"):
        means = _separated_means(rng, n_components, n_features, separation)
    if covariance_type == "full":
        cov = np.stack([_random_covariance(rng, n_features) for _ in range(n_components)])
    elif covariance_type == "tied":
        cov = _random_covariance(rng, n_features)
    elif covariance_type == "diag":
        cov = rng.uniform(*_VARIANCE_RANGE, size=(n_components, n_features))
    else:
        cov = rng.uniform(*_VARIANCE_RANGE, size=n_components)
    return {"weights": weights, "means": means, "covariances": cov,
            "covariance_type": covariance_type}


def _check_means(truth, separation, dtype):
    """Refuse a separation so large that the means (or the rows around them) are not
    finite in ``dtype``: such a file would hold inf, and fits of it NaN."""
    means = truth["means"]
    if not (np.isfinite(means).all() and np.abs(means).max() < np.finfo(dtype).max / 2):
        raise ValueError(f"separation (--separation) {separation!r} is too large: the means "
                         f"overflow {np.dtype(dtype).name}")


def _factors(truth):
    """Lower Cholesky factor L_k (cov_k = L_k L_k^T) or standard deviations per component."""
    cov, kind = truth["covariances"], truth["covariance_type"]
    n_components = truth["means"].shape[0]
    if kind == "full":
        return [np.linalg.cholesky(c) for c in cov]
    if kind == "tied":
        return [np.linalg.cholesky(cov)] * n_components
    return list(np.sqrt(cov))


def _row_stream(entropy, sample_seed):
    """(entropy, first spawn key) of the rows' random streams."""
    if sample_seed is None:
        return entropy, 1
    if not isinstance(sample_seed, (int, np.integer)) or sample_seed < 0:
        raise ValueError(f"sample_seed must be a non-negative int or None, got {sample_seed!r}")
    return [entropy, int(sample_seed)], 2


def _block(truth, factors, stream, block, n_rows, dtype):
    """Rows and labels of generator block ``block`` (its own random stream)."""
    entropy, key = stream
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(key, block)))
    means = truth["means"]
    labels = rng.choice(means.shape[0], size=n_rows, p=truth["weights"]).astype(np.int32)
    noise = rng.standard_normal((n_rows, means.shape[1]))
    X = np.empty((n_rows, means.shape[1]), dtype=dtype)
    for k, factor in enumerate(factors):
        rows = labels == k
        z = noise[rows]
        X[rows] = means[k] + (z @ factor.T if np.ndim(factor) == 2 else z * factor)
    return X, labels


def _blocks(n_samples, truth, stream, dtype):
    factors = _factors(truth)
    for block, start in enumerate(range(0, n_samples, BLOCK_ROWS)):
        n_rows = min(BLOCK_ROWS, n_samples - start)
        yield start, _block(truth, factors, stream, block, n_rows, dtype)


def make_mixture(n_samples=1_000_000, n_features=16, n_components=16, *, separation=4.0,
                 covariance_type="full", dtype="float32", random_state=0, sample_seed=None):
    """Rows drawn from a Gaussian mixture with known, random parameters.

    Parameters
    ----------
    n_samples, n_features, n_components : int
    separation : float, default 4.0
        Every two means are at least this many (largest) standard deviations apart.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
        The structure of the true covariances.
    dtype : {'float32', 'float64'}, default 'float32'
    random_state : int or None, default 0
        The seed; the same seed gives the same parameters and rows.
    sample_seed : int or None, default None
        A seed of the rows alone: another ``sample_seed`` gives other rows from the same
        mixture (same ``truth``), such as a held-out set.  None: the rows of
        ``random_state``.

    Returns
    -------
    X : ndarray (n_samples, n_features)
    labels : ndarray (n_samples,) of int32
        The component that generated each row.
    truth : dict
        ``weights``, ``means``, ``covariances``, ``covariance_type`` (see
        ``mixture_parameters``) and ``seed``.

    Raises
    ------
    SizeError
        When the rows or the parameters cannot fit in this machine's memory (the error
        names the size to lower).
    """
    dtype = _check_args(n_samples, n_features, n_components, separation, covariance_type,
                        dtype)
    _check_sizes([*_truth_needs(n_features, n_components, covariance_type),
                  *_rows_needs(n_samples, n_features, dtype, in_memory=True)])
    entropy = _seed_entropy(random_state)
    truth = mixture_parameters(n_features, n_components, separation, covariance_type, entropy)
    _check_means(truth, separation, dtype)
    stream = _row_stream(entropy, sample_seed)
    X = np.empty((n_samples, n_features), dtype=dtype)
    labels = np.empty(n_samples, dtype=np.int32)
    for start, (rows, block_labels) in _blocks(n_samples, truth, stream, dtype):
        X[start:start + rows.shape[0]] = rows
        labels[start:start + rows.shape[0]] = block_labels
    truth["seed"] = entropy
    return X, labels, truth


def write_mixture_h5(path, n_samples=1_000_000, n_features=16, n_components=16, *,
                     separation=4.0, covariance_type="full", dtype="float32", random_state=0,
                     sample_seed=None, chunk_rows=65536, progress=False, missing_rate=0.0):
    """Generate a mixture like ``make_mixture`` and write it to HDF5, one block at a time.

    Memory stays at one block of rows whatever ``n_samples`` is.  The file holds
    ``/X`` (n_samples, n_features) chunked by ``chunk_rows`` rows, ``/labels`` (int32) and
    the group ``/truth`` (``weights``, ``means``, ``covariances``); root attributes record
    the generator, its arguments and the seed.  It is written under a temporary name and
    renamed, so ``path`` is either the complete file or untouched.

    Parameters
    ----------
    path : str or os.PathLike
    n_samples, n_features, n_components, separation, covariance_type, dtype, random_state, \
sample_seed
        As ``make_mixture``; the rows equal those of ``make_mixture`` for the same seeds.
    chunk_rows : int, default 65536
        Rows per HDF5 chunk of ``/X`` and ``/labels``.
    progress : bool, default False
        Show a tqdm progress bar on stderr.
    missing_rate : float in [0, 1), default 0
        Each entry of ``/X`` is NaN with this probability, independently (missing
        completely at random; its own stream of the seed), for ``missing="marginalize"``.

    Returns
    -------
    dict
        The ``truth`` of ``make_mixture``.

    Raises
    ------
    SizeError
        When the parameters, a block of rows or an HDF5 chunk cannot fit in this
        machine's memory, or the rows in a file.
    """
    from tqdm import tqdm
    from .. import __version__
    dtype = _check_args(n_samples, n_features, n_components, separation, covariance_type,
                        dtype)
    if not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if not (isinstance(missing_rate, (int, float)) and 0.0 <= missing_rate < 1.0):
        raise ValueError(f"missing_rate (--missing-rate) must be in [0, 1), "
                         f"got {missing_rate!r}")
    _check_sizes([*_truth_needs(n_features, n_components, covariance_type),
                  *_rows_needs(n_samples, n_features, dtype, in_memory=False,
                               chunk_rows=chunk_rows)])
    if array_bytes((n_samples, n_features), dtype) >= _LARGEST_FILE:
        # not a memory need (the rows are written a block at a time) but beyond what
        # NumPy and h5py address: an internal TypeError otherwise
        raise SizeError(f"n_samples (--n-samples) {n_samples} x {n_features} features "
                        f"({dtype.name}) is more data than a file can hold "
                        f"({format_bytes(_LARGEST_FILE)})")
    entropy = _seed_entropy(random_state)
    truth = mixture_parameters(n_features, n_components, separation, covariance_type, entropy)
    _check_means(truth, separation, dtype)
    stream = _row_stream(entropy, sample_seed)
    chunk_rows = min(chunk_rows, n_samples)
    with atomic_h5(path, "the data file") as f:
        f.attrs.update({"generator": GENERATOR,
                        "fastvi_version": __version__, "seed": str(entropy),
                        "n_samples": n_samples, "n_features": n_features,
                        "n_components": n_components, "separation": float(separation),
                        "covariance_type": covariance_type, "dtype": dtype.name})
        if sample_seed is not None:
            f.attrs["sample_seed"] = str(int(sample_seed))
        holes = None
        if missing_rate > 0:
            f.attrs["missing_rate"] = float(missing_rate)
            holes = np.random.default_rng(np.random.SeedSequence(
                [int(entropy), 0 if sample_seed is None else int(sample_seed) + 1, 29]))
        X = f.create_dataset("X", (n_samples, n_features), dtype=dtype,
                             chunks=(chunk_rows, n_features))
        labels = f.create_dataset("labels", (n_samples,), dtype=np.int32,
                                  chunks=(chunk_rows,))
        group = f.create_group("truth")
        for key in ("weights", "means", "covariances"):
            group.create_dataset(key, data=truth[key])
        group.attrs["covariance_type"] = covariance_type
        with tqdm(total=n_samples, unit="rows", unit_scale=True, disable=not progress,
                  desc=os.path.basename(os.fspath(path))) as bar:
            for start, (rows, block_labels) in _blocks(n_samples, truth, stream, dtype):
                if holes is not None:       # one stream: the same holes for any block size
                    rows[holes.random(rows.shape) < missing_rate] = np.nan
                X[start:start + rows.shape[0]] = rows
                labels[start:start + rows.shape[0]] = block_labels
                bar.update(rows.shape[0])
    truth["seed"] = entropy
    return truth


class _GeneratedReader:
    """Rows of a mixture made on demand from the generator blocks that hold them (each
    block of ``block_rows`` its own stream, as ``make_mixture`` makes its blocks of
    ``BLOCK_ROWS``): picklable and small, so a Dask worker makes its chunks itself."""

    def __init__(self, truth, stream, n_rows, dtype, block_rows):
        self.truth, self.stream, self.n_rows, self.dtype = truth, stream, n_rows, dtype
        self.block_rows = block_rows

    def read(self, start, stop):
        factors, size = _factors(self.truth), self.block_rows
        first, last = start // size, (stop - 1) // size
        parts = [_block(self.truth, factors, self.stream, block,
                        min(size, self.n_rows - block * size), self.dtype)[0]
                 for block in range(first, last + 1)]
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return rows[start - first * size:stop - first * size]


class GeneratedSource(ChunkSource):
    """A chunk source of the rows of ``make_mixture`` (the same seeds, the same rows;
    or, with ``block_rows``, rows drawn alike in other blocks), made when read, never
    stored: data of any size with a known truth (``truth``), for
    tests and rehearsals at scale.  On a Dask cluster each worker makes the chunks it
    reads (``read_on_workers``), so no row crosses the network.

    Parameters
    ----------
    n_samples, n_features, n_components, separation, covariance_type, dtype, \
random_state, sample_seed
        As ``make_mixture``.
    chunk_rows : int, default 65536
        Rows per chunk.
    block_rows : int or None, default None
        Rows of each generator block, each from its own stream (seed, block index).
        None: 65,536, the blocks of ``make_mixture``, whose rows these then are; a chunk
        is made from the blocks it overlaps, so ``chunk_rows`` a multiple of the blocks
        makes each once a pass.  ``block_rows=chunk_rows``: each chunk made from (seed,
        chunk index) alone.
    """

    read_on_workers = True

    def __init__(self, n_samples=1_000_000, n_features=16, n_components=16, *,
                 separation=4.0, covariance_type="full", dtype="float32", random_state=0,
                 sample_seed=None, chunk_rows=65536, block_rows=None):
        dtype = _check_args(n_samples, n_features, n_components, separation,
                            covariance_type, dtype)
        entropy = _seed_entropy(random_state)
        self.truth = mixture_parameters(n_features, n_components, separation,
                                        covariance_type, entropy)
        _check_means(self.truth, separation, dtype)
        self.truth["seed"] = entropy
        self.n_rows, self.n_features = int(n_samples), int(n_features)
        self.dtype, self.chunk_rows = np.dtype(dtype), _check_chunk_rows(chunk_rows)
        self.label = f"generated mixture ({n_samples} x {n_features}, seed {random_state})"
        block_rows = BLOCK_ROWS if block_rows is None else _check_chunk_rows(block_rows)
        self._reader = _GeneratedReader(self.truth, _row_stream(entropy, sample_seed),
                                        self.n_rows, self.dtype, block_rows)

    def _read(self, start, stop):
        return self._reader.read(start, stop)

    def remote_reader(self):
        return self._reader
