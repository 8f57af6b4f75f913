"""A Dask cluster of worker processes on this machine, for scripts and for ``--workers N``.

``distributed.LocalCluster`` starts its workers as new processes that import the main
script again (multiprocessing's "spawn"): in a script whose cluster is started at its top
level, outside ``if __name__ == "__main__":``, every worker starts a cluster of its own
while it starts, Python refuses that, and the user reads three tracebacks ending in
"Nanny failed to start".  ``local_client`` starts the same cluster and says so in one
sentence instead: in the worker (whose bootstrapping flag multiprocessing itself checks)
and in the script.
"""
import ast
import inspect
import logging
import multiprocessing
import os
import sys
from contextlib import contextmanager

from ..data.threads import available_cores

UNGUARDED = ("the Dask cluster cannot start: its worker processes import the script {script} "
             "again, which starts a cluster again; put the code that starts it under "
             "'if __name__ == \"__main__\":'")


def local_cluster_kwargs(n_workers, cores=None, debug=False):
    """``distributed.LocalCluster`` arguments for ``n_workers`` workers on ``cores`` cores.

    One task at a time per worker process (``threads_per_worker=1``), each task's Numba
    kernel on ``max(1, cores // N)`` threads (``NUMBA_NUM_THREADS`` in the workers'
    environment, read when a worker first imports Numba): N workers then fill the cores
    without oversubscribing them, and no process ever runs two parallel Numba kernels at
    once (the workqueue threading layer cannot).  No dashboard, the scheduler's HTTP
    routes on a free local port (not 8787, which another cluster may hold: a warning), and
    the workers' logs silenced below CRITICAL (a failed task is one error, not a log
    stream) unless ``debug``.
    """
    cores = available_cores() if cores is None else int(cores)
    threads = max(1, cores // int(n_workers))
    return {"n_workers": int(n_workers), "threads_per_worker": 1, "processes": True,
            "dashboard_address": None,
            "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
            "silence_logs": logging.ERROR if debug else logging.CRITICAL,
            "env": {"NUMBA_NUM_THREADS": str(threads)}}


def _main_script():
    """The path of the script this process runs as ``__main__`` (in a spawned worker:
    the parent's, imported as ``__mp_main__``), or None (an interactive session,
    ``python -c``, a notebook)."""
    main = sys.modules.get("__mp_main__") or sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path if path and os.path.isfile(path) else None


def _guarded_lines(path):
    """The line ranges of the bodies of ``path``'s top-level ``if __name__ ==
    "__main__":`` blocks (the blocks a worker's import of the script skips), or None when
    the script cannot be read."""
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return None
    return [(node.body[0].lineno, node.end_lineno) for node in tree.body
            if isinstance(node, ast.If) and "__name__" in ast.dump(node.test)]


def _started_unguarded(script):
    """Whether this call was made from a line of the main ``script`` outside its top-level
    ``__main__`` guard (False when that cannot be told: not called from the script, or it
    cannot be read)."""
    guarded = _guarded_lines(script)
    if guarded is None:
        return False
    for frame in inspect.stack(context=0):
        if os.path.abspath(frame.filename) == os.path.abspath(script):
            return not any(first <= frame.lineno <= last for first, last in guarded)
    return False


def unguarded_start_error():
    """The one-sentence error for a cluster started while this process is still
    bootstrapping (a worker importing an unguarded script), else None."""
    if not getattr(multiprocessing.current_process(), "_inheriting", False):
        return None
    return UNGUARDED.format(script=_main_script() or "of this program")


@contextmanager
def local_client(n_workers=2, debug=False):
    """A ``distributed.Client`` of a new cluster of ``n_workers`` worker processes on
    this machine (the cores shared among them, as ``fastvi fit --workers N`` does), closed
    when the block ends.

    Parameters
    ----------
    n_workers : int, default 2
    debug : bool, default False
        Keep the workers' error logs (by default only CRITICAL ones are shown).

    Raises
    ------
    RuntimeError
        In one sentence, when the cluster cannot start because the script starts it at
        its top level: its workers import the script again.  Start it under
        ``if __name__ == "__main__":``.

    Examples
    --------
    >>> from fastvi.engine.cluster import DaskBackend               # doctest: +SKIP
    >>> if __name__ == "__main__":                                   # doctest: +SKIP
    ...     with local_client(2) as client:
    ...         fastvi.GaussianMixture(8, backend=DaskBackend(client)).fit(X)
    """
    refusal = unguarded_start_error()
    if refusal is not None:
        raise SystemExit(f"fastvi: {refusal}")      # in the worker: one line, no traceback
    import distributed
    try:
        cluster = distributed.LocalCluster(**local_cluster_kwargs(n_workers, debug=debug))
    except RuntimeError:
        # said only when the call is outside the guard for sure; any other failure of the
        # cluster (a port, a timeout) is raised as it is
        script = _main_script()
        if script is not None and _started_unguarded(script):
            raise RuntimeError(UNGUARDED.format(script=script)) from None
        raise
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client
