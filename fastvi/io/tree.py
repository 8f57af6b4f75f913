"""The JSON trees of checkpoints: objects to JSON and stacked arrays, and back.

The tree format is described in ``fastvi.io.checkpoint``; this module is its codec.
``Encoder`` turns an object tree into JSON and a list of arrays stacked by dtype and shape;
``Decoder`` rebuilds the objects from an open checkpoint file, making only instances of
the fixed list of classes in ``classes()`` (the engine's, and those the estimators
register in ``fastvi.io.registry``), never importing what a file names.
"""
import dataclasses
import functools
import math

import numpy as np

from . import registry

_BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM,
                                                 np.random.MT19937, np.random.Philox,
                                                 np.random.SFC64)}
_DATASET_KINDS = "biufc"          # the dtypes stored as datasets; "OU" go into the JSON


# Where the engine's classes lived before the package was split by concern (fastvi 0.1.0,
# checkpoints written before issue 12): read under those names too, written under the new.
# (The estimators' packages give their classes' former names when they register them.)
_FORMER_MODULES = {
    "fastvi.engine.loop": "fastvi._loop", "fastvi.engine.stats": "fastvi._stats",
    "fastvi.engine.backend": "fastvi._estep", "fastvi.engine.truncation": "fastvi._truncated",
}


@functools.lru_cache(maxsize=None)
def _register_engine_classes():
    # Imported here, not at the top: the engine's modules are big to load, and a model
    # file's reader needs none of them.
    from ..engine import backend, loop, stats, truncation
    for cls in (loop.FitState, stats.SufficientStats, backend.KernelParams,
                truncation.Truncation, truncation.MemorySupports, truncation.FileSupports):
        registry.register_state_class(cls, _FORMER_MODULES[cls.__module__])


def classes():
    """The classes a checkpoint may hold, by ``module.qualname`` (and former name).

    A fixed list, so that reading never imports a module or calls a constructor that a
    file names: an unknown name is an error.  The engine's classes are listed here (the
    engine is below ``fastvi.io``); the estimators' packages register theirs
    (``fastvi.io.registry``), which the lookup imports first.
    """
    _register_engine_classes()
    return registry.state_classes()


def _qualified_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _own(cls, name):
    """Whether ``cls`` (or a base other than ``object``) defines the pickling hook ``name``."""
    return getattr(cls, name, None) is not getattr(object, name, None)


# ----------------------------------------------------------------------------- writing

class Encoder:
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
        if classes().get(name) is type(value):
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


class DecodeError(ValueError):
    """A tree that does not decode; the message says where in it (``state.memo[3].nk``)."""

    def __init__(self, where, problem):
        super().__init__(f"{where}: {problem}")
        self.where = where


class Decoder:
    """Rebuilds the objects of JSON trees from an open checkpoint file."""

    def __init__(self, f):
        self.f = f
        self._shared = {}
        self._stacks = {}      # dataset index -> its array, read once

    def decode(self, node, where="state"):
        """The object of ``node``, the tree at ``where`` (named in a ``DecodeError``)."""
        if node is None or type(node) in (bool, int, float, str):
            return node
        if type(node) is not dict:
            raise DecodeError(where, f"a bare {type(node).__name__} in the tree")
        for tag in ("ref", "list", "tuple", "dict", "items", "float", "array", "objects",
                    "scalar", "dtype", "nptype", "generator", "random_state", "object"):
            if tag in node:
                try:
                    return getattr(self, "_" + tag)(node, where)
                except DecodeError:
                    raise
                except (KeyError, IndexError, TypeError, ValueError, AttributeError, OSError,
                        RuntimeError, OverflowError) as exc:
                    # the innermost node names the place; h5py reports a truncated dataset
                    # as OSError or KeyError, numpy a value out of a dtype's range as
                    # OverflowError, and KeyError's text is the key's repr
                    raise DecodeError(where, _problem(exc)) from None
        raise DecodeError(where, f"a node without a known tag: {sorted(node)}")

    def _share(self, node, value):
        """Register ``value`` under the node's id before its children are decoded."""
        if "id" in node:
            self._shared[node["id"]] = value
        return value

    def _ref(self, node, where):
        if node["ref"] not in self._shared:
            raise ValueError(f"a reference to {node['ref']!r}, which no earlier node has")
        return self._shared[node["ref"]]

    def _list(self, node, where):
        value = self._share(node, [])
        value.extend(self.decode(v, f"{where}[{i}]") for i, v in enumerate(node["list"]))
        return value

    def _tuple(self, node, where):
        return tuple(self.decode(v, f"{where}[{i}]") for i, v in enumerate(node["tuple"]))

    def _dict(self, node, where):
        value = self._share(node, {})
        for k, v in node["dict"].items():
            value[k] = self.decode(v, f"{where}[{k!r}]")
        return value

    def _items(self, node, where):
        value = self._share(node, {})
        for k, v in node["items"]:
            key = self.decode(k, f"{where} key")
            value[key] = self.decode(v, f"{where}[{key!r}]")
        return value

    @staticmethod
    def _float(node, where):
        if node["float"] not in ("inf", "-inf", "nan"):
            raise ValueError(f"a float {node['float']!r}")
        return float(node["float"])

    def _array(self, node, where):
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

    def _objects(self, node, where):
        dtype, shape = _dtype(node["dtype"], "OU"), tuple(node["shape"])
        items = node["objects"]
        # before the array is made: a shape of 10**12 items is a corrupt tree, not a
        # MemoryError
        if any(type(n) is not int or n < 0 for n in shape) or len(items) != math.prod(shape):
            raise ValueError(f"{len(items)} items for an array of shape {shape}")
        value = self._share(node, np.empty(shape, dtype=dtype))
        flat = value.reshape(-1)                     # a view: the array is new and C-ordered
        for i, item in enumerate(items):
            flat[i] = self.decode(item, f"{where}.flat[{i}]")
        if node.get("order") == "F":
            value = np.asfortranarray(value)
        return value

    def _scalar(self, node, where):
        return _dtype(node["scalar"], "biufU").type(self.decode(node["value"], where))

    @staticmethod
    def _dtype(node, where):
        return _dtype(node["dtype"], _DATASET_KINDS + "OU")

    @staticmethod
    def _nptype(node, where):
        return _dtype(node["nptype"], _DATASET_KINDS + "OU").type

    def _generator(self, node, where):
        bit_generator = _BIT_GENERATORS[node["generator"]]()
        value = self._share(node, np.random.Generator(bit_generator))
        state = self.decode(node["state"], f"{where}.state")
        try:
            bit_generator.state = state
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"a {node['generator']} state that numpy refuses: {exc}") from None
        return value

    def _random_state(self, node, where):
        value = self._share(node, np.random.RandomState())
        value.set_state(self.decode(node["random_state"], f"{where}.state"))
        return value

    def _object(self, node, where):
        name = node["object"]
        cls = classes().get(name)
        if cls is None:
            raise ValueError(f"it names the class {name!r}, which is not one a checkpoint "
                             "may hold")
        value = self._share(node, cls.__new__(cls))
        state = {k: self.decode(v, f"{where}.{k}") for k, v in node["state"].items()}
        if _own(cls, "__setstate__"):
            value.__setstate__(state)
        else:
            value.__dict__.update(state)     # not setattr: frozen dataclasses refuse it
        if dataclasses.is_dataclass(cls):
            _fill_defaults(value, cls)
        return value


def _problem(exc):
    """What a decoding error says: a missing key by its name (KeyError's text is its
    argument's repr; h5py's KeyError for a missing dataset is a sentence)."""
    if type(exc) is KeyError and exc.args:
        key = exc.args[0]
        return f"no {key!r}" if not isinstance(key, str) or " " not in key else key
    return str(exc)


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
