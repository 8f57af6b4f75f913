"""Opening the data files a model is fitted to or applied on, by a spec string.

``open_data(spec)`` opens the rows without reading them: ``spec`` is

* ``rows.npy``: a NumPy file, memory-mapped (``np.load(..., mmap_mode="r")``);
* ``file.h5:/group/dataset``: one dataset of an HDF5 file, read chunk by chunk later;
* ``file.h5``: its ``/X`` dataset, or else its only 2-D dataset.

``open_source(spec, chunk_rows)`` opens the same specs, with the same checks and errors,
as a chunk source of ``fastvi.data.sources`` (``HDF5Source``: reads aligned to the HDF5
chunking and read ahead in a thread; ``ArraySource`` on a .npy memory map), which the
estimators stream from; ``open_sources(specs)`` reads several as one data set
(``ConcatSource``), and ``resolve_spec`` gives the absolute, explicit form of a spec that
a checkpoint stores to reopen the data.
"""
import os

import h5py
import numpy as np

from .atomic import file_kind
from .sources import DEFAULT_CHUNK_ROWS, ArraySource, ConcatSource, HDF5Source, check_shape

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


def check_regular_file(path, what="file"):
    """Refuse an input that exists but is not a regular file, before anything opens it.

    Opening a named pipe (FIFO) waits for a writer for ever (h5py and ``np.load`` both
    block in ``open``); a character device (``/dev/zero``, a terminal's ``/dev/stdin``)
    reads endlessly or waits for typing; a socket cannot be opened at all.  fastvi reads
    its inputs by random access (HDF5, memory maps), which none of them gives.  A
    symbolic link is followed: a link to a FIFO is refused as a FIFO.  A missing path
    or a directory passes: the caller names those in its own words.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        How the message names the input: ``"data"``, ``"model"``, ``"checkpoint"``...

    Raises
    ------
    ValueError
        ``data '/x/pipe.h5' is a named pipe (FIFO), not a regular file: ...``.
    """
    kind = file_kind(path)
    if kind is None or kind == "a directory":
        return
    kind = "" if kind == "not a regular file" else f"{kind}, "      # an unknown kind
    raise ValueError(f"{what} {os.fspath(path)!r} is {kind}not a regular file: fastvi reads "
                     "its inputs by random access; save its contents to a regular file first")


def _is_npy(path):
    if path.lower().endswith(".npy"):
        return True
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def open_h5(path, mode="r", what="file"):
    """``h5py.File(path, mode)`` with errors that name the file.

    Parameters
    ----------
    path : str
    mode : str, default "r"
    what : str, default "file"
        How the error for a FIFO or device names the file (``check_regular_file``).

    Returns
    -------
    h5py.File

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not an HDF5 file, or is a named pipe, a device or a socket
        (``check_regular_file``).
    OSError
        If the file is an HDF5 file that cannot be read (truncated, corrupt, permissions).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a file")
    check_regular_file(path, what)
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
        Not a .npy or HDF5 file, a named pipe or a device, not 2-D (an HDF5 null
        dataspace included), not real-valued (integer and bool data are refused), or
        empty.
    OSError
        An HDF5 file that cannot be read.
    """
    path, dataset = split_spec(spec)
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"data {path!r} is a directory, not a file")
    check_regular_file(path, "data")        # before _is_npy's open, which a FIFO blocks
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
        check_shape(source.array.shape, source.array.dtype, source.label)
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
    """Open one data spec as a chunk source (``fastvi.data.sources``) without reading it.

    An HDF5 dataset becomes an ``HDF5Source`` (reads aligned to its HDF5 chunking and
    prefetched in a thread), a .npy file an ``ArraySource`` on its memory map.  The checks
    and error messages are ``open_data``'s (missing file or dataset, not 2-D, not numeric,
    empty, corrupt).

    Parameters
    ----------
    spec : str or os.PathLike
        ``file.npy``, ``file.h5:/dataset`` or ``file.h5``.
    chunk_rows : int, optional
        Rows per chunk (default ``fastvi.data.sources.DEFAULT_CHUNK_ROWS``); an HDF5 source
        rounds it up to a multiple of the dataset's chunk rows.
    dtype : {None, 'float32', 'float64'}
        Working dtype (None: float32 stays float32, anything else becomes float64).

    Returns
    -------
    ChunkSource
        With ``label`` (``'file.h5:/X'``, as the spec named the file) and ``spec`` (the
        absolute form, see ``resolve_spec``).  Close it (or use it in a ``with`` block).
    """
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
