"""Chunk sources: the rows of a data set, delivered one bounded chunk at a time.

Every algorithm reads its data through one small interface, so an in-memory array, an HDF5
dataset and a list of HDF5 files are interchangeable:

* ``n_rows``, ``n_features``, ``dtype`` and ``label`` (for error messages);
* ``chunk_bounds()``: the fixed ``(start, stop)`` row ranges of the chunks;
* ``read(start, stop)``: those rows as a C-contiguous float32 or float64 array, checked to
  be finite and not too large to fit (a NaN, an inf or a 1e300 names its row);
* ``chunks(order=None)``: iterate ``(index, start, chunk)`` in chunk order or a given
  order, reading the next chunk in a background thread while the caller works on the
  current one (the kernels release the GIL);
* ``remote_reader()``: a picklable ``RowReader`` of the same rows, for backends that read
  them in other processes (the Dask workers).

Memory stays bounded by a few chunks whatever the number of rows.  HDF5 reads are aligned
to the dataset's own chunking: the chunk size is rounded to a multiple of it, so no HDF5
chunk is decompressed twice.
"""
import os
import queue
import threading

import numpy as np

from .limits import check_values
from .storage import check_storage

DEFAULT_CHUNK_ROWS = 65536
_CHUNK_CACHE_BYTES = 64 * 2 ** 20


def _as_float(chunk, dtype):
    return np.ascontiguousarray(chunk, dtype=dtype)


class ChunkSource:
    """Base class: subclasses set ``n_rows``, ``n_features``, ``dtype``, ``label``,
    ``chunk_rows`` and implement ``_read(start, stop)``."""

    prefetch = True
    # NaN entries are missing values, not errors (the estimators' missing="marginalize"
    # sets it on the sources they read)
    allow_nan = False
    # whether a Dask worker reads the rows itself through ``remote_reader()`` (a file, a
    # generator), rather than the client scattering them
    read_on_workers = False

    def chunk_bounds(self):
        return [(start, min(start + self.chunk_rows, self.n_rows))
                for start in range(0, self.n_rows, self.chunk_rows)]

    @property
    def n_chunks(self):
        return -(-self.n_rows // self.chunk_rows)

    @property
    def shape(self):
        return (self.n_rows, self.n_features)

    def __repr__(self):
        return (f"{type(self).__name__}({self.label!r}, shape={self.shape}, "
                f"dtype={np.dtype(self.dtype).name}, chunk_rows={self.chunk_rows}, "
                f"n_chunks={self.n_chunks}{self._storage_text()})")

    def _storage_text(self):
        """What ``repr`` adds about where the rows are stored (HDF5's chunking)."""
        return ""

    @property
    def max_chunk_rows(self):
        """The most rows a chunk holds: ``chunk_rows`` clamped to the rows there are (a
        chunk size beyond the data asks for one chunk of all rows, not a larger buffer)."""
        return min(self.chunk_rows, self.n_rows)

    def buffer_bytes(self):
        """Bytes of the chunks that a pass over the rows holds at once (``chunks``: the
        one in use, the one read ahead and the one being read), for the size checks."""
        chunks = 3 if self.prefetch else 1
        return chunks * self.max_chunk_rows * self.n_features * np.dtype(self.dtype).itemsize

    def read(self, start, stop, check=True, out=None):
        """Rows ``start:stop``; into ``out`` (C-contiguous, the working dtype) where the
        source can read in place."""
        chunk = self._view(start, stop)
        if chunk is None and out is not None and self._read_into(start, stop, out):
            chunk = out
        if chunk is None:
            chunk = _as_float(self._read(start, stop), self.dtype)
        if check:
            check_values(chunk, self.label, start, allow_nan=self.allow_nan)
        return chunk

    def _view(self, start, stop):
        """Rows ``start:stop`` without a copy, where the source can give them; else None."""
        return None

    def _read_into(self, start, stop, out):
        return False

    def chunks(self, order=None, check=True, reuse=False):
        """Yield ``(index, start, chunk)``; ``order`` is a sequence of chunk indices.

        ``check=False`` skips the scan for NaN, inf and too large values
        (``limits.check_values``), for callers that detect a non-finite result themselves and
        then call ``check_finite`` (the E-step passes).  ``reuse=True`` promises
        that a chunk is not used after the next one is asked for, so a source may read
        into a small pool of buffers instead of a new array per chunk (fresh arrays
        page-fault on first touch, which cost HDF5 passes about 5%).
        """
        bounds = self.chunk_bounds()
        order = range(len(bounds)) if order is None else order
        if not self.prefetch:
            for index in order:
                yield (index, bounds[index][0], self.read(*bounds[index], check=check))
            return
        yield from _prefetched(self, bounds, order, check, reuse)

    def check_finite(self, chunk, start):
        """Raise the error that names the first row of ``chunk`` with a NaN, an inf or a
        value too large to fit (``limits.check_values``), if any."""
        check_values(chunk, self.label, start, allow_nan=self.allow_nan)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _prefetched(source, bounds, order, check, reuse):
    """Read chunk i+1 in a thread while the consumer works on chunk i (one chunk ahead).

    With ``reuse``, three buffers go round: the consumer's chunk, the one queued, and the
    one being read; the queue holds one item, so the reader never overwrites a buffer that
    is still in use.
    """
    ready = queue.Queue(maxsize=1)
    stop = threading.Event()
    pool = [None, None, None]

    def buffer_for(count, rows):
        if not reuse:
            return None
        slot = count % len(pool)
        if pool[slot] is None:
            pool[slot] = np.empty((source.max_chunk_rows, source.n_features),
                                  dtype=source.dtype)
        return pool[slot][:rows]

    def reader():
        try:
            for count, index in enumerate(order):
                if stop.is_set():
                    return
                start, end = bounds[index]
                out = buffer_for(count, end - start)
                ready.put((index, start, source.read(start, end, check=check, out=out)))
        except BaseException as exc:             # handed to the consumer, raised there
            ready.put(exc)
            return
        ready.put(None)

    thread = threading.Thread(target=reader, daemon=True, name="fastvi-reader")
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():                 # unblock a reader waiting on put()
            try:
                ready.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.01)


class ArraySource(ChunkSource):
    """Rows of an in-memory array (or a memory map): chunks are views, copied only when the
    dtype or layout needs it."""

    prefetch = False

    def __init__(self, X, chunk_rows=DEFAULT_CHUNK_ROWS, dtype=None, label="X"):
        self.chunk_rows = _check_chunk_rows(chunk_rows)
        X = np.asarray(X) if not isinstance(X, np.ndarray) else X
        check_shape(X.shape, X.dtype, label)
        self.X = X
        self.n_rows, self.n_features = X.shape
        self.dtype = _working_dtype(X.dtype, dtype)
        self.label = label

    def _read(self, start, stop):
        return self.X[start:stop]

    def buffer_bytes(self):
        """Chunks are views of the array: no memory, unless a chunk must be converted to
        the working dtype or made contiguous (one chunk at a time)."""
        if self.X.dtype == self.dtype and self.X.flags.c_contiguous:
            return 0
        return self.max_chunk_rows * self.n_features * self.dtype.itemsize

    def remote_reader(self):
        """A picklable reader of these rows (``RowReader``): it holds the whole array, so
        a backend that ships it to other processes sends it once (Dask: ``scatter``)."""
        return _ArrayReader(self.X, self.dtype)

    def read_rows(self, index):
        """Rows at sorted indices (for samples), checked like chunks."""
        rows = _as_float(self.X[index], self.dtype)
        check_values(rows, self.label, 0, index, allow_nan=self.allow_nan)
        return rows


class HDF5Source(ChunkSource):
    """A 2-D dataset of an HDF5 file, read in chunks aligned to its HDF5 chunking.

    Parameters
    ----------
    dataset : h5py.Dataset, or a path with ``name`` the dataset inside it
    chunk_rows : int
        Rounded up to a multiple of the dataset's chunk rows.
    """

    read_on_workers = True

    def __init__(self, dataset, name=None, chunk_rows=DEFAULT_CHUNK_ROWS, dtype=None):
        import h5py
        chunk_rows = _check_chunk_rows(chunk_rows)
        self._file = None
        if not isinstance(dataset, h5py.Dataset):
            from .files import check_regular_file      # here: files imports this module
            path = os.fspath(dataset)
            check_regular_file(path, "data")            # h5py would wait on a FIFO
            try:
                self._file = h5py.File(path, "r")
            except FileNotFoundError:
                raise FileNotFoundError(f"{path}: no such file") from None
            except OSError as exc:
                raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
            name = name or "/X"
            if name not in self._file or not isinstance(self._file[name], h5py.Dataset):
                names = []
                self._file.visititems(
                    lambda n, obj: names.append("/" + n) if isinstance(obj, h5py.Dataset) else None)
                self._file.close()
                raise KeyError(f"{path}: no dataset {name!r}; datasets in the file: "
                               f"{', '.join(names) or 'none'}")
            dataset = self._file[name]
            if dataset.chunks is not None and chunk_rows < dataset.chunks[0]:
                # Minibatches smaller than one HDF5 chunk: a chunk cache that holds whole
                # chunks, so one is not decompressed again for every minibatch in it.
                # (Only then: reads of whole chunks bypass the cache, saving a copy.)
                self._file.close()
                self._file = h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
                dataset = self._file[name]
        self.dataset = dataset
        self.label = f"{dataset.file.filename}:{dataset.name}"
        try:
            check_shape(dataset.shape, dataset.dtype, self.label)
            if np.dtype(dataset.dtype).kind != "f":
                # An integer dataset in a file is far more often labels or counts than the
                # features of a mixture; converting it silently would fit the wrong thing.
                raise ValueError(f"{self.label} holds {dataset.dtype} values; fastvi fits "
                                 "real-valued data: store it as float32 or float64")
            self.dtype = _working_dtype(dataset.dtype, dtype)
            check_storage(dataset, self.label)     # virtual or external rows all there
        except BaseException:
            self.close()            # a file this source opened is not left open
            raise
        self.n_rows, self.n_features = dataset.shape
        self.chunk_rows = aligned_chunk_rows(dataset, chunk_rows)
        self._map_ok = None
        # kept for repr, which must not touch a file that may since have been closed
        self._hdf5_layout = (dataset.chunks, dataset.compression)

    def _storage_text(self):
        chunks, compression = self._hdf5_layout
        if chunks is None:
            return ", stored contiguous"
        filtered = f", {compression}" if compression else ""
        return f", stored in HDF5 chunks of {chunks[0]} rows{filtered}"

    def _read(self, start, stop):
        try:
            return self.dataset[start:stop]
        except OSError as exc:
            raise self._read_error(start, stop, exc) from None

    def _view(self, start, stop):
        """A zero-copy view of rows ``start:stop`` when they lie in one stored, unfiltered
        HDF5 chunk of the working dtype (the common case for fastvi's own files); else
        None.  The kernel then reads the page cache directly: no copy of the data."""
        dataset = self.dataset
        if self._map_ok is None:
            plist = dataset.id.get_create_plist()
            self._map_ok = (dataset.chunks is not None and dataset.chunks[1] == self.n_features
                            and plist.get_nfilters() == 0
                            and dataset.dtype == self.dtype.newbyteorder("<")
                            and self.dtype.isnative)
        if not self._map_ok:
            return None
        rows = dataset.chunks[0]
        first = start - start % rows
        if stop - first > rows:
            return None
        info = dataset.id.get_chunk_info_by_coord((first, 0))
        if info.byte_offset is None:
            return None
        block = np.memmap(dataset.file.filename, dtype=self.dtype, mode="r",
                          offset=info.byte_offset, shape=(rows, self.n_features))
        return np.asarray(block)[start - first:stop - first]

    def _read_into(self, start, stop, out):
        try:
            self.dataset.read_direct(out, np.s_[start:stop], np.s_[0:stop - start])
        except OSError as exc:
            raise self._read_error(start, stop, exc) from None
        return True

    def _read_error(self, start, stop, exc):
        return ValueError(f"{self.label}: cannot read rows {start}:{stop} "
                          f"(truncated or corrupt file?): {exc}")

    def remote_reader(self):
        """A picklable reader of these rows (``RowReader``) that opens the file by its path
        wherever it runs: the path must name the same file there (a shared file system)."""
        return _HDF5Reader(os.path.abspath(self.dataset.file.filename), self.dataset.name,
                           self.dtype, self.label)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (known without importing dask)."""
    return type(X).__module__.startswith("dask.array") and hasattr(X, "to_delayed")


class DaskArraySource(ChunkSource):
    """The rows of a ``dask.array``, rechunked along the rows to ``chunk_rows`` (one
    block a chunk, the features whole).

    On the local backend a chunk is computed when it is read (through whatever scheduler
    dask uses).  On the Dask backend each block is computed on the cluster and stays
    there: the worker that computes a chunk's statistics gets the block, not the client.
    """

    prefetch = False

    def __init__(self, X, chunk_rows=DEFAULT_CHUNK_ROWS, dtype=None, label="X"):
        self.chunk_rows = _check_chunk_rows(chunk_rows)
        if any(np.isnan(n) for n in X.shape):
            raise ValueError(f"{label}: a dask array of unknown shape {X.shape}; "
                             "call X.compute_chunk_sizes() first")
        check_shape(X.shape, X.dtype, label)
        self.n_rows, self.n_features = (int(n) for n in X.shape)
        self.X = X.rechunk({0: self.chunk_rows, 1: -1})
        self.dtype = _working_dtype(X.dtype, dtype)
        self.label = label

    def _read(self, start, stop):
        return np.asarray(self.X[start:stop].compute())

    def blocks(self):
        """The chunks as dask delayed objects, in chunk order."""
        return list(self.X.to_delayed().ravel())


class ConcatSource(ChunkSource):
    """Several sources with the same number of features, read as one run of rows.

    Chunks never span two sources, so each source's own alignment is kept; the chunk
    bounds are the sources' bounds, offset.
    """

    read_on_workers = True

    def __init__(self, sources):
        if not sources:
            raise ValueError("ConcatSource needs at least one source")
        n_features = {s.n_features for s in sources}
        if len(n_features) != 1:
            raise ValueError("all files must have the same number of features, got "
                             + ", ".join(f"{s.label}: {s.n_features}" for s in sources))
        self.sources = list(sources)
        self.n_features = n_features.pop()
        self.n_rows = sum(s.n_rows for s in sources)
        dtypes = {np.dtype(s.dtype) for s in sources}
        self.dtype = np.dtype(np.float32) if dtypes == {np.dtype(np.float32)} else np.dtype(np.float64)
        self.chunk_rows = max(s.chunk_rows for s in sources)
        self.label = " + ".join(s.label for s in sources)
        self._bounds, self._owner = [], {}
        offset = 0
        for i, source in enumerate(self.sources):
            for start, stop in source.chunk_bounds():
                self._bounds.append((offset + start, offset + stop))
                self._owner[offset + start] = (i, offset)
            offset += source.n_rows

    def chunk_bounds(self):
        return list(self._bounds)

    @property
    def allow_nan(self):
        return all(source.allow_nan for source in self.sources)

    @allow_nan.setter
    def allow_nan(self, value):
        for source in self.sources:       # each source checks its own reads
            source.allow_nan = value

    @property
    def n_chunks(self):
        return len(self._bounds)

    @property
    def max_chunk_rows(self):
        return max(source.max_chunk_rows for source in self.sources)

    def read(self, start, stop, check=True, out=None):
        owner, offset = self._owner[start]
        source = self.sources[owner]
        if out is not None and source.dtype != self.dtype:
            out = None
        return _as_float(source.read(start - offset, stop - offset, check, out), self.dtype)

    def remote_reader(self):
        offsets = np.cumsum([0] + [s.n_rows for s in self.sources])
        return _ConcatReader([(int(offsets[i]), s.remote_reader())
                              for i, s in enumerate(self.sources)], self.dtype)

    def close(self):
        for source in self.sources:
            source.close()


# ----------------------------------------------------------------------------- remote reads

class RowReader:
    """What a chunk source gives a backend that reads its rows in other processes
    (``ChunkSource.remote_reader()``): a small picklable object whose ``read(start, stop)``
    returns rows ``start:stop`` as a C-contiguous array of the source's working dtype, the
    same values the source itself reads (so the kernels give the same bits), unchecked."""

    def read(self, start, stop):
        raise NotImplementedError


class _ArrayReader(RowReader):
    def __init__(self, X, dtype):
        self.X, self.dtype = X, dtype

    def read(self, start, stop):
        return _as_float(self.X[start:stop], self.dtype)


class _HDF5Reader(RowReader):
    def __init__(self, path, name, dtype, label):
        self.path, self.name, self.dtype, self.label = path, name, np.dtype(dtype), label

    def read(self, start, stop):
        import h5py
        try:
            with h5py.File(self.path, "r") as f:
                return _as_float(f[self.name][start:stop], self.dtype)
        except (OSError, KeyError) as exc:
            raise OSError(f"{self.label}: cannot read rows {start}:{stop} here "
                          f"({type(exc).__name__}: {exc}); every worker must see the file "
                          "at this path") from None


class _ConcatReader(RowReader):
    def __init__(self, parts, dtype):
        self.parts, self.dtype = parts, dtype        # [(first row, reader)], ascending

    def read(self, start, stop):
        for first, reader in reversed(self.parts):
            if start >= first:
                return _as_float(reader.read(start - first, stop - first), self.dtype)
        raise IndexError(start)


def aligned_chunk_rows(dataset, chunk_rows):
    """``chunk_rows`` rounded up to a multiple of the dataset's HDF5 chunk rows.

    A size below one HDF5 chunk is kept as asked (a small minibatch stays small): its reads
    are parts of one HDF5 chunk, which h5py's chunk cache (enlarged by ``HDF5Source``)
    keeps decompressed for the next minibatch.
    """
    chunk_rows = int(chunk_rows)
    if dataset.chunks is None:
        return chunk_rows
    step = dataset.chunks[0]
    if chunk_rows < step:
        return chunk_rows
    return -(-chunk_rows // step) * step


def check_shape(shape, dtype, label):
    """Refuse rows that are not a non-empty 2-D array of numbers, naming ``label``.

    ``shape`` None is an HDF5 dataset with a null dataspace (``h5py.Empty``): no array at
    all.  A compound dtype (a table of named fields) is told apart from other non-numbers.
    """
    if shape is None:
        raise ValueError(f"{label} is an empty HDF5 dataset (a null dataspace, no shape): "
                         "it holds no rows; store the rows as a 2-D dataset")
    if np.dtype(dtype).names:
        raise ValueError(f"{label} has a compound dtype (a table with the fields "
                         f"{', '.join(np.dtype(dtype).names)}); fastvi reads a 2-D array of "
                         "numbers: store the features as one float array")
    if len(shape) != 2:
        raise ValueError(f"{label} must be 2-D (n_samples, n_features), got shape {shape}")
    if np.dtype(dtype).kind not in "fiub":
        raise ValueError(f"{label} must hold numbers, got dtype {dtype}")
    if shape[0] == 0:
        raise ValueError(f"{label} has no rows (shape {shape})")
    if shape[1] == 0:
        raise ValueError(f"{label} has no features (shape {shape})")


def _check_chunk_rows(chunk_rows):
    """Rows per chunk as an int >= 1, refused by name before any file is opened."""
    from .checks import check_integer     # here: _validation imports this module
    return check_integer("chunk_rows", chunk_rows, 1)


def _working_dtype(stored, requested):
    if requested is not None:
        dtype = np.dtype(requested)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {requested!r}")
        return dtype
    return np.dtype(np.float32) if np.dtype(stored) == np.float32 else np.dtype(np.float64)


def as_source(X, chunk_rows=DEFAULT_CHUNK_ROWS, dtype=None):
    """Wrap what a user passed as ``X`` in a ChunkSource (a source is returned as is)."""
    if isinstance(X, ChunkSource):
        return X
    if is_dask_array(X):
        return DaskArraySource(X, chunk_rows=chunk_rows, dtype=dtype)
    try:
        import h5py
        if isinstance(X, h5py.Dataset):
            return HDF5Source(X, chunk_rows=chunk_rows, dtype=dtype)
    except ImportError:     # pragma: no cover - h5py is a dependency
        pass
    return ArraySource(X, chunk_rows=chunk_rows, dtype=dtype)
