"""``fastvi.data.threads.limit_threads``: the native thread pools limited and restored,
as threadpoolctl's ``threadpool_limits`` does (which reports them here)."""
import sys
import threading
import types

import numpy as np  # noqa: F401  (loads the BLAS)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fastvi.data import threads


def _blas_threads():
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_the_blas_is_limited_inside_and_restored_after():
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        with threads.limit_threads(1, user_api="blas"):
            assert all(n == 1 for n in _blas_threads())
        assert _blas_threads() == before
        with pytest.raises(RuntimeError):        # restored after an error too
            with threads.limit_threads(1, user_api="blas"):
                raise RuntimeError
        assert _blas_threads() == before


def test_a_new_import_rescans_and_threads_share_one_consistent_scan():
    threads._selected(None)                               # a scan exists now
    first = threads._scan
    sys.modules["fastvi_test_fake_module"] = types.ModuleType("fastvi_test_fake_module")
    try:
        errors = []

        def use():
            try:
                for _ in range(200):
                    with threads.limit_threads(1, user_api="blas"):
                        pass
            except Exception as exc:     # pragma: no cover - what the test looks for
                errors.append(exc)
        workers = [threading.Thread(target=use) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not errors
        assert threads._scan is not first and threads._scan[0] == len(sys.modules)
    finally:
        del sys.modules["fastvi_test_fake_module"]
