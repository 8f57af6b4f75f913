"""Fixed-seed data sets and helpers shared by the tests."""
import os

# The CUDA backend's tests (tests/test_cuda.py) run its kernels in numba-cuda's simulator
# unless told otherwise: bench/gpu_check.sh sets NUMBA_ENABLE_CUDASIM=0 to run them on a
# GPU.  Set before anything imports numba, which reads it once.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastvi  # noqa: E402


def blobs(n_per=200, centres=((0, 0, 0), (6, 0, 0), (0, 7, 1)), scale=1.0, seed=0):
    """Well-separated Gaussian clusters with known labels."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float64)
    X = np.vstack([c + scale * rng.standard_normal((n_per, centres.shape[1])) for c in centres])
    return X, np.repeat(np.arange(len(centres)), n_per)


@pytest.fixture
def three_blobs():
    return blobs()


def random_resp(n_rows, n_components, seed=1):
    rng = np.random.default_rng(seed)
    resp = rng.uniform(size=(n_rows, n_components)) + 0.1
    return resp / resp.sum(axis=1, keepdims=True)


def with_resp(cls, resp, **kwargs):
    """An estimator whose initial responsibilities are ``resp`` (over all rows).

    Used to start fastvi, the naive reference and scikit-learn from the same point.
    """
    class Fixed(cls):
        def _initial_resp(self, sample, rng, weights=None):
            assert sample.shape[0] == resp.shape[0]
            return resp

    return Fixed(n_components=resp.shape[1], init_sample_size=resp.shape[0], **kwargs)


COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
fastvi_types = (fastvi.GaussianMixture, fastvi.BayesianGaussianMixture)


# Hypothesis profiles (tests/test_properties.py): "default" is small and derandomized, so
# CI is deterministic and quick; HYPOTHESIS_PROFILE=long runs many more random examples.
try:
    from hypothesis import HealthCheck, settings
except ImportError:          # hypothesis is a test dependency; the other tests run without it
    pass
else:
    _slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("default", max_examples=30, deadline=None, derandomize=True,
                              suppress_health_check=_slow_ok, print_blob=True)
    settings.register_profile("long", max_examples=1000, deadline=None,
                              suppress_health_check=_slow_ok, print_blob=True)
    import os as _os
    settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "default"))
