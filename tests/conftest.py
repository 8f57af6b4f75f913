"""Fixed-seed data sets and helpers shared by the tests."""
import numpy as np
import pytest

import fastvi


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
