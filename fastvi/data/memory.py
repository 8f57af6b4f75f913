"""Memory checks of sizes: refuse a size whose arrays cannot fit in this machine's memory
before they are allocated, in one sentence that names the parameter to change.

A job that needs more memory than the machine has can only fail: in a MemoryError deep in
the work (an "internal error" to the command line), or after an allocation that pushes
everything else out of memory first.  ``check_memory(n_bytes, what, purpose)`` says so
up front: ``n_features (--n-features) 1000000 needs 36 TiB for one full covariance ...;
this machine has 24 GiB`` (a ``SizeError``, a ValueError: the command line's ``fastvi:
error: ...``, exit status 2).  The callers count their arrays' bytes with ``array_bytes``
(Python integers: no overflow, whatever the sizes).

No scikit-learn or Numba here: ``fastvi make-data`` checks its sizes and loads neither.
"""
import os

import numpy as np


class SizeError(ValueError):
    """A size (a parameter, or the data's shape with it) whose arrays need more memory
    than this machine has: refused before anything is allocated, naming the parameter.

    A ValueError, so the command line reports it as bad input (``fastvi: error: ...``,
    exit status 2) and code that catches ValueError catches it.
    """


_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def format_bytes(n_bytes):
    """``n_bytes`` in binary units, e.g. ``'7.3 TiB'``, ``'24 GiB'``, ``'512 bytes'``.

    Two or three significant digits: enough to compare a need with what a machine has.
    """
    value = float(n_bytes)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(n_bytes)} bytes"
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text.removesuffix('.0')} {_UNITS[unit]}"


def physical_memory():
    """Bytes of physical memory of this machine, or None where the OS does not tell."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):      # pragma: no cover - not POSIX
        return None
    if pages <= 0 or page_size <= 0:                    # pragma: no cover
        return None
    return pages * page_size


def array_bytes(shape, dtype=np.float64):
    """Bytes of an array of ``shape`` and ``dtype``, as a Python int (never overflows,
    whatever the sizes: numpy's own products wrap or raise past 2**63)."""
    n_bytes = np.dtype(dtype).itemsize
    for size in shape:
        n_bytes *= int(size)
    return n_bytes


def shape_text(shape, dtype=np.float64):
    """``'16 x 1000000 x 1000000 float64'``: an array's shape and dtype in a message."""
    return " x ".join(str(int(size)) for size in shape) + f" {np.dtype(dtype).name}"


def check_memory(n_bytes, what, purpose):
    """Refuse a size whose arrays cannot fit in this machine's memory, before they are
    allocated.

    The need is compared with the physical memory (``physical_memory``): a job that needs
    more can only fail, after an allocation that may first push everything else out of
    memory, or end in a MemoryError deep in the work.  A need below it may still fail
    where other programs hold the memory; that MemoryError is the command line's last
    line of defence (``fastvi.cli.main``).

    Parameters
    ----------
    n_bytes : int
        The bytes the arrays need (``array_bytes``).
    what : str
        The parameter that sets the size, with its value (and command-line option):
        ``"n_features (--n-features) 1000000"``.
    purpose : str
        What the memory is for: ``"the 16 components' covariances (16 x 1000000 x
        1000000 float64)"``.

    Raises
    ------
    SizeError
        ``"<what> needs <n_bytes> for <purpose>; this machine has <memory>"``.
    """
    total = physical_memory()
    if total is not None and n_bytes > total:
        raise SizeError(f"{what} needs {format_bytes(n_bytes)} for {purpose}; this machine "
                        f"has {format_bytes(total)}")
