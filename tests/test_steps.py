"""Steps of several chunks (issue 28): a memoized fit's cache per batch of chunks
(``n_batches``, bnpy's nBatch) and a stochastic minibatch of several chunks
(``batch_size`` > ``chunk_size``), each step's chunks computed together and added in the
tree of ``fastvi.engine.reduce``.  Checked against what they must equal: batch EM, the
one-chunk minibatch of the same rows, coordinate ascent's monotone bound."""
import warnings

import numpy as np
import pytest

import fastvi
from fastvi.engine.loop import ResumeMismatch
from fastvi.engine.steps import MEMO_BATCHES, stats_bytes

from test_streaming import mixture_rows

GMM, BGMM = fastvi.GaussianMixture, fastvi.BayesianGaussianMixture


def quiet_fit(model, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        return model.fit(X, **kwargs)


@pytest.fixture(scope="module")
def X():
    return mixture_rows(4800, seed=5)[0]


@pytest.mark.parametrize("cls", [GMM, BGMM])
def test_memoized_with_one_batch_is_batch_em(cls, X):
    # One batch of every chunk: each step is a whole pass under the current parameters,
    # then the update: batch EM (VB-EM), its sum in the same tree, so the same bits.
    kwargs = dict(n_components=4, covariance_type="full", chunk_size=400, random_state=0,
                  max_iter=4, tol=0.0)
    batch = quiet_fit(cls(algorithm="batch", **kwargs), X)
    memoized = quiet_fit(cls(algorithm="memoized", n_batches=1, **kwargs), X)
    for name in ("means_", "covariances_", "weights_"):
        np.testing.assert_array_equal(getattr(memoized, name), getattr(batch, name))


def test_a_minibatch_of_chunks_is_the_minibatch_of_one_chunk_of_its_rows(X):
    # Without shuffling, a minibatch of 4 chunks of 300 rows holds the rows of one chunk
    # of 1200: the same steps, to the rounding of adding 4 chunks instead of 1.
    kwargs = dict(n_components=4, covariance_type="diag", random_state=0, max_iter=3,
                  tol=0.0, algorithm="stochastic", shuffle=False, batch_size=1200)
    chunks = quiet_fit(GMM(chunk_size=300, **kwargs), X)
    whole = quiet_fit(GMM(chunk_size=1200, **kwargs), X)
    assert chunks._chunk_rows() == 300 and chunks._minibatch_chunks() == 4
    assert whole._minibatch_chunks() == 1
    assert chunks.n_iter_ == whole.n_iter_
    np.testing.assert_allclose(chunks.means_, whole.means_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(chunks.covariances_, whole.covariances_, rtol=1e-10)
    # ... and not the fit of one-chunk minibatches of 300 rows
    small = quiet_fit(GMM(chunk_size=300, **{**kwargs, "batch_size": 300}), X)
    assert not np.allclose(small.means_, chunks.means_, rtol=1e-6)


def test_a_minibatch_spans_chunks_of_its_share_of_batch_size():
    # batch_size 1000 over chunk_size 300: 4 chunks of 250 rows
    model = GMM(algorithm="stochastic", batch_size=1000, chunk_size=300)
    assert (model._minibatch_chunks(), model._chunk_rows()) == (4, 250)
    # up to chunk_size, one chunk of batch_size rows, as before
    model = GMM(algorithm="stochastic", batch_size=200, chunk_size=300)
    assert (model._minibatch_chunks(), model._chunk_rows()) == (1, 200)


@pytest.mark.parametrize("n_batches", [3, 5])
def test_the_memoized_bound_never_decreases_with_batches(n_batches, X):
    # after the first pass, coordinate ascent on the exact ELBO (Hughes & Sudderth 2013)
    model = quiet_fit(BGMM(n_components=6, algorithm="memoized", chunk_size=300,
                           batch_size=300, n_batches=n_batches, random_state=1,
                           max_iter=8, tol=0.0), X)
    bounds = np.array(model.lower_bounds_[1:])
    assert (np.diff(bounds) >= -1e-9 * np.abs(bounds[1:])).all(), bounds


def test_the_default_batches_keep_the_cache_small(X):
    source = fastvi.ArraySource(X, chunk_rows=30)           # 160 chunks
    model = BGMM(n_components=3, algorithm="memoized", batch_size=30)
    step = model._step_chunks(source)
    assert step == 3 and -(-source.n_chunks // step) <= MEMO_BATCHES   # 54 batches
    few = fastvi.ArraySource(X, chunk_rows=600)             # 8 chunks: one each
    assert model._step_chunks(few) == 1
    # a large model: fewer batches, within the cache's budget
    big = BGMM(n_components=256, algorithm="memoized", batch_size=30)
    wide = fastvi.ArraySource(np.zeros((1 << 14, 64)), chunk_rows=64)   # 256 chunks
    batches = -(-wide.n_chunks // big._step_chunks(wide))
    assert 2 <= batches < MEMO_BATCHES
    assert 2 * batches * stats_bytes(256, 64, True) <= 256 << 20


def test_a_fit_resumed_with_other_batches_is_refused(X):
    kwargs = dict(n_components=3, algorithm="memoized", chunk_size=600, batch_size=600,
                  random_state=0, max_iter=2, tol=0.0)

    class Keep:
        def __call__(self, state, force=False):
            self.state = state

    keep = Keep()
    quiet_fit(BGMM(n_batches=2, **kwargs), X, checkpoint=keep)
    assert keep.state.step_chunks == 4
    with pytest.raises(ResumeMismatch, match="4 chunk.*per batch.*settings 2.*n_batches=2"):
        quiet_fit(BGMM(n_batches=4, **kwargs), X, resume=keep.state)
    # the same settings resume (the file round trip is tests/test_checkpoint.py's)
    quiet_fit(BGMM(n_batches=2, **kwargs), X, resume=keep.state)


def test_a_minibatch_beyond_the_rows_resumes(X):
    # batch_size 1000 over chunk_size 100 on 300 rows: one short minibatch of 3 chunks
    # a pass; its checkpoint (step_chunks 10 > 3 chunks) resumes
    kwargs = dict(n_components=2, algorithm="stochastic", batch_size=1000, chunk_size=100,
                  random_state=0, max_iter=3, tol=0.0)

    class Keep:
        def __call__(self, state, force=False):
            if state.n_pass == 1 and not hasattr(self, "state"):
                import copy
                self.state = copy.deepcopy(state)

    keep = Keep()
    whole = quiet_fit(GMM(**kwargs), X[:300], checkpoint=keep)
    assert keep.state.step_chunks == 10
    resumed = quiet_fit(GMM(**kwargs), X[:300], resume=keep.state)
    np.testing.assert_array_equal(resumed.means_, whole.means_)


def test_partial_fit_steps_once_per_batch_size_rows(X):
    # partial_fit's minibatches are its chunks: batch_size rows each, as before steps of
    # several chunks (batch_size > chunk_size makes them for fit only)
    model = GMM(n_components=3, algorithm="stochastic", batch_size=1000, chunk_size=100,
                random_state=0)
    model.partial_fit(X[:2000])
    assert model.n_iter_ == 2


def test_move_caches_keyed_beyond_the_batches_are_refused(X):
    import copy
    from fastvi.io.resume_checks import CorruptCheckpoint
    kwargs = dict(n_components=6, algorithm="memoized", chunk_size=600, batch_size=600,
                  n_batches=2, moves=("merge",), weight_concentration_prior=1e-3,
                  random_state=0, max_iter=3, tol=0.0)

    class Keep:
        def __call__(self, state, force=False):
            if state.n_pass == 1 and state.memo_pair_loss and not hasattr(self, "state"):
                self.state = copy.deepcopy(state)

    keep = Keep()
    quiet_fit(BGMM(**kwargs), X, checkpoint=keep)
    state = keep.state
    loss = next(iter(state.memo_pair_loss.values()))
    state.memo_pair_loss = {0: loss, 5: loss}           # 2 batches: keys 0 and 1 only
    with pytest.raises(CorruptCheckpoint, match="memo_pair_loss"):
        quiet_fit(BGMM(**kwargs), X, resume=state)
