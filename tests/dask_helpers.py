"""Helpers for tests/test_dask.py that must run on the Dask workers.

The workers unpickle what the tests send them by reference (module and name), so anything
a task calls lives here, in a module they can import: the workers are spawned with the
test process's ``sys.path``, which holds ``tests/`` (pytest's rootdir insertion).

* a slow chunk task: the backend's, after a delay, so a task is still running when a test
  kills its worker;
* a flaky reader: the first read of a fit in each worker process fails (an ``OSError``
  that the task's ``retries`` get past);
* tasks that fail as on a worker without fastvi;
* worker probes for ``client.run`` (executing tasks; hiding fastvi from a worker's imports
  and giving it back).
"""
import sys
import time

from fastvi.data.sources import HDF5Source, _HDF5Reader


DELAY = 0.25


def slow_chunk_stats_task(*args):
    """``fastvi.engine.cluster.chunk_stats_task`` after ``DELAY`` seconds, so a task is
    still running when a test kills its worker (a new task name: the scheduler has no
    record of these tasks being quick, and spreads a pass's tasks over the workers)."""
    from fastvi.engine.cluster import chunk_stats_task
    time.sleep(DELAY)
    return chunk_stats_task(*args)


_FAILED = set()       # per worker process: the tokens whose first read already failed


class FlakyHDF5Reader(_HDF5Reader):
    """The first read with this ``token`` in each process fails with an OSError (a
    transient read error), every later one reads the rows."""

    def __init__(self, reader, token):
        super().__init__(reader.path, reader.name, reader.dtype, reader.label)
        self.token = token

    def read(self, start, stop):
        if self.token not in _FAILED:
            _FAILED.add(self.token)
            raise OSError(f"transient read error {self.token}")
        return super().read(start, stop)


class FlakyHDF5Source(HDF5Source):
    token = None

    def remote_reader(self):
        return FlakyHDF5Reader(super().remote_reader(), self.token)


def no_fastvi_task(*args, **kwargs):
    """What a task's call gives on a worker whose environment has no fastvi."""
    raise ModuleNotFoundError("No module named 'fastvi'")


def executing(dask_worker):
    """The number of tasks this worker is running now (``client.run``)."""
    return len(dask_worker.state.executing)


def hide_fastvi():
    """Make this worker process unable to import fastvi, as one where it is not installed
    (``client.run``); ``show_fastvi`` undoes it.  Returns the modules hidden."""
    hidden = {name: module for name, module in sys.modules.items()
              if name == "fastvi" or name.startswith("fastvi.")}
    for name in hidden:
        del sys.modules[name]
    sys.modules["fastvi"] = None        # import fastvi -> ModuleNotFoundError
    globals()["_HIDDEN"] = hidden
    return len(hidden)


def show_fastvi():
    hidden = globals().pop("_HIDDEN", None)
    if hidden is None:
        return 0
    sys.modules.pop("fastvi", None)
    sys.modules.update(hidden)
    return len(hidden)


def kernel_threads_in_a_task(nthreads_env, *args):
    """Run ``chunk_stats_task(*args)`` with ``NUMBA_NUM_THREADS`` set to ``nthreads_env``
    in this worker's environment; return the Numba threads of the task's thread then,
    and put both back."""
    import os
    import numba
    from fastvi.engine.cluster import chunk_stats_task
    before, threads = os.environ.get("NUMBA_NUM_THREADS"), numba.get_num_threads()
    os.environ["NUMBA_NUM_THREADS"] = nthreads_env
    try:
        chunk_stats_task(*args)
        return numba.get_num_threads()
    finally:
        numba.set_num_threads(threads)
        if before is None:
            del os.environ["NUMBA_NUM_THREADS"]
        else:
            os.environ["NUMBA_NUM_THREADS"] = before
