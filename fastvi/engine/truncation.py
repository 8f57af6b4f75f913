"""Variational EM with truncated posteriors: each row's q(z_n) lives on at most L components.

The kernel (``fastvi.kernels.truncated``) does the per-row search, driven by a backend
(``fastvi.engine.local``: the search, the neighbour lists that steer it); this module holds
the settings (``Truncation``) and the per-row supports that persist between passes.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..data.atomic import OutputError, atomic_h5, same_file
from ..data.checks import _is_integer

SUPPORT_DTYPE = np.int32


@dataclass(frozen=True)
class Truncation:
    """How a truncated E-step searches.

    n_active : L, the size of each row's support
    n_candidates : G, the components evaluated per row (clipped to K; K means all of
        them, in which case the top L are exact and no state is kept between passes)
    n_random : R of the G candidates drawn at random, the rest from the neighbour lists
    n_components : K
    """

    n_active: int
    n_candidates: int
    n_random: int
    n_components: int

    @property
    def exhaustive(self):
        """Every component is a candidate: exact top-L, no search and no stored supports."""
        return self.n_candidates >= self.n_components


def make_truncation(n_active, n_candidates, n_components):
    """The ``Truncation`` for an estimator's ``n_active`` / ``n_candidates``, or None (dense).

    ``n_candidates=None`` evaluates every component: an exact top-L truncation.  A quarter
    of the non-support candidates (at least one) are random, which lets a row escape a
    neighbourhood whose lists are stale or poor (Hirschberger et al. 2022 add random
    clusters to the search space for the same reason).
    """
    if n_active is None:
        if n_candidates is not None:
            raise ValueError("n_candidates needs n_active (the support size L); "
                             f"got n_candidates={n_candidates!r} with n_active=None")
        return None
    if not _is_integer(n_active) or not 1 <= n_active <= n_components:
        raise ValueError(f"n_active must be an integer in [1, n_components={n_components}], "
                         f"got {n_active!r}")
    if n_candidates is None:
        n_candidates = n_components
    if not _is_integer(n_candidates) or n_candidates < n_active:
        raise ValueError(f"n_candidates must be an integer >= n_active={n_active} (or None for "
                         f"all {n_components} components), got {n_candidates!r}")
    n_candidates = min(int(n_candidates), n_components)
    if n_candidates == n_active < n_components:
        raise ValueError(f"n_candidates={n_candidates} equals n_active: the candidates would "
                         "be the support alone and it would never change; give at least "
                         f"n_active + 1 = {n_active + 1} (or None for all components)")
    if n_candidates == n_components:
        n_random = 0
    else:
        n_random = min(max(1, (n_candidates - n_active) // 4), n_candidates - n_active)
    return Truncation(int(n_active), n_candidates, n_random, n_components)


class MemorySupports:
    """Per-row supports held in memory: (n_rows, L) int32, -1 where a row has none yet."""

    def __init__(self, n_rows, n_active):
        self.array = np.full((n_rows, n_active), -1, dtype=SUPPORT_DTYPE)

    def rows(self, start, stop):
        return self.array[start:stop]

    def commit(self, start, rows):
        """``rows`` is a view, already updated in place."""


SUPPORTS_FORMAT = "fastvi-supports"


def check_support_file(path):
    """A support file replaces only an earlier fit's support file (or nothing).

    Raises
    ------
    OutputError
        ``path`` exists and is something else: a user's file, or the fit's own data.
    """
    if os.path.lexists(path) and not _is_supports_file(path):
        raise OutputError(f"cannot write the support file {os.fspath(path)!r}: it exists "
                          "and is not a fastvi support file (choose another path, or "
                          "remove it)")


def _is_supports_file(path):
    import h5py
    if not os.path.isfile(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            data = f.get("supports")
            return (f.attrs.get("format") == SUPPORTS_FORMAT
                    # written before the format attribute: the one dataset
                    or (isinstance(data, h5py.Dataset) and data.dtype == SUPPORT_DTYPE
                        and data.ndim == 2 and len(f) == 1))
    except (OSError, RuntimeError):
        return False


class FileSupports:
    """Per-row supports in an HDF5 file, for data larger than memory: dataset ``supports``
    (n_rows, L) int32, -1 where a row has none yet (the fill value, so nothing is written
    up front).  Each chunk's rows are read before its E-step and written back after it.

    A checkpoint stores only the path and reopens the file on resume.  The file may
    then hold supports newer than the checkpoint (chunks processed after it); they are
    valid supports all the same, so the resumed fit is correct, but it is not bit-identical
    to an uninterrupted one as it is with in-memory supports.
    """

    def __init__(self, path, n_rows, n_active, chunk_rows=None, inputs=()):
        self.path, self.n_rows, self.n_active = os.fspath(path), int(n_rows), int(n_active)
        self._check_path(inputs)
        self._create()
        self._open()

    def _check_path(self, inputs):
        """The file is made anew for each fit: never over an input of the fit (the rows
        it reads), nor over a file that is not an earlier fit's supports file."""
        for other in inputs:
            if same_file(self.path, other):
                raise OutputError(f"cannot write the support file {self.path!r}: it would "
                                  f"overwrite the data {os.fspath(other)!r}")
        check_support_file(self.path)

    def _create(self):
        """Write the file whole, every row's supports -1, before the fit starts: its space
        is taken now (a contiguous dataset allocated and filled at creation), so a full
        disk is one ``OutputError`` here, with nothing left behind, and never a failed
        write in the middle of a pass (which HDF5 cannot close cleanly).  The rows are
        then rewritten in place, a chunk at a time, into space the file already has."""
        import h5py
        with atomic_h5(self.path, "the support file") as f:
            f.attrs["format"] = SUPPORTS_FORMAT
            space = h5py.h5s.create_simple((self.n_rows, self.n_active))
            plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            plist.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
            plist.set_fill_value(np.array(-1, dtype=SUPPORT_DTYPE))
            h5py.h5d.create(f.id, b"supports", h5py.h5t.py_create(SUPPORT_DTYPE), space,
                            dcpl=plist)

    def _open(self):
        import h5py
        try:
            self._file = h5py.File(self.path, "r+")
            self._data = self._file["supports"]
        except (OSError, KeyError) as exc:
            raise ValueError(f"{self.path}: cannot reopen the supports file of this fit "
                             f"({exc}); it must stay in place until the fit ends") from None
        if self._data.shape != (self.n_rows, self.n_active):
            raise ValueError(f"{self.path}: /supports has shape {self._data.shape}, expected "
                             f"{(self.n_rows, self.n_active)}")

    def rows(self, start, stop):
        return self._data[start:stop]

    def commit(self, start, rows):
        self._data[start:start + rows.shape[0]] = rows

    def __getstate__(self):
        return {"path": self.path, "n_rows": self.n_rows, "n_active": self.n_active}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()
