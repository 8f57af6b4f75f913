"""Checkpoints of a running fit: written atomically between chunks, resumed exactly.

A checkpoint holds the whole state of a fit (``fastvi.engine.loop.FitState`` for the
mixtures: parameters, running or cached statistics, step counter, the random generator,
the position in the pass; ``fastvi.amortized.vae.EpochState`` for the VAE and PPCA) and a
``meta`` dict (the estimator's class and constructor parameters, the data it reads).  A
fit resumed from it ends with the same model, bit for bit, as the fit that was never
stopped.

A state that decodes is not yet a state to resume: before a fit takes one,
``validate_state`` (``resume_checks``) checks every field against the estimator and the data (shapes, finite
values, chunk and component indices, the position in the pass, the step count, the
random generator), and a tampered or garbled one is refused as a ``CorruptCheckpoint``
naming the file and the field.  The kernels do not check bounds: an index out of range
would read or write outside an array.

File format (HDF5, version 2)
-----------------------------
Loading a checkpoint never runs code from it: the file is data (arrays and JSON), and
the only classes it can rebuild are the fastvi classes of a fixed list
(``fastvi.io.tree.classes``, the codec of the trees below).
Version 1 was a pickle; such files are refused with a message, not unpickled.

::

    /                attrs: format = "fastvi-checkpoint", format_version = 2,
                            fastvi_version
    /state           scalar UTF-8 string: the JSON tree of the state
    /meta            scalar UTF-8 string: the JSON tree of ``meta``
    /arrays/<i>      (n, *shape) the n arrays of the trees that have one dtype (byte
                     order included) and shape, stacked

A JSON tree is made of JSON's null, booleans, integers (of any size), strings and finite
floats, and of objects with a tag key that says what they stand for:

* ``{"list": [...]}``, ``{"tuple": [...]}``: a list, a tuple;
* ``{"dict": {...}}``: a dict with str keys; ``{"items": [[k, v], ...]}``: any keys;
* ``{"float": "inf"}``: ``inf``, ``-inf`` or ``nan``;
* ``{"array": i, "index": j, "dtype": "<f8", "shape": [...]}``: ``/arrays/<i>[j]``, with
  ``"order": "F"`` if it was Fortran-ordered;
* ``{"objects": [...], "dtype": "|O", "shape": [...]}``: an array of dtype object or
  str (feature names), its items in C order;
* ``{"scalar": "<f4", "value": v}``: a numpy scalar, of its own type;
* ``{"dtype": "<f8"}``: a ``numpy.dtype``; ``{"nptype": "<f4"}``: a scalar type such as
  ``numpy.float32``;
* ``{"generator": "PCG64", "state": {...}}``: a ``numpy.random.Generator``, by its bit
  generator's name and state (PCG64's has 128-bit integers); ``{"random_state": {...}}``:
  a legacy ``numpy.random.RandomState``;
* ``{"object": "fastvi.engine.loop.FitState", "state": {...}}``: an instance of a listed
  class (files written before fastvi's package was split name it ``fastvi._loop.FitState``;
  both names are read),
  made by ``cls.__new__`` and given its attributes (or, for a class with its own
  ``__getstate__``/``__setstate__``, what they give and take);
* ``{"ref": n}``: the object tagged ``"id": n`` earlier in the trees.

An object referenced twice (the parameter list an ``Adam`` shares with its ``MLP``, the
generator that is also the estimator's ``random_state``) is written once and gets an
``"id"``; later occurrences are ``{"ref": n}``, so the loaded state shares it as the
written one did.  A dataclass field that a file lacks (one added to ``FitState`` since)
gets the field's default.  A memoized fit caches statistics of every chunk: stacking arrays of
one dtype and shape makes that cache a handful of datasets (one of all the chunks'
``s2``, ...) rather than four per chunk, which took seconds to write and read at 2000
chunks.  The trees are datasets, not attributes, because such a cache makes the state
tree larger than HDF5's 64 KiB limit on an attribute.

Example
-------
>>> ckpt = Checkpointer("fit.ckpt", every_seconds=60)            # doctest: +SKIP
>>> model.fit(source, checkpoint=ckpt)                           # killed half-way
>>> state, meta = load_checkpoint("fit.ckpt")
>>> model.fit(source, resume=state)                              # goes on
"""
import json
import os
import time

import numpy as np

# validate_state and CorruptCheckpoint are read from here too (the callers' import path)
from .resume_checks import (CorruptCheckpoint, _loaded_from, _remember_file,  # noqa: F401
                            validate_state)
from .tree import Decoder, Encoder

FORMAT = "fastvi-checkpoint"
FORMAT_VERSION = 2

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def estimator_params(estimator):
    """The constructor arguments of an estimator, by inspecting its ``__init__``; a
    ``Backend`` instance (which may hold a cluster's client) is given by its name."""
    import inspect

    from ..engine.backend import Backend
    names = [p for p in inspect.signature(type(estimator).__init__).parameters if p != "self"]
    params = {name: getattr(estimator, name) for name in names}
    if isinstance(params.get("backend"), Backend):
        params["backend"] = params["backend"].name
    return params


class Checkpointer:
    """Writes the fit state every ``every_chunks`` chunks or ``every_seconds`` seconds.

    Parameters
    ----------
    path : str or path-like
    every_chunks : int or None
    every_seconds : float or None
        With both None, only the end of every pass (and an interruption) writes.
    meta : dict, optional
        Stored beside the state (for example what ``fastvi fit --resume`` needs to rebuild
        the estimator and reopen the data); it may hold what the state may hold.
    keep : bool, default False
        Whether ``finish`` leaves the file in place.  By default a fit that ends (is not
        interrupted) removes its checkpoint, as ``fastvi fit`` does: only an interrupted
        or crashed fit leaves one to resume from.

    Notes
    -----
    Checkpoint files are private (mode 0600): they hold the model and data-derived
    statistics.  The format is in the module's docstring.
    """

    def __init__(self, path, every_chunks=None, every_seconds=60.0, meta=None, keep=False):
        self.path = os.fspath(path)
        self.keep = keep
        self.every_chunks = every_chunks
        self.every_seconds = every_seconds
        self.meta = dict(meta or {})
        self._chunks = 0
        self._last = time.monotonic()
        self.writes = 0

    def __call__(self, state, force=False):
        self._chunks += 1
        due = force
        if self.every_chunks is not None and self._chunks >= self.every_chunks:
            due = True
        if self.every_seconds is not None and time.monotonic() - self._last >= self.every_seconds:
            due = True
        if due:
            self.write(state)

    def write(self, state):
        """Write ``state`` and ``meta`` now: to a temporary file in the same folder, then
        an atomic rename.

        Raises
        ------
        TypeError
            If the state holds an object a checkpoint cannot hold (before any file is
            touched); the message says where in the state it is.
        fastvi.data.atomic.OutputError
            If the file cannot be written (a full disk, ...); the last checkpoint, if
            any, is left as it was.
        """
        import h5py

        from .. import __version__
        from ..data.atomic import atomic_h5
        encoder = Encoder()
        trees = {"state": encoder.encode(state, "state"),
                 "meta": encoder.encode(self.meta, "meta")}
        # atomic_h5: a temporary file, fsynced, renamed into place; private (0600) from
        # its creation on; a full disk is one OutputError naming the checkpoint.
        with atomic_h5(self.path, "the checkpoint", mode=0o600) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["fastvi_version"] = __version__
            f.attrs["writer"] = json.dumps(self.settings())
            for key, tree in trees.items():
                f.create_dataset(key, data=json.dumps(tree, allow_nan=False),
                                 dtype=h5py.string_dtype())
            arrays = f.create_group("arrays")
            for i, stack in encoder.stacks.values():
                # one array (a large one, often) is written as a view: no copy
                data = stack[0][np.newaxis] if len(stack) == 1 else np.stack(stack)
                arrays.create_dataset(str(i), data=data)
        self._chunks = 0
        self._last = time.monotonic()
        self.writes += 1

    def settings(self):
        """What a resumed fit's own ``Checkpointer`` of this file keeps (``keep`` and the
        schedule), stored in the file as its ``writer`` attribute."""
        return {"keep": bool(self.keep), "every_chunks": self.every_chunks,
                "every_seconds": self.every_seconds}

    def finish(self):
        """The fit ended: remove the checkpoint file unless ``keep`` (a missing file is
        fine).  Returns whether a file was removed."""
        if self.keep:
            return False
        try:
            os.remove(self.path)
        except FileNotFoundError:
            return False
        return True


def _refuse_non_hdf5(path, head):
    """The error for a file that is not HDF5: an older fastvi's pickle, or anything else."""
    if not head:
        return ValueError(f"{path}: not a readable fastvi checkpoint (the file is empty)")
    if head[:1] == b"\x80":          # the PROTO opcode that pickles of protocol 2+ begin with
        return ValueError(
            f"{path} is a checkpoint of an older fastvi (a pickle, which is no longer "
            "loaded because unpickling can run code); remove it and start the fit afresh")
    return ValueError(f"{path}: not a readable fastvi checkpoint (not an HDF5 file)")


def load_checkpoint(path):
    """The state and meta of a checkpoint file; reading it never runs code from it.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    state : object
        What ``Checkpointer.write`` was given: a ``FitState`` or ``EpochState``, for
        ``fit(..., resume=state)``.
    meta : dict

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        Naming the file: if it is an older fastvi's (pickled) checkpoint, one from a newer
        fastvi, a damaged or truncated file, not a fastvi checkpoint, or a named pipe or
        a device.
    """
    import h5py
    from ..data.files import check_regular_file
    path = os.fspath(path)
    check_regular_file(path, "checkpoint")      # the open below would wait on a FIFO
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_HDF5_SIGNATURE))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such checkpoint") from None
    if head != _HDF5_SIGNATURE:
        raise _refuse_non_hdf5(path, head)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable fastvi checkpoint (a damaged or truncated "
                         f"HDF5 file: {exc})") from None
    with f:
        found = f.attrs.get("format")
        found = found.decode() if isinstance(found, bytes) else found
        if found != FORMAT:
            raise ValueError(f"{path}: not a fastvi checkpoint (its format is {found!r}, "
                             f"not {FORMAT!r})")
        version = f.attrs.get("format_version")
        if not isinstance(version, (int, np.integer)) or version < FORMAT_VERSION:
            raise ValueError(f"{path}: not a readable fastvi checkpoint (format_version "
                             f"{version!r})")
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format {version} is newer than this fastvi "
                             f"reads ({FORMAT_VERSION}); upgrade fastvi")
        decoder = Decoder(f)
        try:
            # state first: the ids that meta may refer to are defined in it
            state = decoder.decode(json.loads(f["state"].asstr()[()]), "state")
            meta = decoder.decode(json.loads(f["meta"].asstr()[()]), "meta")
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OSError,
                RuntimeError) as exc:
            # h5py reports a truncated dataset as OSError or KeyError, a bad tree as the rest
            # (a DecodeError, which says where in the tree)
            raise ValueError(f"{path}: not a readable fastvi checkpoint ({exc})") from None
        settings = _writer_settings(f.attrs.get("writer"))
    # the path as given names the file in messages; the absolute one is where a resumed
    # fit writes, whatever the working folder is by then
    _remember_file(state, path, meta, {**settings, "path": os.path.abspath(path)})
    return state, meta


def _writer_settings(text):
    """The ``Checkpointer`` settings a file records (``writer``), or {} for a file that
    records none (written before they were stored) or garbled ones."""
    try:
        settings = json.loads(text.decode() if isinstance(text, bytes) else str(text))
    except (TypeError, ValueError):
        return {}
    if not isinstance(settings, dict):
        return {}
    kept = {}
    if isinstance(settings.get("keep"), bool):
        kept["keep"] = settings["keep"]
    for name in ("every_chunks", "every_seconds"):
        value = settings.get(name)
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and 0 < value < float("inf")):
            kept[name] = value
    return kept


def resumed_checkpointer(state, checkpoint):
    """The checkpoint a fit given ``checkpoint=`` and ``resume=state`` writes to.

    ``checkpoint`` if given (False: none at all); else, for a state that
    ``load_checkpoint`` read, a ``Checkpointer`` of that same file, with its meta and the
    settings of the ``Checkpointer`` that wrote it (``keep``, the schedule), so that the
    resumed fit can be stopped and resumed again and, unless ``keep``, removes the file
    when it ends; else None.

    Raises
    ------
    TypeError
        If ``checkpoint`` is not None, False or a callable.
    fastvi.data.atomic.OutputError
        If the resumed state's file cannot be written again (a read-only folder): before
        the fit starts, naming the file and ``checkpoint=False``.
    """
    if checkpoint is False:
        return None
    if checkpoint is not None:
        if not callable(checkpoint):
            raise TypeError(f"checkpoint must be a fastvi.Checkpointer (or any callable "
                            f"taking the fit state), None or False, got {checkpoint!r}")
        return checkpoint
    found = None if state is None else _loaded_from(state)
    if found is None:
        return None
    path, meta, settings = found
    settings = dict(settings)
    path = settings.pop("path", path)
    from ..data.atomic import OutputError, check_writable
    try:
        check_writable(path, "the checkpoint")
    except OutputError as exc:
        raise OutputError(f"{exc}; the fit resumed from it would go on writing it: pass "
                          "checkpoint=False (or another Checkpointer) to resume without "
                          "writing it") from None
    return Checkpointer(path, meta=meta if isinstance(meta, dict) else None, **settings)
