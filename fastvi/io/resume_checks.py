"""Checkpointed states that no fit could have written, refused before a fit resumes one.

``validate_state`` checks every field of a loaded state (``fastvi.engine.loop.FitState``
for the mixtures, ``fastvi.amortized.vae.EpochState`` for the VAE and PPCA) against the
estimator and the data of the fit that resumes it, and raises ``CorruptCheckpoint`` naming
the checkpoint file and the field.  ``fastvi.io.checkpoint.load_checkpoint`` remembers
which file each state came from, so ``fit(..., resume=state)`` names it too.

Here: the error, the vocabulary of the checks (``_Check``: a field's type, integer
range, array shape and values, chunk keys, random generator) and ``validate_state``; the
checks of each kind of state live beside its estimators (``fastvi.mixture.state_checks``,
``fastvi.amortized.state_checks``), which register them (``fastvi.io.registry``).
"""
import math
import numbers
import os
import reprlib
import weakref

import numpy as np

from . import registry


class CorruptCheckpoint(ValueError):
    """A checkpointed state that no fit could have written (a chunk index out of range, a
    NaN or negative count, an array of the wrong shape, ...): refused before a resumed
    fit reads it, with a message naming the file and the field."""


# id(state) -> (a weak reference to it, the file it was read from, that file's meta and
# the settings of the Checkpointer that wrote it), so that the error of a corrupt state
# given to ``fit(..., resume=state)`` names the file it came from, and a resumed fit goes
# on checkpointing to it as its writer did
_LOADED_FROM = {}


def _remember_file(state, path, meta=None, settings=None):
    key = id(state)
    try:
        ref = weakref.ref(state, lambda _, key=key: _LOADED_FROM.pop(key, None))
    except TypeError:                # a state of a kind that takes no weak references
        return
    _LOADED_FROM[key] = (ref, path, meta, settings or {})


def _loaded_from(state):
    """``(path, meta, settings)`` of the checkpoint file ``state`` was read from by
    ``load_checkpoint``, or None."""
    ref, path, meta, settings = _LOADED_FROM.get(id(state), (None, None, None, None))
    return (path, meta, settings) if ref is not None and ref() is state else None


def _file_of(state):
    """The checkpoint file ``state`` was read from by ``load_checkpoint``, or None."""
    found = _loaded_from(state)
    return None if found is None else found[0]


def validate_state(state, model, source, path=None):
    """Refuse a checkpointed state that the fit resuming it could not have written.

    Every field of the state is checked against the estimator and the data of the fit
    that resumes it: types, shapes (the parameters' and statistics' from
    ``n_components``, the number of features and ``covariance_type``), finite values,
    counts >= 0, weights that sum to 1, positive definite precisions, chunk indices of
    the data's chunks, an order that visits each chunk once, a position within it, a step
    count that matches them, component indices below the number of components, a random
    generator that is not stuck.  A tampered or garbled file is refused here, naming the
    file and the field, rather than crashing the kernels (which do not check bounds),
    hanging, or resuming to a silently wrong fit.  Whether the state is of *this* data
    and model (``ResumeMismatch``) is ``fastvi.engine.loop.check_resumable``'s question.

    Parameters
    ----------
    state : FitState or EpochState
        As ``load_checkpoint`` returns it.
    model : BaseMixture or VAE
        The estimator that resumes it (its parameters, not its fitted attributes).
    source : ChunkSource
        The data the fit resumes on.
    path : str, optional
        The checkpoint file, for the message; by default the file ``load_checkpoint``
        read ``state`` from, if it did.

    Raises
    ------
    CorruptCheckpoint
        A ValueError: ``'PATH': corrupt checkpoint: FIELD ... (expected ...); remove it
        to start afresh``.
    """
    check = _Check(os.fspath(path) if path is not None else _file_of(state))
    # the estimators' own checks (fastvi.mixture.state_checks, fastvi.amortized.
    # state_checks), registered by their packages: fastvi.io knows no estimator
    check_state = registry.resume_check(model)
    if check_state is None:
        raise TypeError(f"validate_state: no checks are registered for a "
                        f"{type(model).__name__} (expected a fastvi estimator)")
    check_state(check, state, model, source)


def _what(value):
    """'an int', 'a list', 'None': the kind of ``value``, for messages."""
    if value is None:
        return "None"
    if type(value) is np.ndarray:
        return f"a {value.dtype} array of shape {value.shape}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _shown(value):
    """``value`` in a message: numbers plainly (not ``np.int64(3)``), the rest shortened."""
    if _is_int(value):
        return str(int(value))
    if _is_real(value):
        return repr(float(value))
    return reprlib.repr(value)


def _same(a, b):
    """Whether two settings are equal (an array's elementwise answer is no answer)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class _Check:
    """The checks of a state's fields; a failure is one ``CorruptCheckpoint`` naming the
    file (when known) and the field."""

    def __init__(self, path):
        self.path = path

    @property
    def where(self):
        """The checkpoint, as messages name it."""
        return repr(self.path) if self.path is not None else "the resumed state"

    def fail(self, field, problem):
        if self.path is None:
            raise CorruptCheckpoint(f"corrupt checkpoint state: {field} {problem}")
        raise CorruptCheckpoint(f"{self.path!r}: corrupt checkpoint: {field} {problem}; "
                                "remove it to start afresh")

    def type(self, field, value, cls, expected):
        if type(value) is not cls:
            self.fail(field, f"is {_what(value)} (expected {expected})")
        return value

    def integer(self, field, value, low, high=None, expected=None):
        """An int (not a bool) in ``low..high``."""
        if not _is_int(value) or value < low or (high is not None and value > high):
            if expected is None:
                expected = (f"an integer >= {low}" if high is None
                            else f"an integer in {low}..{high}")
            self.fail(field, f"is {_shown(value)} (expected {expected})")
        return int(value)

    def real(self, field, value, low=None, allow=(), expected="a finite number"):
        """A finite real number (or one of ``allow``, such as -inf) > ``low``."""
        if not _is_real(value) or not (math.isfinite(value) or value in allow) or (
                low is not None and not value > low):
            self.fail(field, f"is {_shown(value)} (expected {expected})")
        return float(value)

    def array(self, field, value, shape, what="", kind="f", dtype=None, finite=True):
        """A numpy array of ``shape``, of a dtype of ``kind`` (exactly ``dtype`` if given),
        finite if floating; ``what`` says what the shape stands for."""
        expected = f"{tuple(shape)}: {what}" if what else f"{tuple(shape)}"
        if type(value) is not np.ndarray:
            self.fail(field, f"is {_what(value)} (expected an array of shape {expected})")
        if value.dtype.kind not in kind or (dtype is not None and value.dtype != dtype):
            want = dtype if dtype is not None else (
                "floating point" if kind == "f" else "integers")
            self.fail(field, f"holds {value.dtype} values (expected {want})")
        if value.shape != tuple(shape):
            self.fail(field, f"has shape {value.shape} (expected {expected})")
        if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
            self.fail(field, "contains NaN or infinity")
        return value

    def positive(self, field, value, low=0.0, expected="positive values", strict=True):
        """Every entry of the (finite) array ``value`` > ``low`` (>= if not ``strict``)."""
        good = value > low if strict else value >= low
        if not good.all():
            self.fail(field, f"holds {_shown(value[~good].flat[0])} (expected {expected})")
        return value

    def indices(self, field, value, low, high, expected):
        """Every entry of the integer array ``value`` in ``low..high``."""
        if value.size and (value.min() < low or value.max() > high):
            self.fail(field, f"holds {_shown(value[(value < low) | (value > high)].flat[0])} "
                      f"(expected {expected})")
        return value

    def chunk_keys(self, field, value, n_chunks, what):
        """A dict whose keys are chunk indices."""
        self.type(field, value, dict, f"a dict of {what} by chunk index")
        for key in value:
            if not _is_int(key) or not 0 <= key < n_chunks:
                self.fail(field, f"has the key {_shown(key)}, not a chunk index (expected "
                          f"keys in 0..{n_chunks - 1})")
        return value

    def same_keys(self, field, value, keys, other):
        """The dict ``value`` has the keys ``keys`` of the field ``other``."""
        for key in value:
            if key not in keys:
                self.fail(field, f"has chunk {_shown(key)}, which {other} lacks (expected "
                          f"the chunks of {other})")
        for key in keys:
            if key not in value:
                self.fail(field, f"lacks chunk {_shown(key)} (expected the chunks of {other})")

    def generator(self, field, rng):
        """A numpy Generator whose bit generator is not stuck at one value."""
        if type(rng) is not np.random.Generator:
            self.fail(field, f"is {_what(rng)} (expected a numpy Generator)")
        bit_generator = rng.bit_generator
        name = type(bit_generator).__name__
        state = bit_generator.state
        if name in ("PCG64", "PCG64DXSM") and state["state"]["inc"] % 2 == 0:
            # numpy's seeding makes the increment odd, as a full-period LCG needs; with an
            # even one and a zero state it draws zeros forever, and a bounded draw (the
            # chunk order's permutation) rejects zeros forever
            self.fail(field, f"has a {name} state with an even increment "
                      f"({state['state']['inc']}; a seeded generator's is odd)")
        kept, half = state.get("has_uint32", 0), state.get("uinteger", 0)
        if kept not in (0, 1) or not _is_int(half) or not 0 <= half < 1 << 32:
            # the half of a 64-bit draw kept for the next 32-bit one (MT19937 keeps none)
            self.fail(field, f"has a {name} state with has_uint32={_shown(kept)} and "
                      f"uinteger={_shown(half)} (expected 0 or 1, and a 32-bit value)")
        probe = type(bit_generator)()
        probe.state = state
        draws = probe.random_raw(8)
        if (draws == draws[0]).all():        # any bit generator stuck (an all-zero key)
            self.fail(field, f"has a {name} state that draws {int(draws[0])} over and over")
