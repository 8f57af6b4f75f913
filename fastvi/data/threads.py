"""Thread limits of the native libraries (BLAS, OpenMP) around a call, cheaply.

``threadpoolctl.threadpool_limits`` scans every shared library of the process each time it
is entered (about 3 ms here): twice per ``fit``, that was most of a small fit's time
(iris, diag, K = 3: 13 ms against scikit-learn's 2 ms).  One scan is kept and the
limits are set through it in microseconds.  Libraries are loaded by imports, so
the scan is made again whenever ``sys.modules`` has changed size since the last one: a library
loaded later (SciPy's own OpenBLAS, scikit-learn's OpenMP) is never missed.
"""
import os
import sys
import threading
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

_lock = threading.Lock()
# (the sys.modules size it was made at, {user_api: the native libraries it selects}),
# replaced whole, never changed in place: a thread that read it keeps a consistent one
_scan = (-1, {})


def _selected(user_api):
    """The thread-pool controllers of ``user_api``'s libraries (None: all), scanned again
    when ``sys.modules`` has changed size since the last scan."""
    global _scan
    seen, libraries = _scan
    if len(sys.modules) != seen:
        with _lock:
            seen, libraries = _scan
            if len(sys.modules) != seen:
                every = ThreadpoolController().lib_controllers
                libraries = {None: every}
                for api in ("blas", "openmp"):
                    libraries[api] = [lib for lib in every if lib.user_api == api]
                _scan = (len(sys.modules), libraries)
    return libraries[user_api]


@contextmanager
def limit_threads(limits, user_api=None):
    """Limit the native thread pools (``user_api``: "blas", "openmp" or None for both)
    to ``limits`` threads during the block, restored on exit: what
    ``threadpoolctl.threadpool_limits(limits, user_api)`` does, without its scan of the
    process's libraries and its report of every library's settings on each entry."""
    libraries = _selected(user_api)
    previous = [lib.num_threads for lib in libraries]
    changed = [(lib, n) for lib, n in zip(libraries, previous) if n != limits]
    for lib, _ in changed:
        lib.set_num_threads(limits)
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)


def available_cores():
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):       # pragma: no cover - not Linux
        return os.cpu_count() or 1
