"""Checkpoints of a running fit: written atomically between chunks, resumed exactly.

A checkpoint holds the whole state of a fit (``fastvi.engine.loop.FitState`` for the mixtures:
parameters, running or cached statistics, step counter, the random generator, the
position in the pass; ``fastvi.amortized.vae.EpochState`` for the VAE and PPCA) and a
``meta`` dict (the estimator's class and constructor parameters, the data it reads).  A
fit resumed from it ends with the same model, bit for bit, as the fit that was never
stopped.

File format (HDF5, version 2)
-----------------------------
Loading a checkpoint never runs code from it: the file is data (arrays and JSON), and
the only classes it can rebuild are the fastvi classes of a fixed list (``_classes``).
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
import dataclasses
import functools
import json
import math
import os
import time

import numpy as np

FORMAT = "fastvi-checkpoint"
FORMAT_VERSION = 2

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM,
                                                 np.random.MT19937, np.random.Philox,
                                                 np.random.SFC64)}
_DATASET_KINDS = "biufc"          # the dtypes stored as datasets; "OU" go into the JSON


def estimator_params(estimator):
    """The constructor arguments of an estimator, by inspecting its ``__init__``."""
    import inspect
    names = [p for p in inspect.signature(type(estimator).__init__).parameters if p != "self"]
    return {name: getattr(estimator, name) for name in names}


# Where the listed classes lived before the package was split by concern (fastvi 0.1.0,
# checkpoints written before issue 12): read under those names too, written under the new.
_FORMER_MODULES = {
    "fastvi.engine.loop": "fastvi._loop", "fastvi.engine.stats": "fastvi._stats",
    "fastvi.engine.backend": "fastvi._estep", "fastvi.mixture.vb": "fastvi._vb",
    "fastvi.engine.truncation": "fastvi._truncated", "fastvi.amortized.vae": "fastvi.amortized",
    "fastvi.amortized.ppca": "fastvi.ppca", "fastvi.amortized.nn": "fastvi._nn",
    "fastvi.mixture.estimators": "fastvi.mixture",
    "fastvi.amortized.encoder": "fastvi.mixture_encoder",
}


@functools.lru_cache(maxsize=None)
def _classes():
    """The classes a checkpoint may hold, by ``module.qualname`` (and former name).

    A fixed list, so that reading never imports a module or calls a constructor that a
    file names: an unknown name is an error.  Imported here, not at the top: the
    estimators sit below this module's package but their module is big to load.
    """
    from ..amortized import encoder, nn, ppca, vae
    from ..engine import backend, loop, stats, truncation
    from ..mixture import estimators, vb
    listed = (loop.FitState, stats.SufficientStats, backend.KernelParams, vb.Prior,
              vb.Posterior, truncation.Truncation, truncation.MemorySupports,
              truncation.FileSupports, vae.EpochState, vae.VAE, ppca.PPCA,
              nn.MLP, nn.Adam, nn.RowNoise, estimators.GaussianMixture,
              estimators.BayesianGaussianMixture, encoder.MixtureEncoder)
    names = {_qualified_name(cls): cls for cls in listed}
    for cls in listed:
        names[f"{_FORMER_MODULES[cls.__module__]}.{cls.__qualname__}"] = cls
    return names


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _own(cls, name):
    """Whether ``cls`` (or a base other than ``object``) defines the pickling hook ``name``."""
    return getattr(cls, name, None) is not getattr(object, name, None)


# ----------------------------------------------------------------------------- writing

class _Encoder:
    """Turns an object tree into a JSON tree and the list of its arrays."""

    def __init__(self):
        self.stacks = {}       # (dtype, shape) -> (dataset index, [arrays])
        self._seen = {}        # id(obj) -> (its node, obj): obj kept alive, so ids stay unique
        self._n_shared = 0

    def encode(self, value, where):
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is float:
            return value if math.isfinite(value) else {"float": repr(value)}
        if type(value) is tuple:
            return {"tuple": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, np.generic):
            return self._scalar(value, where)
        if isinstance(value, np.dtype):
            return {"dtype": self._dtype_name(value, where)}
        if isinstance(value, type) and issubclass(value, np.generic):
            return {"nptype": self._dtype_name(np.dtype(value), where)}
        if id(value) in self._seen:
            node = self._seen[id(value)][0]
            if "id" not in node:
                node["id"] = self._n_shared
                self._n_shared += 1
            return {"ref": node["id"]}
        node = {}
        # remembered before the children are encoded, so that a cycle ends in a ref
        self._seen[id(value)] = (node, value)
        node.update(self._mutable(value, where))
        return node

    def _mutable(self, value, where):
        """The node of an object that may be shared: containers, arrays, generators,
        instances of the listed classes."""
        if type(value) is list:
            return {"list": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if type(value) is dict:
            if all(type(k) is str for k in value):
                return {"dict": {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
            return {"items": [[self.encode(k, f"{where} key {k!r}"),
                               self.encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
        if type(value) is np.ndarray:
            return self._array(value, where)
        if type(value) is np.random.Generator:
            bit_generator = value.bit_generator
            name = type(bit_generator).__name__
            if _BIT_GENERATORS.get(name) is not type(bit_generator):
                raise TypeError(f"cannot write the bit generator {name} at {where} into a "
                                f"checkpoint (known: {', '.join(_BIT_GENERATORS)})")
            return {"generator": name,
                    "state": self.encode(bit_generator.state, f"{where}.state")}
        if type(value) is np.random.RandomState:
            return {"random_state": self.encode(value.get_state(legacy=False),
                                                f"{where}.state")}
        name = _qualified_name(type(value))
        if _classes().get(name) is type(value):
            state = value.__getstate__() if _own(type(value), "__getstate__") else vars(value)
            if type(state) is not dict:
                raise TypeError(f"cannot write {name} at {where}: its __getstate__ gives a "
                                f"{type(state).__name__}, not a dict")
            return {"object": name,
                    "state": {k: self.encode(v, f"{where}.{k}") for k, v in state.items()}}
        raise TypeError(f"cannot write a {name} (at {where}) into a checkpoint: it holds "
                        "only None, bool, int, float, str, lists, tuples, dicts, numpy "
                        "arrays, scalars, dtypes and generators, and fastvi's own state "
                        "classes")

    def _array(self, value, where):
        dtype = self._dtype_name(value.dtype, where)
        node = {"dtype": dtype, "shape": list(value.shape)}
        if value.flags.f_contiguous and not value.flags.c_contiguous:
            node["order"] = "F"      # as pickle keeps it: the kernels' results may depend on it
        if value.dtype.kind in _DATASET_KINDS:
            key = (dtype, value.shape)
            if key not in self.stacks:
                self.stacks[key] = (len(self.stacks), [])
            node["array"], stack = self.stacks[key]
            node["index"] = len(stack)
            stack.append(value)
        else:   # object and str arrays (feature names): their items, in C order
            node["objects"] = [self.encode(v, f"{where}.flat[{i}]")
                               for i, v in enumerate(value.ravel(order="C").tolist())]
        return node

    def _scalar(self, value, where):
        dtype = self._dtype_name(value.dtype, where)
        if value.dtype.kind not in "biufU":
            raise TypeError(f"cannot write a numpy {value.dtype} scalar (at {where}) into a "
                            "checkpoint")
        # .item() is exact for these kinds: float16/32 widen to a double without rounding
        return {"scalar": dtype, "value": self.encode(value.item(), where)}

    @staticmethod
    def _dtype_name(dtype, where):
        if dtype.fields is not None or dtype.kind not in _DATASET_KINDS + "OU":
            raise TypeError(f"cannot write numpy dtype {dtype} (at {where}) into a checkpoint")
        return dtype.str


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
        fastvi.io.OutputError
            If the file cannot be written (a full disk, ...); the last checkpoint, if
            any, is left as it was.
        """
        import h5py

        from .. import __version__
        from ..data.atomic import atomic_h5
        encoder = _Encoder()
        trees = {"state": encoder.encode(state, "state"),
                 "meta": encoder.encode(self.meta, "meta")}
        # atomic_h5: a temporary file, fsynced, renamed into place; private (0600) from
        # its creation on; a full disk is one OutputError naming the checkpoint.
        with atomic_h5(self.path, "the checkpoint", mode=0o600) as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["fastvi_version"] = __version__
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


# ----------------------------------------------------------------------------- reading

class _Decoder:
    """Rebuilds the objects of JSON trees from an open checkpoint file."""

    def __init__(self, f):
        self.f = f
        self._shared = {}
        self._stacks = {}      # dataset index -> its array, read once

    def decode(self, node):
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is not dict:
            raise ValueError(f"a bare {type(node).__name__} in the tree")
        for tag in ("ref", "list", "tuple", "dict", "items", "float", "array", "objects",
                    "scalar", "dtype", "nptype", "generator", "random_state", "object"):
            if tag in node:
                return getattr(self, "_" + tag)(node)
        raise ValueError(f"a node without a known tag: {sorted(node)}")

    def _share(self, node, value):
        """Register ``value`` under the node's id before its children are decoded."""
        if "id" in node:
            self._shared[node["id"]] = value
        return value

    def _ref(self, node):
        return self._shared[node["ref"]]

    def _list(self, node):
        value = self._share(node, [])
        value.extend(self.decode(v) for v in node["list"])
        return value

    def _tuple(self, node):
        return tuple(self.decode(v) for v in node["tuple"])

    def _dict(self, node):
        value = self._share(node, {})
        for k, v in node["dict"].items():
            value[k] = self.decode(v)
        return value

    def _items(self, node):
        value = self._share(node, {})
        for k, v in node["items"]:
            value[self.decode(k)] = self.decode(v)
        return value

    @staticmethod
    def _float(node):
        if node["float"] not in ("inf", "-inf", "nan"):
            raise ValueError(f"a float {node['float']!r}")
        return float(node["float"])

    def _array(self, node):
        dtype, shape = _dtype(node["dtype"], _DATASET_KINDS), tuple(node["shape"])
        i, j = int(node["array"]), int(node["index"])
        if i not in self._stacks:
            dataset = self.f["arrays"][str(i)]
            if dataset.dtype.str != dtype.str or dataset.shape[1:] != shape:
                raise ValueError(f"/arrays/{i} is {dataset.dtype.str} {dataset.shape}, its "
                                 f"entry says {dtype.str} (n, *{shape})")
            self._stacks[i] = dataset[()]
        stack = self._stacks[i]
        if stack.dtype.str != dtype.str or stack.shape[1:] != shape or not 0 <= j < len(stack):
            raise ValueError(f"/arrays/{i} is {stack.dtype.str} {stack.shape}, an entry says "
                             f"[{j}] of {dtype.str} {shape}")
        # a view of the stack, which only the loaded state holds: the arrays do not overlap
        value = stack[j, ...]                        # "...": a 0-d array, not a scalar
        if node.get("order") == "F":
            value = np.asfortranarray(value)
        return self._share(node, value)

    def _objects(self, node):
        dtype, shape = _dtype(node["dtype"], "OU"), tuple(node["shape"])
        value = self._share(node, np.empty(shape, dtype=dtype))
        flat = value.reshape(-1)                     # a view: the array is new and C-ordered
        items = node["objects"]
        if len(items) != flat.size:
            raise ValueError(f"{len(items)} items for an array of shape {shape}")
        for i, item in enumerate(items):
            flat[i] = self.decode(item)
        if node.get("order") == "F":
            value = np.asfortranarray(value)
        return value

    def _scalar(self, node):
        return _dtype(node["scalar"], "biufU").type(self.decode(node["value"]))

    @staticmethod
    def _dtype(node):
        return _dtype(node["dtype"], _DATASET_KINDS + "OU")

    @staticmethod
    def _nptype(node):
        return _dtype(node["nptype"], _DATASET_KINDS + "OU").type

    def _generator(self, node):
        bit_generator = _BIT_GENERATORS[node["generator"]]()
        value = self._share(node, np.random.Generator(bit_generator))
        bit_generator.state = self.decode(node["state"])
        return value

    def _random_state(self, node):
        value = self._share(node, np.random.RandomState())
        value.set_state(self.decode(node["random_state"]))
        return value

    def _object(self, node):
        name = node["object"]
        cls = _classes().get(name)
        if cls is None:
            raise ValueError(f"it names the class {name!r}, which is not one a checkpoint "
                             "may hold")
        value = self._share(node, cls.__new__(cls))
        state = {k: self.decode(v) for k, v in node["state"].items()}
        if _own(cls, "__setstate__"):
            value.__setstate__(state)
        else:
            value.__dict__.update(state)     # not setattr: frozen dataclasses refuse it
        if dataclasses.is_dataclass(cls):
            _fill_defaults(value, cls)
        return value


def _dtype(name, kinds):
    dtype = np.dtype(name)
    if dtype.fields is not None or dtype.kind not in kinds:
        raise ValueError(f"the dtype {name!r} where one of kinds {kinds!r} belongs")
    return dtype


def _fill_defaults(value, cls):
    """Give fields added to ``cls`` since the checkpoint was written their defaults (the
    dataclass's own, not the file's); a missing field without one is an error."""
    for field in dataclasses.fields(cls):
        if field.name in value.__dict__:
            continue
        if field.default is not dataclasses.MISSING:
            value.__dict__[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            value.__dict__[field.name] = field.default_factory()
        else:
            raise ValueError(f"its {cls.__name__} lacks the field {field.name!r}")


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
        fastvi, a damaged or truncated file, or not a fastvi checkpoint.
    """
    import h5py
    path = os.fspath(path)
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
        decoder = _Decoder(f)
        try:
            # state first: the ids that meta may refer to are defined in it
            state = decoder.decode(json.loads(f["state"].asstr()[()]))
            meta = decoder.decode(json.loads(f["meta"].asstr()[()]))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OSError,
                RuntimeError) as exc:
            # h5py reports a truncated dataset as OSError or KeyError, a bad tree as the rest
            raise ValueError(f"{path}: not a readable fastvi checkpoint ({exc})") from None
    return state, meta
