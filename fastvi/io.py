"""Reading data sets and saving / loading fitted models.

(Over 600 lines: issue 12 separates opening data from the model-file schema.)

Data
----
``open_data(spec)`` opens the rows a model is fitted to or applied on, without reading
them: ``spec`` is

* ``rows.npy``: a NumPy file, memory-mapped (``np.load(..., mmap_mode="r")``);
* ``file.h5:/group/dataset``: one dataset of an HDF5 file, read chunk by chunk later;
* ``file.h5``: its ``/X`` dataset, or else its only 2-D dataset.

``open_source(spec, chunk_rows)`` opens the same specs, with the same checks and errors,
as a chunk source of ``fastvi.sources`` (``HDF5Source``: reads aligned to the HDF5
chunking and read ahead in a thread; ``ArraySource`` on a .npy memory map), which the
estimators stream from; ``open_sources(specs)`` reads several as one data set
(``ConcatSource``), and ``resolve_spec`` gives the absolute, explicit form of a spec that
a checkpoint stores to reopen the data.

Model files (format_version 1)
------------------------------
A model is one HDF5 file.  Root attributes:

==================  ==========================================================
``format``          ``"fastvi-model"``
``format_version``  ``1``; a reader refuses files with a newer version
``fastvi_version``  the ``fastvi.__version__`` that wrote the file
``class``           ``"GaussianMixture"`` or ``"BayesianGaussianMixture"``
``params``          JSON object of the constructor arguments (read from the
                    signature of ``__init__``).  Array-valued arguments that are
                    set (``means_init``, ``mean_prior``, ...) are stored as
                    datasets ``/param_arrays/<name>`` instead, and unset
                    ``*_init`` arrays are left out; a ``random_state`` that is
                    not an int or None is stored as null.
==================  ==========================================================

Datasets at the root, float64 unless said otherwise, with scikit-learn's shapes
(``covariances_`` is (K, D, D), (D, D), (K, D) or (K,) by ``covariance_type``):

* both classes: ``weights_`` (K,), ``means_`` (K, D), ``covariances_``,
  ``precisions_cholesky_`` (like ``covariances_``), and scalars ``converged_`` (bool),
  ``n_iter_`` (int64), ``lower_bound_``, ``n_features_in_`` (int64);
* ``BayesianGaussianMixture`` also: ``mean_precision_`` (K,), ``degrees_of_freedom_``
  (K,), ``weight_concentration_`` (a (K,) dataset for a Dirichlet distribution, or a
  group holding datasets ``0`` and ``1``, the two (K,) Beta parameters of the
  stick-breaking weights, for a Dirichlet process), and the prior actually used:
  ``weight_concentration_prior_``, ``mean_precision_prior_``,
  ``degrees_of_freedom_prior_`` (scalars), ``mean_prior_`` (D,), ``covariance_prior_``
  ((D, D), (D,) or a scalar).

Every array is stored bit for bit, so a loaded model predicts and scores exactly as the
saved one did.  Files are written to a temporary name in the target directory and renamed
into place, so a reader never sees half a file.
"""
import inspect
import io
import json
import numbers
import os
import secrets
import warnings
from contextlib import contextmanager

import h5py
import numpy as np

from .sources import check_shape

FORMAT = "fastvi-model"
FORMAT_VERSION = 1

_COMMON_FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_")
_SCALARS = {"converged_": bool, "n_iter_": int, "lower_bound_": float,
            "n_features_in_": int}
_BAYES_ARRAYS = ("mean_precision_", "degrees_of_freedom_", "mean_prior_",
                 "covariance_prior_")
_BAYES_FLOATS = ("weight_concentration_prior_", "mean_precision_prior_",
                 "degrees_of_freedom_prior_")


# ----------------------------------------------------------------------------- atomic writes

def _umask():
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid):
    """Whether process ``pid`` exists (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False                    # not a pid at all
    return True


_TEMP_SUFFIX = ".tmp"


def _temp_prefix(path):
    return "." + os.path.basename(path) + "."


def remove_stale_temps(path):
    """Remove the temporary files that killed writers of ``path`` left beside it.

    ``atomic_path`` names its temporary ``.NAME.<pid>.<random>.tmp``; one whose process
    no longer runs was left by a writer that was killed (SIGKILL, a crash, a power cut)
    before it could remove it.  Those of live processes are never touched, nor are
    files of any other form.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name whose leftovers to remove.

    Returns
    -------
    list of str
        The paths removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TEMP_SUFFIX)):
            continue
        pid, _, token = name[len(prefix):-len(_TEMP_SUFFIX)].partition(".")
        if not (pid.isdigit() and token) or _pid_alive(int(pid)):
            continue
        stale = os.path.join(directory, name)
        try:
            os.remove(stale)
        except FileNotFoundError:
            continue                    # another job cleaned it up first
        except OSError:
            continue                    # not ours to remove (permissions): leave it
        removed.append(stale)
    return removed



def _make_temp(path, directory):
    """Create ``.NAME.<pid>.<random>.tmp`` in ``directory`` (mode 0600); its path."""
    prefix = _temp_prefix(path) + f"{os.getpid()}."
    while True:
        tmp = os.path.join(directory, prefix + secrets.token_hex(4) + _TEMP_SUFFIX)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_path(path, mode=None):
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary file lives in the same directory so that ``os.replace`` is an atomic
    rename on the same file system; on any error it is removed and ``path`` is untouched
    (``path`` itself is never opened, so it is never left truncated).  The temporary is
    named ``.NAME.<pid>.<random>.tmp``: on entry, those of earlier writers of ``path``
    whose process is gone (killed before they could clean up) are removed, while a live
    process's temporary is left alone.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name.
    mode : int, optional
        The permission bits of the renamed file.  Default ``0o666 & ~umask``, as a file
        made by ``open`` would get.  The temporary file is private (0600) until it is
        renamed, so ``mode=0o600`` (checkpoints) is private at every moment.

    Yields
    ------
    str
        A fresh, empty file name to write to.

    Raises
    ------
    FileNotFoundError
        The directory of ``path`` does not exist.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    remove_stale_temps(path)
    tmp = _make_temp(path, directory)
    try:
        yield tmp
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        # BaseException: a Ctrl-C in the middle of a long write must not leave the file.
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


class OutputError(OSError):
    """An output could not be written (full disk, read-only file system, a directory in
    the way, ...).  The message names the output (``cannot write the model 'm.h5': No
    space left on device``), never a temporary file; ``errno`` is the system's."""


def output_error(what, path, exc):
    """An ``OutputError`` for ``exc`` (an OSError) raised while writing ``what path``."""
    if isinstance(exc, OutputError):
        return exc
    reason = getattr(exc, "strerror", None) or str(exc)
    error = OutputError(f"cannot write {what} {os.fspath(path)!r}: {reason}")
    error.errno = getattr(exc, "errno", None)
    return error


def _output_directory(path, what):
    """The directory of ``path``, which must exist (an OutputError says so otherwise)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {what} {os.fspath(path)!r}: directory "
                          f"{directory!r} does not exist")
    return directory


def check_writable(path, what):
    """Fail now, not after hours of work, if ``path`` cannot be written atomically.

    Creates and removes a temporary file in the directory of ``path`` (as ``atomic_path``
    will), so a read-only file system, a directory without write permission, a missing
    directory or a directory at ``path`` are all found before the work starts.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    what : str
        How messages name it (``"the model"``, ``"the predict output"``, ...).

    Raises
    ------
    OutputError
        With a message naming ``what`` and ``path`` and what is wrong.
    """
    path = os.fspath(path)
    directory = _output_directory(path, what)
    if os.path.isdir(path):
        raise OutputError(f"cannot write {what} {path!r}: it is a directory")
    try:
        os.remove(_make_temp(path, directory))
    except OSError as exc:
        raise output_error(what, path, exc) from None


class _WriteGuard(io.RawIOBase):
    """The file object an HDF5 file is written through (h5py's ``fileobj`` driver).

    HDF5 2.0 cannot recover from a write that fails while it closes a file: the close
    fails, the file stays half-closed, and the next attempt to close it (h5py's
    ``ObjectID.__dealloc__`` at garbage collection, or the library's shutdown) crashes the
    interpreter with a segmentation fault.  So the first failed write is kept in
    ``error``; while ``strict`` it is raised (the writing code stops at once), and every
    later write is discarded as if it had succeeded, so that closing always succeeds and
    the temporary file can be removed.
    """

    def __init__(self, path):
        super().__init__()
        self._file = open(path, "r+b", buffering=0)
        self.error = None
        self.strict = True

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=os.SEEK_SET):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def readinto(self, buffer):
        return self._file.readinto(buffer)

    def write(self, data):
        if self.error is None:
            try:
                return self._file.write(data)
            except OSError as exc:
                self.error = exc
        if self.strict:
            raise OSError(self.error.errno, self.error.strerror)
        return len(data)

    def truncate(self, size=None):
        if self.error is None:
            try:
                return self._file.truncate(size)
            except OSError as exc:
                self.error = exc
        return size

    def sync(self):
        """fsync: the file is on disk before it is renamed into place."""
        if self.error is None:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                self.error = exc

    def close(self):
        super().close()
        self._file.close()


@contextmanager
def atomic_h5(path, what, mode=None, **kwargs):
    """Write an HDF5 file atomically: yield it open for writing, rename it into place.

    ``atomic_path`` for an HDF5 file, safe on a full disk: a failed write (no space left,
    a file size limit, an I/O error) ends in one ``OutputError`` naming ``what`` and
    ``path``, the temporary file is closed and removed, and ``path`` is untouched.  Errors
    of the block itself (a bad input chunk, Ctrl-C) propagate unchanged.

    Parameters
    ----------
    path : str or os.PathLike
        The final file name.
    what : str
        How error messages name the file (``"the model"``, ``"the checkpoint"``).
    mode : int, optional
        Permission bits of the file, as ``atomic_path`` (default ``0o666 & ~umask``).
    **kwargs
        More arguments of ``h5py.File`` (``libver``, ...).

    Yields
    ------
    h5py.File
        Open in mode ``"w"``; it is closed when the block ends.

    Raises
    ------
    OutputError
        The file could not be written.
    """
    _output_directory(path, what)
    block_error = None
    try:
        with atomic_path(path, mode) as tmp:
            guard = _WriteGuard(tmp)
            try:
                h5 = h5py.File(guard, "w", **kwargs)
            except BaseException:
                guard.close()
                raise
            try:
                yield h5
            except BaseException as exc:
                guard.strict = False    # from here every write is discarded: close succeeds
                h5.close()
                guard.close()
                if guard.error is not None:
                    raise output_error(what, path, guard.error) from None
                block_error = exc
                raise
            guard.strict = False
            h5.close()                  # flushes the metadata and the cached chunks
            guard.sync()
            guard.close()
            if guard.error is not None:
                raise output_error(what, path, guard.error) from None
    except OSError as exc:
        # The block's own errors (a bad input chunk) are not the output's.
        if exc is block_error or isinstance(exc, OutputError):
            raise
        # Making, renaming or setting the mode of the file failed.
        raise output_error(what, path, exc) from None


# ----------------------------------------------------------------------------- data

class DataSource:
    """An opened data set: ``array`` (ndarray memmap or h5py.Dataset) and what it is.

    Use it as a context manager; entering it returns ``array``, leaving it closes the file.

    Attributes
    ----------
    array : numpy.memmap or h5py.Dataset
        The (n_samples, n_features) rows, not read yet.
    path : str
        The file.
    dataset : str or None
        The HDF5 dataset name (None for .npy).
    label : str
        How error messages name the data, e.g. ``'data.h5:/X'``.
    """

    def __init__(self, array, path, dataset, h5file=None):
        self.array = array
        self.path = path
        self.dataset = dataset
        self._h5file = h5file
        self.label = path if dataset is None else f"{path}:{dataset}"

    def close(self):
        """Close the HDF5 file (a memmap is released when it is garbage-collected)."""
        if self._h5file is not None:
            self._h5file.close()
            self._h5file = None

    def __enter__(self):
        return self.array

    def __exit__(self, *exc):
        self.close()
        return False


def split_spec(spec):
    """``'file.h5:/dset'`` -> ``('file.h5', '/dset')``; a path that exists is taken whole.

    Parameters
    ----------
    spec : str or os.PathLike

    Returns
    -------
    path : str
    dataset : str or None
    """
    spec = os.fspath(spec)
    if os.path.exists(spec) or ":" not in spec:
        return spec, None
    path, dataset = spec.rsplit(":", 1)
    return path, dataset or None


def _is_npy(path):
    if path.lower().endswith(".npy"):
        return True
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def open_h5(path, mode="r"):
    """``h5py.File(path, mode)`` with errors that name the file.

    Parameters
    ----------
    path : str
    mode : str, default "r"

    Returns
    -------
    h5py.File

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not an HDF5 file.
    OSError
        If the file is an HDF5 file that cannot be read (truncated, corrupt, permissions).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path!r} is not an HDF5 file (or it is corrupt)")
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise OSError(f"cannot read HDF5 file {path!r}: {exc}") from None


def list_datasets(h5file):
    """Names of all datasets in an open HDF5 file, as ``['/X', '/truth/means', ...]``."""
    names = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            names.append("/" + name)

    h5file.visititems(visit)
    return names


def _open_npy(path, dataset):
    if dataset is not None:
        raise ValueError(f"{path!r} is a .npy file; it has no dataset {dataset!r}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        # np.load refuses object arrays and garbled headers with ValueError.
        raise ValueError(f"cannot read {path!r} as a .npy file: {exc}") from None
    return DataSource(array, path, None)


def _pick_dataset(h5file, path):
    """The default dataset of a file: ``/X``, or else its only 2-D dataset."""
    if isinstance(h5file.get("X"), h5py.Dataset):
        return "/X"
    names = list_datasets(h5file)
    two_d = [name for name in names if len(h5file[name].shape) == 2]
    if len(two_d) == 1:
        return two_d[0]
    listing = ", ".join(names) if names else "none"
    raise KeyError(f"{path!r} has no dataset /X and {len(two_d)} 2-D datasets; name one "
                   f"as {path}:/DATASET (datasets: {listing})")


def open_data(spec):
    """Open rows for fitting or prediction without reading them.

    Parameters
    ----------
    spec : str or os.PathLike
        ``file.npy``, ``file.h5:/dataset`` or ``file.h5`` (its ``/X``, or its only 2-D
        dataset).

    Returns
    -------
    DataSource
        A context manager: ``with open_data(spec) as X: ...`` gives the array or
        h5py dataset and closes the file afterwards.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    KeyError
        The dataset does not exist (the message lists those that do).
    ValueError
        Not a .npy or HDF5 file, not 2-D, not real-valued (integer and bool data are
        refused), or empty.
    OSError
        An HDF5 file that cannot be read.
    """
    path, dataset = split_spec(spec)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"data {path!r} is a directory, not a file")
    if _is_npy(path):
        source = _open_npy(path, dataset)
    else:
        h5file = open_h5(path)
        try:
            if dataset is None:
                dataset = _pick_dataset(h5file, path)
            elif not dataset.startswith("/"):
                dataset = "/" + dataset
            obj = h5file.get(dataset)
            if not isinstance(obj, h5py.Dataset):
                what = "is a group, not a dataset" if obj is not None else "does not exist"
                listing = ", ".join(list_datasets(h5file)) or "none"
                raise KeyError(f"dataset {dataset!r} {what} in {path!r} "
                               f"(datasets: {listing})")
            source = DataSource(obj, path, dataset, h5file)
        except BaseException:
            h5file.close()
            raise
    try:
        check_shape(tuple(source.array.shape), source.array.dtype, source.label)
        check_real_valued(source.array.dtype, source.label)
    except BaseException:
        source.close()
        raise
    return source


def check_real_valued(dtype, label):
    """Refuse integer and bool data in a file (.npy or HDF5), as ``HDF5Source`` does.

    An integer array in a file is far more often labels or counts than the features of a
    mixture; converting it silently would fit the wrong thing.  (In-memory arrays are
    converted, as scikit-learn converts them.)

    Raises
    ------
    ValueError
        Naming ``label`` and the dtype.
    """
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"{label} holds {np.dtype(dtype)} values; fastvi fits real-valued "
                         "data: store it as float32 or float64")


def resolve_spec(spec):
    """The absolute, explicit form of a data spec: ``/abs/file.h5:/X`` or ``/abs/rows.npy``.

    The file is opened (and closed) to find the default dataset of an HDF5 file, with
    ``open_data``'s errors.
    """
    with_data = open_data(spec)
    try:
        path = os.path.abspath(with_data.path)
        return path if with_data.dataset is None else f"{path}:{with_data.dataset}"
    finally:
        with_data.close()


def open_source(spec, chunk_rows=None, dtype=None):
    """Open one data spec as a chunk source (``fastvi.sources``) without reading it.

    An HDF5 dataset becomes an ``HDF5Source`` (reads aligned to its HDF5 chunking and
    prefetched in a thread), a .npy file an ``ArraySource`` on its memory map.  The checks
    and error messages are ``open_data``'s (missing file or dataset, not 2-D, not numeric,
    empty, corrupt).

    Parameters
    ----------
    spec : str or os.PathLike
        ``file.npy``, ``file.h5:/dataset`` or ``file.h5``.
    chunk_rows : int, optional
        Rows per chunk (default ``fastvi.sources.DEFAULT_CHUNK_ROWS``); an HDF5 source
        rounds it up to a multiple of the dataset's chunk rows.
    dtype : {None, 'float32', 'float64'}
        Working dtype (None: float32 stays float32, anything else becomes float64).

    Returns
    -------
    ChunkSource
        With ``label`` (``'file.h5:/X'``, as the spec named the file) and ``spec`` (the
        absolute form, see ``resolve_spec``).  Close it (or use it in a ``with`` block).
    """
    from .sources import DEFAULT_CHUNK_ROWS, ArraySource, HDF5Source
    chunk_rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    data = open_data(spec)
    label = data.label
    path = os.path.abspath(data.path)
    if data.dataset is None:
        source = ArraySource(data.array, chunk_rows=chunk_rows, dtype=dtype, label=label)
        source.spec = path
    else:
        dataset = data.dataset
        data.close()
        try:
            source = HDF5Source(data.path, dataset, chunk_rows=chunk_rows, dtype=dtype)
        except OSError as exc:
            raise OSError(f"cannot read HDF5 file {data.path!r}: {exc}") from None
        source.label = label
        source.spec = f"{path}:{dataset}"
    return source


def open_sources(specs, chunk_rows=None, dtype=None):
    """Several data specs read as one run of rows: a ``ConcatSource`` of ``open_source``
    (or that one source for a single spec).

    Raises
    ------
    ValueError
        The files have different numbers of features (the message lists them).
    """
    from .sources import ConcatSource
    specs = [specs] if isinstance(specs, (str, os.PathLike)) else list(specs)
    if not specs:
        raise ValueError("no data given")
    sources = []
    try:
        for spec in specs:
            sources.append(open_source(spec, chunk_rows, dtype))
        if len(sources) == 1:
            return sources[0]
        features = {source.n_features for source in sources}
        if len(features) > 1:
            raise ValueError("all data must have the same number of features, got "
                             + ", ".join(f"{s.label}: {s.n_features}" for s in sources))
        combined = ConcatSource(sources)
        combined.spec = [source.spec for source in sources]
        return combined
    except BaseException:
        for source in sources:
            source.close()
        raise


# ----------------------------------------------------------------------------- models

def _estimator_classes():
    # Imported here: fastvi.mixture pulls in Numba, which `fastvi info` on data never needs.
    from .mixture import BayesianGaussianMixture, GaussianMixture
    return {"GaussianMixture": GaussianMixture,
            "BayesianGaussianMixture": BayesianGaussianMixture}


def _json_value(value):
    """A JSON-able form of a scalar constructor argument, or raise TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (type, np.dtype)):
        return np.dtype(value).name              # dtype=np.float32 -> "float32"
    raise TypeError(type(value).__name__)


def get_params(estimator):
    """Constructor arguments of ``estimator``, from the signature of its ``__init__``.

    Returns
    -------
    params : dict
        JSON-able values by name (arrays, and ``*_init`` arguments that are None,
        excluded).
    arrays : dict
        Array-valued arguments that are set (None ones are left out).
    """
    params, arrays = {}, {}
    signature = inspect.signature(type(estimator).__init__)
    for name, parameter in signature.parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL,
                                                parameter.VAR_KEYWORD):
            continue
        value = getattr(estimator, name, parameter.default)
        if value is None and name.endswith("_init"):
            continue            # unset initial arrays: the constructor's default restores them
        if isinstance(value, (np.ndarray, list, tuple)):
            arrays[name] = np.asarray(value)
            continue
        try:
            params[name] = _json_value(value)
        except TypeError:
            # A Generator as random_state cannot be stored; it only matters for refitting.
            params[name] = None
    return params, arrays


def _check_fitted(estimator):
    if not hasattr(estimator, "means_"):
        raise ValueError(f"cannot save an unfitted {type(estimator).__name__}; call fit first")


def save_model(path, estimator):
    """Write a fitted estimator to an HDF5 model file (schema in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The model file; replaced atomically if it exists.
    estimator : GaussianMixture or BayesianGaussianMixture
        A fitted estimator.
    """
    from . import __version__
    name = type(estimator).__name__
    if name not in _estimator_classes():
        raise TypeError(f"save_model takes a fastvi GaussianMixture or "
                        f"BayesianGaussianMixture, got {name}")
    _check_fitted(estimator)
    params, arrays = get_params(estimator)
    with atomic_h5(path, "the model") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["fastvi_version"] = __version__
        f.attrs["class"] = name
        f.attrs["params"] = json.dumps(params, sort_keys=True)
        for key, value in arrays.items():
            f.create_dataset(f"param_arrays/{key}", data=value)
        for key in _COMMON_FITTED:
            f.create_dataset(key, data=np.asarray(getattr(estimator, key)))
        for key, kind in _SCALARS.items():
            f.create_dataset(key, data=kind(getattr(estimator, key)))
        if name == "BayesianGaussianMixture":
            _save_bayes(f, estimator)


def _save_bayes(f, estimator):
    concentration = estimator.weight_concentration_
    if isinstance(concentration, tuple):
        group = f.create_group("weight_concentration_")
        for i, part in enumerate(concentration):
            group.create_dataset(str(i), data=np.asarray(part))
    else:
        f.create_dataset("weight_concentration_", data=np.asarray(concentration))
    for key in _BAYES_ARRAYS:
        f.create_dataset(key, data=np.asarray(getattr(estimator, key)))
    for key in _BAYES_FLOATS:
        f.create_dataset(key, data=float(getattr(estimator, key)))


def _attr_str(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read_header(f, path):
    """Check the root attributes of an open model file; return (class name, params).

    Raises
    ------
    ValueError
        Not a fastvi model file, a newer format version, or an unknown class.
    """
    if _attr_str(f.attrs.get("format", "")) != FORMAT:
        raise ValueError(f"{path!r} is not a fastvi model file (no format={FORMAT!r} "
                         "attribute)")
    version = f.attrs.get("format_version")
    if not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(f"{path!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path!r} has format_version {int(version)}, written by fastvi "
                         f"{_attr_str(f.attrs.get('fastvi_version', '?'))}; this fastvi "
                         f"reads format_version <= {FORMAT_VERSION}: upgrade fastvi")
    name = _attr_str(f.attrs.get("class", ""))
    if name not in _estimator_classes():
        raise ValueError(f"{path!r} holds an unknown model class {name!r}")
    try:
        params = json.loads(_attr_str(f.attrs["params"]))
    except (KeyError, ValueError):
        raise ValueError(f"{path!r} has a missing or invalid 'params' attribute") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path!r} has an invalid 'params' attribute (not a JSON object)")
    return name, params


def _read(f, key, path):
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise ValueError(f"model file {path!r}: lacks the dataset {key!r}")
    try:
        return f[key][()]
    except OSError as exc:
        raise OSError(f"model file {path!r}: cannot read {key}: {exc}") from None


def _read_scalar(f, key, path, kind):
    value = np.asarray(_read(f, key, path))
    if value.shape != () or value.dtype.kind not in "biuf":
        raise ValueError(f"model file {path!r}: {key} must be a number, got shape "
                         f"{value.shape} of {value.dtype}")
    return kind(value)


class _ModelChecker:
    """Checks of the arrays of a model file against the parameters it stores, so that a
    corrupt or hand-edited file is refused when it is loaded, naming the file and the
    dataset, rather than predicting NaN or another width's labels."""

    def __init__(self, path, n_components, n_features, covariance_type):
        self.path = path
        self.K, self.D = n_components, n_features
        self.covariance_type = covariance_type

    def _fail(self, message):
        raise ValueError(f"model file {self.path!r}: {message}")

    def covariance_shape(self):
        K, D = self.K, self.D
        return {"full": (K, D, D), "tied": (D, D), "diag": (K, D),
                "spherical": (K,)}[self.covariance_type]

    def array(self, key, value, shape, positive=False):
        """A finite floating array of ``shape`` (all > 0 if ``positive``)."""
        value = np.asarray(value)
        if value.dtype.kind != "f":
            self._fail(f"{key} holds {value.dtype} values, expected floating point")
        if value.shape != shape:
            self._fail(f"{key} has shape {value.shape}, expected {shape} (n_components="
                       f"{self.K}, n_features_in_={self.D}, covariance_type="
                       f"{self.covariance_type!r})")
        if not np.isfinite(value).all():
            self._fail(f"{key} contains NaN or infinity")
        if positive and not (value > 0).all():
            self._fail(f"{key} has values <= 0, expected positive ones")
        return value

    def common(self, fitted):
        weights = self.array("weights_", fitted["weights_"], (self.K,))
        # float32 models store float32 weights: their sum is 1 to about 1e-7 per term.
        if (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-4:
            self._fail(f"weights_ must be >= 0 and sum to 1, got sum "
                       f"{float(weights.sum())!r} and minimum {float(weights.min())!r}")
        self.array("means_", fitted["means_"], (self.K, self.D))
        shape = self.covariance_shape()
        self.array("covariances_", fitted["covariances_"], shape)
        self.array("precisions_cholesky_", fitted["precisions_cholesky_"], shape)


def _model_checker(path, params, n_features):
    """A ``_ModelChecker`` for the stored parameters, which are checked first: a corrupt
    ``covariance_type`` or ``n_components`` is the file's fault, not the data's."""
    covariance_type = params.get("covariance_type", "full")
    if covariance_type not in ("full", "tied", "diag", "spherical"):
        raise ValueError(f"model file {path!r}: covariance_type {covariance_type!r} is not "
                         "one of 'full', 'tied', 'diag', 'spherical' (its params attribute "
                         "is corrupt)")
    n_components = params.get("n_components", 1)
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"model file {path!r}: n_components {n_components!r} is not an "
                         "integer >= 1 (its params attribute is corrupt)")
    if n_features < 1:
        raise ValueError(f"model file {path!r}: n_features_in_ is {n_features}, expected "
                         "an integer >= 1")
    return _ModelChecker(path, n_components, n_features, covariance_type)


def load_model(path):
    """Read an estimator written by ``save_model``.

    Every array is checked against the stored parameters (``n_components``,
    ``n_features_in_``, ``covariance_type``): its shape, a floating dtype, finite values,
    weights that are >= 0 and sum to 1, positive Bayesian counts.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    GaussianMixture or BayesianGaussianMixture
        Fitted, with the same parameters bit for bit: ``predict``, ``score_samples`` and
        (Bayesian) ``elbo`` give the results of the saved estimator.

    Raises
    ------
    ValueError
        Not a fastvi model file, a newer format, or a corrupt one: the message names the
        file and the dataset, and what was expected (``model file 'm.h5': means_ has
        shape (3, 5), expected (4, 2) ...``).
    """
    path = os.fspath(path)
    with open_h5(path) as f:
        name, params = read_header(f, path)
        cls = _estimator_classes()[name]
        fitted = {key: np.asarray(_read(f, key, path)) for key in _COMMON_FITTED}
        for key, kind in _SCALARS.items():
            fitted[key] = _read_scalar(f, key, path, kind)
        checker = _model_checker(path, params, fitted["n_features_in_"])
        checker.common(fitted)
        if "param_arrays" in f:
            params.update({key: f["param_arrays"][key][()] for key in f["param_arrays"]})
        accepted = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            # A model from a later 1.x fastvi with new options still loads, without them.
            warnings.warn(f"{path!r}: ignoring unknown parameters {unknown}", stacklevel=2)
        try:
            estimator = cls(**{k: v for k, v in params.items() if k in accepted})
        except TypeError as exc:
            raise ValueError(f"model file {path!r}: invalid params attribute ({exc})") from None
        if name == "BayesianGaussianMixture":
            _load_bayes(f, path, estimator, fitted, checker)
        else:
            for key, value in fitted.items():
                setattr(estimator, key, value)
    return estimator


def _load_bayes(f, path, estimator, fitted, checker):
    from ._vb import Posterior, Prior
    K, D = checker.K, checker.D
    kind = estimator.weight_concentration_prior_type
    stick_breaking = isinstance(f.get("weight_concentration_"), h5py.Group)
    if kind not in ("dirichlet_process", "dirichlet_distribution") or (
            stick_breaking != (kind == "dirichlet_process")):
        raise ValueError(f"model file {path!r}: weight_concentration_prior_type {kind!r} "
                         f"does not match its weight_concentration_ (a "
                         f"{'group' if stick_breaking else 'dataset'})")
    if stick_breaking:
        group = f["weight_concentration_"]
        concentration = tuple(checker.array(f"weight_concentration_/{i}",
                                            _read(group, str(i), path), (K,), positive=True)
                              for i in range(2))
    else:
        concentration = checker.array("weight_concentration_",
                                      _read(f, "weight_concentration_", path), (K,),
                                      positive=True)
    prior_shape = {"full": (D, D), "tied": (D, D), "diag": (D,),
                   "spherical": ()}[checker.covariance_type]
    shapes = {"mean_precision_": (K,), "degrees_of_freedom_": (K,), "mean_prior_": (D,),
              "covariance_prior_": prior_shape}
    arrays = {key: checker.array(key, _read(f, key, path), shapes[key],
                                 positive=key in ("mean_precision_", "degrees_of_freedom_"))
              for key in _BAYES_ARRAYS}
    floats = {key: float(checker.array(key, _read(f, key, path), (), positive=True))
              for key in _BAYES_FLOATS}
    # The same objects in the private state and the public attributes, as after fit.
    estimator._prior = Prior(estimator.weight_concentration_prior_type,
                             floats["weight_concentration_prior_"],
                             floats["mean_precision_prior_"], arrays["mean_prior_"],
                             floats["degrees_of_freedom_prior_"], arrays["covariance_prior_"])
    estimator._posterior = Posterior(concentration, arrays["mean_precision_"],
                                     fitted["means_"], arrays["degrees_of_freedom_"],
                                     fitted["covariances_"], fitted["precisions_cholesky_"])
    for key, value in {**fitted, **arrays, **floats}.items():
        setattr(estimator, key, value)
    estimator.weight_concentration_ = concentration


def is_model_file(path):
    """Whether ``path`` is an HDF5 file with ``format="fastvi-model"`` (no other checks)."""
    try:
        if not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return _attr_str(f.attrs.get("format", "")) == FORMAT
    except OSError:
        return False


# ----------------------------------------------------------------------------- any model

def save(model, path):
    """Write a fitted fastvi model to ``path`` (atomically), whatever its class.

    Parameters
    ----------
    model : GaussianMixture, BayesianGaussianMixture, VAE or PPCA
        A fitted estimator.  Mixtures get the ``fastvi-model`` schema above, the
        amortized models the ``fastvi-amortized`` one (``fastvi.amortized_io``).
    path : str or os.PathLike
        The model file; replaced atomically if it exists.

    See Also
    --------
    load : reads any file this writes.
    """
    name = type(model).__name__
    if name in _estimator_classes():
        save_model(path, model)
        return
    from .amortized_io import _CLASSES, save_amortized
    if name not in _CLASSES:
        raise TypeError(f"fastvi.io.save takes a GaussianMixture, BayesianGaussianMixture, "
                        f"VAE or PPCA, got {name}")
    save_amortized(model, os.fspath(path))


def load(path):
    """Read any fastvi model file, choosing the reader by its ``format`` attribute.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``save`` (or ``fastvi fit``, ``fastvi amortized fit``).

    Returns
    -------
    GaussianMixture, BayesianGaussianMixture, VAE or PPCA
        The fitted estimator, predicting as the saved one did.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` is not a fastvi model file (its message names ``path``).
    """
    path = os.fspath(path)
    with open_h5(path) as f:
        kind = _attr_str(f.attrs.get("format", ""))
    if kind == FORMAT:
        return load_model(path)
    from .amortized_io import FORMAT as AMORTIZED, load_amortized
    if kind == AMORTIZED:
        return load_amortized(path)
    raise ValueError(f"{path!r} is not a fastvi model file (format attribute {kind!r}, "
                     f"expected {FORMAT!r} or {AMORTIZED!r})")
