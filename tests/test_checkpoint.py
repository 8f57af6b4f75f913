"""Checkpoint files (HDF5, format_version 2): every kind of fit state round-trips exactly
and resumes bit for bit, and loading never runs code from the file."""
import json
import os
import pickle
import signal
import stat
import warnings

import h5py
import numpy as np
import pytest

import fastvi
from fastvi.io import checkpoint
from fastvi.engine.loop import FitState
from fastvi.amortized.vae import EpochState
from fastvi.engine.stats import SufficientStats
from test_ppca import ppca_data
from test_streaming import mixture_rows


def quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastvi.ConvergenceWarning)
        return fit(*args, **kwargs)


def through_file(value, path, meta=None):
    """``value`` and ``meta`` written to a checkpoint and read back."""
    fastvi.Checkpointer(path, meta=meta).write(value)
    return fastvi.load_checkpoint(path)


def assert_same(ours, theirs, where="state"):
    """Equal, field by field, and of the same types (arrays: dtype, shape, layout, bits)."""
    assert type(ours) is type(theirs), where
    if isinstance(ours, np.ndarray):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, where
        assert ours.flags.f_contiguous == theirs.flags.f_contiguous, where
        if ours.dtype.kind in "biufc":
            assert ours.tobytes() == theirs.tobytes(), where
        else:
            assert ours.tolist() == theirs.tolist(), where
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(ours, dict):
        assert list(ours) == list(theirs), where
        for key in ours:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(ours, np.random.Generator):
        assert ours.bit_generator.state == theirs.bit_generator.state, where
    elif isinstance(ours, (float, np.floating)):
        assert ours == theirs or (np.isnan(ours) and np.isnan(theirs)), where
    elif type(ours).__module__.startswith("fastvi."):
        assert_same(pickling_state(ours), pickling_state(theirs), where)
    else:
        assert ours == theirs, where


def pickling_state(obj):
    """What pickle (and so a checkpoint) keeps of a fastvi object."""
    return obj.__getstate__() if hasattr(type(obj), "__getstate__") else vars(obj)


class SaveThrough:
    """A checkpoint callback: at the ``n``-th call the state goes through a checkpoint
    file, is checked against the live one, and the fit crashes."""

    def __init__(self, n, path):
        self.n, self.path, self.seen = n, path, 0

    def __call__(self, state, force=False):
        self.seen += 1
        if self.seen == self.n:
            self.loaded, self.meta = through_file(state, self.path, meta={"n": self.n})
            assert_same(state, self.loaded)
            raise RuntimeError("simulated crash")


# ----------------------------------------------------------------------------- round trips

MIXTURES = {
    "batch": (fastvi.GaussianMixture, dict(algorithm="batch", covariance_type="full")),
    "stochastic": (fastvi.BayesianGaussianMixture,
                   dict(algorithm="stochastic", batch_size=1000, covariance_type="diag")),
    "memoized": (fastvi.BayesianGaussianMixture,
                 dict(algorithm="memoized", batch_size=1000,
                      weight_concentration_prior_type="dirichlet_process")),
    "memoized-merge": (fastvi.BayesianGaussianMixture,
                       dict(algorithm="memoized", batch_size=1000, moves=("merge",),
                            n_components=8, weight_concentration_prior=1e-3)),
    "batch-merge": (fastvi.BayesianGaussianMixture,
                    dict(algorithm="batch", moves=("merge",), n_components=8,
                         weight_concentration_prior=1e-3, covariance_type="diag")),
    "memoized-birth": (fastvi.BayesianGaussianMixture,
                       dict(algorithm="memoized", batch_size=1000, moves=("birth", "delete"),
                            n_components=8, n_components_init=2)),
    "batch-birth": (fastvi.BayesianGaussianMixture,
                    dict(algorithm="batch", moves=("birth", "merge"), n_components=8,
                         n_components_init=2, covariance_type="diag")),
    "truncated": (fastvi.BayesianGaussianMixture,
                  dict(algorithm="memoized", batch_size=1000, n_active=2, n_candidates=3)),
    # steps of several chunks: 12 chunks in 4 memoized batches of 3, with merges; a
    # stochastic minibatch of 2 chunks (batch_size 2000 > chunk_size 1000)
    "memoized-batches": (fastvi.BayesianGaussianMixture,
                         dict(algorithm="memoized", batch_size=500, n_batches=4,
                              moves=("merge",), n_components=8,
                              weight_concentration_prior=1e-3)),
    "stochastic-minibatch": (fastvi.GaussianMixture,
                             dict(algorithm="stochastic", batch_size=2000)),
}
# where the fit crashes (the checkpoint callback's call), when not the default: mid-step
CRASH_AT = {"batch-birth": 4, "memoized-batches": 17, "stochastic-minibatch": 10}


@pytest.mark.parametrize("kind", list(MIXTURES))
def test_a_mixture_resumed_from_a_checkpoint_file_ends_as_the_uninterrupted_fit(kind,
                                                                                 tmp_path):
    cls, extra = MIXTURES[kind]
    X, _ = mixture_rows(6000, seed=2)
    kwargs = {**dict(n_components=4, random_state=0, chunk_size=1000, max_iter=3, tol=0),
              **extra}
    whole = quiet(cls(**kwargs).fit, X)
    # in the second pass (a batch fit's births are proposed in its first and third)
    at = CRASH_AT.get(kind, 9)
    crash = SaveThrough(at, tmp_path / "fit.ckpt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        quiet(cls(**kwargs).fit, X, checkpoint=crash)
    assert isinstance(crash.loaded, FitState) and crash.meta == {"n": at}
    if kind.startswith("memoized"):
        assert len(crash.loaded.memo) == (4 if kind == "memoized-batches" else 6)
        assert all(type(s) is SufficientStats for s in crash.loaded.memo.values())
    if kind == "truncated":
        assert type(crash.loaded.supports).__name__ == "MemorySupports"
    if kind in ("memoized-batches", "stochastic-minibatch"):     # mid-step, chunks of it done
        assert crash.loaded.step_chunks > 1 and crash.loaded.partials
    # a memoized pass keeps its batches' pair losses and proposal statistics; a batch
    # pass (one step) carries them in its partial sums until its end
    loaded = crash.loaded
    if kind.endswith("-merge"):      # crashed mid-pass with the pass's pair losses so far
        so_far = (loaded.memo_pair_loss if kind.startswith("memoized")
                  else [block[2].pair_loss for block in loaded.partials])
        assert loaded.merge_pairs is not None and len(so_far) > 0
    if kind.endswith("-birth"):      # crashed mid-pass with a proposal's statistics so far
        so_far = (loaded.memo_proposal if kind.startswith("memoized")
                  else [block[2].proposal for block in loaded.partials])
        assert loaded.proposal["move"] == "birth" and len(so_far) > 0
    resumed = quiet(cls(**kwargs).fit, X, resume=crash.loaded)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    assert resumed.lower_bound_ == whole.lower_bound_
    if kind.endswith("-merge"):      # merges at the ends of passes: 8 -> fewer live
        assert resumed.history_ == whole.history_
        assert whole.means_.shape[0] < 8
    if kind.endswith("-birth"):      # a birth accepted: 2 -> more live
        assert resumed.history_ == whole.history_
        assert whole.means_.shape[0] > 2


def _ctrl_c_at_chunk(n):
    """A fit callback that sends this process SIGINT (Ctrl-C) at the fit's n-th chunk."""
    seen = []

    def callback(record):
        if record["event"] == "chunk":
            seen.append(record)
            if len(seen) == n:
                os.kill(os.getpid(), signal.SIGINT)
    return callback


def test_a_resumed_fit_goes_on_checkpointing_to_the_file_it_resumed_from(tmp_path):
    X, _ = mixture_rows(6000, seed=2)
    kwargs = dict(n_components=4, random_state=0, chunk_size=1000, max_iter=3, tol=0)
    whole = quiet(fastvi.GaussianMixture(**kwargs).fit, X)
    path = tmp_path / "fit.ckpt"
    with pytest.raises(fastvi.FitInterrupted, match=f"the checkpoint {path} holds") as stop:
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, callback=_ctrl_c_at_chunk(4),
              checkpoint=fastvi.Checkpointer(path, meta={"run": "first"}))
    assert stop.value.path == str(path)
    first, _ = fastvi.load_checkpoint(path)
    stood = (first.n_pass, first.position)       # (the resumed fit moves the state on)
    # resumed with no checkpoint= and stopped again: the same file holds the later state
    with pytest.raises(fastvi.FitInterrupted, match=f"the checkpoint {path} holds"):
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=first,
              callback=_ctrl_c_at_chunk(5))
    second, meta = fastvi.load_checkpoint(path)
    assert meta == {"run": "first"}             # the file's meta is kept
    assert (second.n_pass, second.position) > stood
    resumed = quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=second)
    assert not path.exists()                     # the fit ended: nothing left to resume
    np.testing.assert_array_equal(resumed.means_, whole.means_)
    assert resumed.lower_bound_ == whole.lower_bound_


def test_an_interrupted_fit_without_a_checkpoint_says_where_its_state_is():
    X, _ = mixture_rows(3000, seed=2)
    with pytest.raises(fastvi.FitInterrupted, match="no checkpoint was written") as stop:
        quiet(fastvi.GaussianMixture(4, random_state=0, chunk_size=1000).fit, X,
              callback=_ctrl_c_at_chunk(2))
    assert stop.value.path is None and isinstance(stop.value.state, FitState)
    seen = []                   # a checkpoint callable of the user's own: it had the state
    with pytest.raises(fastvi.FitInterrupted, match="the checkpoint callable was given it"):
        quiet(fastvi.GaussianMixture(4, random_state=0, chunk_size=1000).fit, X,
              callback=_ctrl_c_at_chunk(2),
              checkpoint=lambda state, force=False: seen.append(force))
    assert seen[-1] is True


def test_file_supports_round_trip_and_reopen_their_file(tmp_path):
    X, _ = mixture_rows(6000, seed=2)
    kwargs = dict(n_components=6, random_state=0, chunk_size=1000, max_iter=3, tol=0,
                  n_active=2, n_candidates=3, support_file=str(tmp_path / "supports.h5"))
    whole = quiet(fastvi.GaussianMixture(**kwargs).fit, X)
    crash = SaveThrough(9, tmp_path / "fit.ckpt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, checkpoint=crash)
    supports = crash.loaded.supports
    assert type(supports).__name__ == "FileSupports"
    assert supports.path == str(tmp_path / "supports.h5") and supports.rows(0, 3).shape == (3, 2)
    # checkpoint=False: the file stays as it is (resumed, a fit would write it and remove
    # it at its end)
    resumed = quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=crash.loaded,
                    checkpoint=False)
    # supports written after the checkpoint are valid ones: the same optimum, not the bits
    assert resumed.lower_bound_ == pytest.approx(whole.lower_bound_, rel=1e-6)
    (tmp_path / "supports.h5").unlink()
    with pytest.raises(ValueError, match="fit.ckpt: .*supports.h5: cannot reopen"):
        fastvi.load_checkpoint(tmp_path / "fit.ckpt")


AMORTIZED = {
    "vae": lambda: fastvi.VAE(2, decoder_hidden=(4,), max_epochs=4, learning_rate=1e-2,
                              random_state=0),
    "per_example": lambda: fastvi.VAE(2, inference="per_example", max_epochs=4,
                                      learning_rate=1e-2, random_state=0),
    "ppca": lambda: fastvi.PPCA(2, max_epochs=4, learning_rate=1e-2, random_state=0),
}


@pytest.mark.parametrize("kind", list(AMORTIZED))
def test_an_amortized_fit_resumed_from_a_checkpoint_file_ends_as_the_uninterrupted_fit(
        kind, tmp_path):
    X, *_ = ppca_data(1500, n_features=5, n_latent=2, seed=0)
    whole = AMORTIZED[kind]().fit(X)
    crash = SaveThrough(2, tmp_path / "fit.ckpt")          # after the second epoch
    with pytest.raises(RuntimeError, match="simulated crash"):
        AMORTIZED[kind]().fit(X, checkpoint=crash)
    state = crash.loaded
    assert isinstance(state, EpochState) and state.epochs == 2
    model = state.model
    # Adam updates the network's own arrays: the sharing survives the file
    assert model._decoder_opt.params is model.decoder_.params
    resumed = AMORTIZED[kind]().fit(X, resume=state)
    for ours, theirs in zip(resumed.decoder_.params, whole.decoder_.params):
        np.testing.assert_array_equal(ours, theirs)
    assert resumed.elbo_history_ == whole.elbo_history_
    np.testing.assert_array_equal(resumed.transform(X), whole.transform(X))


def test_a_resumed_amortized_fit_goes_on_checkpointing_to_its_file(tmp_path):
    X, *_ = ppca_data(1500, n_features=5, n_latent=2, seed=0)
    path = tmp_path / "fit.ckpt"
    whole = AMORTIZED["vae"]().fit(X)
    crash = SaveThrough(2, path)                            # after the second epoch
    with pytest.raises(RuntimeError, match="simulated crash"):
        AMORTIZED["vae"]().fit(X, checkpoint=crash)
    written = []                                            # the file's epochs, as it goes

    def after_epoch(record):
        if record["event"] == "pass":
            written.append(fastvi.load_checkpoint(path)[0].epochs)
    resumed = AMORTIZED["vae"]().fit(X, resume=crash.loaded, callback=after_epoch)
    # an epoch's event comes before its checkpoint: the file held epoch 2, then 3 (written
    # by the resumed fit), and is removed when the fit ends
    assert written == [2, 3] and not path.exists()
    assert resumed.elbo_history_ == whole.elbo_history_


def test_a_resumed_fit_keeps_its_writers_settings_and_refuses_a_bad_checkpoint(tmp_path):
    X, _ = mixture_rows(3000, seed=2)
    kwargs = dict(n_components=3, random_state=0, chunk_size=1000, max_iter=2, tol=0)
    path = tmp_path / "kept.ckpt"
    crash = SaveThrough(3, path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, checkpoint=crash)
    # a snapshot written with keep=True stays after the fit resumed from it ends
    fastvi.Checkpointer(path, keep=True, every_chunks=2).write(crash.loaded)
    state, _ = fastvi.load_checkpoint(path)
    quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=state)
    assert path.exists()
    assert fastvi.load_checkpoint(path)[0].n_pass == 2      # it holds the fit's end
    with pytest.raises(TypeError, match="checkpoint must be a fastvi.Checkpointer .* got True"):
        fastvi.GaussianMixture(**kwargs).fit(X, checkpoint=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_state_from_a_read_only_folder_is_refused_before_the_fit(tmp_path):
    X, _ = mixture_rows(3000, seed=2)
    kwargs = dict(n_components=3, random_state=0, chunk_size=1000, max_iter=2, tol=0)
    folder = tmp_path / "ro"
    folder.mkdir()
    crash = SaveThrough(3, folder / "fit.ckpt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, checkpoint=crash)
    folder.chmod(0o500)
    try:
        with pytest.raises(OSError, match="fit.ckpt.*checkpoint=False"):
            fastvi.GaussianMixture(**kwargs).fit(X, resume=crash.loaded)
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=crash.loaded,
              checkpoint=False)
    finally:
        folder.chmod(0o700)


def test_values_of_every_kind_round_trip(tmp_path):
    cycle = [1]
    cycle.append(cycle)
    shared = np.arange(6.0)
    value = {
        "scalars": (None, True, 3, 2 ** 130, -0.0, 1.5, np.inf, -np.inf, np.nan, "é"),
        "numpy scalars": [np.float32(0.1), np.float64(0.2), np.int64(-5), np.uint64(2 ** 64 - 1),
                          np.bool_(True), np.float16(1 / 3)],
        "arrays": [np.zeros(0), np.zeros((0, 3), np.int32), np.array(2.5),
                   np.arange(6, dtype=">f8").reshape(2, 3), np.ones((3, 4), order="F"),
                   np.array([True, False]), np.array([1 + 2j]), np.arange(4, dtype=np.uint8),
                   np.array(["a", "bc"], dtype=object), np.array([["x", "yz"]])],
        "shared": [shared, shared],
        "keys": {1: "int", (2, "b"): "tuple", None: "none", 2.5: "float"},
        "types": [np.dtype("<f4"), np.float32],
        "generators": [np.random.default_rng(5), np.random.Generator(np.random.MT19937(1)),
                       np.random.RandomState(3)],
    }
    loaded, meta = through_file(value, tmp_path / "v.ckpt",
                                meta={"params": {"means_init": np.eye(2), "hidden": (4, 2)}})
    for key in value:
        if key != "generators":
            assert_same(loaded[key], value[key], key)
    assert loaded["shared"][0] is loaded["shared"][1]
    for ours, theirs in zip(loaded["generators"][:2], value["generators"][:2]):
        assert ours.random() == theirs.random()
    assert loaded["generators"][2].randint(1000) == value["generators"][2].randint(1000)
    assert_same(meta, {"params": {"means_init": np.eye(2), "hidden": (4, 2)}})
    cycle_loaded, _ = through_file(cycle, tmp_path / "c.ckpt")
    assert cycle_loaded[0] == 1 and cycle_loaded[1] is cycle_loaded


def test_a_memoized_cache_is_stored_as_datasets(tmp_path):
    X, _ = mixture_rows(12000)
    path = tmp_path / "fit.ckpt"
    model = fastvi.GaussianMixture(3, random_state=0, algorithm="memoized", batch_size=500,
                                   max_iter=1, tol=0, covariance_type="full")
    quiet(model.fit, X, checkpoint=fastvi.Checkpointer(path, every_seconds=None, keep=True))
    state, _ = fastvi.load_checkpoint(path)
    assert len(state.memo) == 24
    with h5py.File(path, "r") as f:
        tree = json.loads(f["state"].asstr()[()])
        # arrays of one dtype and shape are stacked: a few datasets, not four per chunk
        assert len(f["arrays"]) < 10
        assert tree["object"] == "fastvi.engine.loop.FitState"
        for key, stats in tree["state"]["memo"]["items"]:
            s2 = stats["state"]["s2"]
            stored = f["arrays"][str(s2["array"])][s2["index"]]
            np.testing.assert_array_equal(stored, state.memo[key].s2)
            assert stored.shape == (3, 4, 4)
        assert f["arrays"][str(s2["array"])].shape[0] >= 24


def test_a_state_fastvi_cannot_store_is_refused_before_any_file_is_written(tmp_path):
    state = FitState("batch", (np.ones(2), object()))
    with pytest.raises(TypeError, match=r"builtins.object \(at state.params\[1\]\)"):
        fastvi.Checkpointer(tmp_path / "fit.ckpt").write(state)
    with pytest.raises(TypeError, match=r"at state\['f'\]"):
        fastvi.Checkpointer(tmp_path / "fit.ckpt").write({"f": lambda: 0})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_checkpoints_are_private(tmp_path, umask):
    previous = os.umask(umask)
    try:
        fastvi.Checkpointer(tmp_path / "fit.ckpt").write({"any": "state"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "fit.ckpt").st_mode) == 0o600
    assert os.listdir(tmp_path) == ["fit.ckpt"]


def test_a_missing_field_of_an_older_state_gets_its_default(tmp_path):
    path = tmp_path / "fit.ckpt"
    fastvi.Checkpointer(path).write(FitState("batch", None, history=[{"pass": 1}]))
    with h5py.File(path, "r+") as f:
        tree = json.loads(f["state"].asstr()[()])
        del tree["state"]["history"]
        del f["state"]
        f["state"] = json.dumps(tree)
    state, _ = fastvi.load_checkpoint(path)
    assert state.history == [] and state.algorithm == "batch"


# ----------------------------------------------------------------------------- refusals

class Payload:
    """Unpickling this creates ``marker``: the proof that a load ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_an_old_pickled_checkpoint_is_refused_and_never_unpickled(tmp_path, capsys):
    from fastvi.cli import main
    from fastvi.datasets import write_mixture_h5
    marker = tmp_path / "pwned"
    path = tmp_path / "fit.ckpt"
    path.write_bytes(pickle.dumps({"format": "fastvi-checkpoint", "format_version": 1,
                                   "state": Payload(str(marker))}, protocol=4))
    with pytest.raises(ValueError, match="fit.ckpt is a checkpoint of an older fastvi "
                                         r"\(a pickle.*start the fit afresh"):
        fastvi.load_checkpoint(path)
    write_mixture_h5(tmp_path / "data.h5", 500, 2, 2)
    code = main(["fit", str(tmp_path / "data.h5"), "--k", "2", "-o", str(tmp_path / "m.h5"),
                 "--checkpoint", str(path), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "fit.ckpt is a checkpoint of an older fastvi" in err
    assert not marker.exists()


def _crafted(path, state, **attrs):
    """A checkpoint written by hand: the right header, ``state`` as its tree."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = attrs.get("format", checkpoint.FORMAT)
        f.attrs["format_version"] = attrs.get("format_version", checkpoint.FORMAT_VERSION)
        f["state"] = json.dumps(state)
        f["meta"] = json.dumps({"dict": {}})
        f.create_group("arrays")


@pytest.mark.parametrize("name", ["builtins.open", "os.system", "builtins.eval",
                                  "fastvi.io.model.save_model", "fastvi.io.checkpoint.Checkpointer"])
def test_a_class_off_the_list_is_refused_and_never_called(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "fit.ckpt"
    _crafted(path, {"object": name, "state": {"file": str(marker), "mode": "w",
                                              "command": f"touch {marker}"}})
    with pytest.raises(ValueError, match=f"fit.ckpt: .*{name}.*not one a checkpoint may hold"):
        fastvi.load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("tree", [
    {"generator": "os.system", "state": {}},
    {"array": 0, "index": 0, "dtype": "|O", "shape": []},
    {"scalar": "|O", "value": "x"},
    {"ref": 3},
    {"float": "1e999"},
    {"call": "os.system"},
    [1, 2],
])
def test_a_malformed_tree_is_refused(tmp_path, tree):
    _crafted(tmp_path / "fit.ckpt", tree)
    with pytest.raises(ValueError, match="fit.ckpt: not a readable fastvi checkpoint"):
        fastvi.load_checkpoint(tmp_path / "fit.ckpt")


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "fit.ckpt"
    fastvi.Checkpointer(path).write({"any": "state"})
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = checkpoint.FORMAT_VERSION + 1
    with pytest.raises(ValueError, match="fit.ckpt: checkpoint format 3 .*upgrade fastvi"):
        fastvi.load_checkpoint(path)


def test_another_hdf5_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.h5"
    fastvi.GaussianMixture(2, random_state=0).fit(mixture_rows(200)[0]).save(path)
    with pytest.raises(ValueError, match="model.h5: not a fastvi checkpoint .*'fastvi-model'"):
        fastvi.load_checkpoint(path)


def test_a_truncated_or_empty_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "fit.ckpt"
    memo = {i: SufficientStats(np.ones(3), np.ones((3, 4)), np.ones((3, 4)), np.ones((3, 4)))
            for i in range(50)}
    fastvi.Checkpointer(path).write(FitState("memoized", None, memo=memo))
    data = path.read_bytes()
    for size in (len(data) // 2, 100, 4, 0):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError, match="fit.ckpt: not a readable fastvi checkpoint"):
            fastvi.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="gone.ckpt: no such checkpoint"):
        fastvi.load_checkpoint(tmp_path / "gone.ckpt")


def test_a_batch_pass_checkpoints_its_pairwise_partial_sums(tmp_path):
    """Mid-pass, a batch state holds the blocks of its pairwise sum (engine.reduce), not a
    running total; blocks that do not follow each other from chunk 0 to the position are
    refused as corrupt; a state of the older form (its sum so far in ``stats``) resumes."""
    from fastvi.data.sources import ArraySource
    from fastvi.io.resume_checks import CorruptCheckpoint, validate_state
    X, _ = mixture_rows(6000, seed=2)
    kwargs = dict(n_components=3, random_state=0, chunk_size=500, max_iter=2, tol=0)
    whole = quiet(fastvi.GaussianMixture(**kwargs).fit, X)
    crash = SaveThrough(12 + 1 + 6, tmp_path / "fit.ckpt")   # pass 2, after 6 chunks
    with pytest.raises(RuntimeError, match="simulated crash"):
        quiet(fastvi.GaussianMixture(**kwargs).fit, X, checkpoint=crash)
    state = crash.loaded
    assert state.stats is None and state.position == 6
    assert [block[:2] for block in state.partials] == [[0, 4], [4, 6]]
    model = fastvi.GaussianMixture(**kwargs)
    source = ArraySource(X, 500)
    state.partials[1][0] = 5
    with pytest.raises(CorruptCheckpoint, match=r"partials\[1\]\[0\] is 5 \(expected 4: the "
                                                r"blocks follow each other from chunk 0\)"):
        validate_state(state, model, source)
    state.partials[1][0] = 4
    # the older form: the same chunks' sum in stats, no blocks; it goes on to the same fit
    # up to rounding (its sum of six chunks was added in another order)
    state.stats, state.partials = state.partials[0][2] + state.partials[1][2], []
    resumed = quiet(fastvi.GaussianMixture(**kwargs).fit, X, resume=state)
    np.testing.assert_allclose(resumed.means_, whole.means_, rtol=1e-12)
