"""The CUDA backend (``backend="cuda"``) against the naive reference and the local backend.

These run wherever numba-cuda is installed: in numba-cuda's simulator by default (the
conftest sets ``NUMBA_ENABLE_CUDASIM=1``; the kernels then run in Python threads, so the
data are tiny), and on a GPU with ``NUMBA_ENABLE_CUDASIM=0 pytest -m gpu``
(bench/gpu_check.sh).  The launch parameters are shrunk (``small_launch``) so that a few
rows already make several blocks, statistics groups, component tiles and row tiles.

Tolerances: the GPU adds its sums in another order than the CPU kernels (per group of
rows, then the groups; the CPU per block of 256 rows, in 4-wide vectors), so the two agree
to rounding only.  Every sum here has at most a few hundred float64 terms of moderate
size, whose rounding error is below 1e-13 relative to the sum of their magnitudes; the
tests allow 1e-10, and demand exact equality wherever the order is the same (a repeat,
another block size, another tile).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import naive
from conftest import COVARIANCE_TYPES
from test_kernels import random_mixture

pytest.importorskip("numba_cuda", reason="the CUDA backend needs numba-cuda "
                                         "(pip install 'fastvi[cuda]' or '.[test]')")

import fastvi  # noqa: E402
from fastvi.data.checks import InvalidParameterError  # noqa: E402
from fastvi.data.sources import ArraySource  # noqa: E402
from fastvi.engine import cuda as engine_cuda  # noqa: E402
from fastvi.engine import local  # noqa: E402
from fastvi.engine.backend import get_backend, total_stats  # noqa: E402
from fastvi.kernels.cuda import estep as cuda_estep  # noqa: E402
from fastvi.mixture import em  # noqa: E402
from fastvi.mixture.gaussian import precision_cholesky  # noqa: E402

pytestmark = pytest.mark.gpu

SIMULATED = engine_cuda.simulated()
RTOL = 1e-10


@pytest.fixture
def small_launch(monkeypatch):
    """Launch shapes small enough that a few rows make several of everything."""
    for name, value in (("ROW_THREADS", 8), ("ENTRY_THREADS", 8), ("REDUCE_THREADS", 16),
                        ("GROUP_ROWS", 7), ("ROW_TILE", 3)):
        monkeypatch.setattr(cuda_estep, name, value)


@pytest.fixture
def fit_launch(monkeypatch):
    """For whole fits: a chunk (15 rows) is one block, one group and one tile (the
    simulator's cost is per block: a Python thread per CUDA thread)."""
    for name, value in (("ROW_THREADS", 16), ("ENTRY_THREADS", 16), ("REDUCE_THREADS", 16),
                        ("GROUP_ROWS", 16), ("ROW_TILE", 16)):
        monkeypatch.setattr(cuda_estep, name, value)


@pytest.fixture
def gpu():
    return get_backend("cuda")


def em_params(covariance_type, n_components, n_features, seed):
    weights, means, cov = random_mixture(covariance_type, n_components, n_features, seed)
    params = em.kernel_params(weights, means, precision_cholesky(cov, covariance_type),
                              covariance_type)
    return params, (weights, means, cov)


def assert_stats_close(stats, ref, rtol=RTOL):
    scale = max(np.abs(ref.s2).max(), 1.0)
    np.testing.assert_allclose(stats.nk, ref.nk, rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(stats.s1, ref.s1, rtol=rtol, atol=1e-13 * scale)
    np.testing.assert_allclose(stats.s2, ref.s2, rtol=rtol, atol=1e-13 * scale)
    np.testing.assert_allclose(stats.log_norm, ref.log_norm, rtol=rtol)
    assert stats.weight == ref.weight


def assert_stats_equal(a, b):
    for name in ("nk", "s1", "s2"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.log_norm == b.log_norm and a.weight == b.weight


# (n_rows, n_features, n_components, chunk_rows): one row; one component; one feature;
# rows not a multiple of anything, in two chunks of unequal size
SHAPES = [(1, 3, 2, 5), (9, 2, 1, 5), (10, 1, 3, 6), (17, 4, 3, 10)]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernels_match_the_naive_reference_and_the_cpu(covariance_type, dtype, gpu,
                                                       small_launch):
    for case, (n_rows, n_features, n_components, chunk_rows) in enumerate(SHAPES):
        rng = np.random.default_rng(case)
        X = (1.5 * rng.standard_normal((n_rows, n_features))).astype(dtype)
        sample_weight = rng.uniform(0.0, 3.0, n_rows) if case % 2 else None
        params, (weights, means, cov) = em_params(covariance_type, n_components, n_features,
                                                  case)
        source = ArraySource(X, chunk_rows)

        stats = total_stats(gpu, source, params, sample_weight)

        X64 = X.astype(np.float64)
        log_rho = naive.log_rho_em(X64, weights, means, cov, covariance_type)
        log_norm, resp = naive.responsibilities(log_rho)
        ref = naive.sufficient_stats(X64, resp, means, covariance_type, sample_weight)
        w = np.ones(n_rows) if sample_weight is None else sample_weight
        scale = max(np.abs(ref["s2"]).max(), 1.0)
        np.testing.assert_allclose(stats.log_norm, w @ log_norm, rtol=RTOL)
        np.testing.assert_allclose(stats.nk, ref["N"], rtol=RTOL, atol=1e-14)
        np.testing.assert_allclose(stats.s1, ref["s1"], rtol=RTOL, atol=1e-13 * scale)
        np.testing.assert_allclose(stats.s2, ref["s2"], rtol=RTOL, atol=1e-13 * scale)
        assert_stats_close(stats, total_stats(get_backend("local"), source, params,
                                              sample_weight))

        n_top = min(2, n_components)
        out = gpu.per_row(source, params, log_norm=True, resp=True, labels=n_top, top=n_top)
        np.testing.assert_allclose(out["log_norm"], log_norm, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out["resp"], resp, rtol=RTOL, atol=1e-14)
        cpu = local.per_row(X, params, labels=n_top, top=n_top)
        np.testing.assert_array_equal(out["labels"], cpu["labels"])
        np.testing.assert_array_equal(out["top_index"], cpu["top_index"])
        np.testing.assert_allclose(out["top_resp"], cpu["top_resp"], rtol=RTOL, atol=1e-14)
        labels = gpu.per_row(source, params, labels=True)["labels"]
        np.testing.assert_array_equal(labels, log_rho.argmax(axis=1))


@pytest.mark.parametrize("full", [True, False])
def test_the_bits_depend_on_the_rows_and_the_group_size_only(full, gpu, monkeypatch):
    """Block sizes and the shared-memory tiles (all components, a few at a time, none:
    global memory) change how the work is shared out, never the order of a sum."""
    covariance_type = "full" if full else "diag"
    rng = np.random.default_rng(5)
    X = rng.standard_normal((23, 3)).astype(np.float32)
    sample_weight = rng.uniform(0.5, 2.0, 23)
    params, _ = em_params(covariance_type, 4, 3, 5)
    source = ArraySource(X, 23)
    monkeypatch.setattr(cuda_estep, "GROUP_ROWS", 6)
    results = []
    for threads, row_tile, shared in ((8, 3, 40 * 1024), (5, 4, 8 * 50), (16, 1, 8 * 20),
                                      (3, 32, 8)):
        monkeypatch.setattr(cuda_estep, "ROW_THREADS", threads)
        monkeypatch.setattr(cuda_estep, "ENTRY_THREADS", threads)
        monkeypatch.setattr(cuda_estep, "REDUCE_THREADS", threads)
        monkeypatch.setattr(cuda_estep, "ROW_TILE", row_tile)
        monkeypatch.setattr(cuda_estep, "SHARED_BYTES", shared)
        results.append(total_stats(gpu, source, params, sample_weight))
    for other in results[1:]:
        assert_stats_equal(results[0], other)
    # the tiles the settings above made: all four components, one or two, and none
    monkeypatch.setattr(cuda_estep, "SHARED_BYTES", 40 * 1024)
    assert cuda_estep.component_tile(4, 3, full) == 4
    monkeypatch.setattr(cuda_estep, "SHARED_BYTES", 8 * 20)
    assert 0 < cuda_estep.component_tile(4, 3, full) < 4
    monkeypatch.setattr(cuda_estep, "SHARED_BYTES", 8)
    assert cuda_estep.component_tile(4, 3, full) == 0 and cuda_estep.row_tile(3) == 0


def test_non_finite_rows_are_named_as_on_the_cpu(gpu, small_launch):
    X = np.ones((12, 2))
    X[7, 1] = np.nan
    params, _ = em_params("diag", 2, 2, 0)
    with pytest.raises(ValueError, match="first at row 7"):
        total_stats(gpu, ArraySource(X, 5), params)
    with pytest.raises(ValueError, match="first at row 7"):
        gpu.per_row(ArraySource(X, 5), params, log_norm=True)


def test_merge_pairs_and_proposals_match_the_local_backend(gpu, small_launch):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((15, 2))
    sample_weight = rng.uniform(0.5, 2.0, 15)
    params, _ = em_params("full", 3, 2, 1)
    proposal, _ = em_params("full", 4, 2, 2)       # a birth: more components
    pairs = np.array([[0, 1], [1, 2]])
    source = ArraySource(X, 6)
    results = {}
    for name in ("cuda", "local"):
        backend = get_backend(name)
        with backend.open_pass(source, [2, 0, 1], sample_weight, pairs=pairs,
                               proposal=proposal) as chunk_pass:
            results[name] = list(chunk_pass.stats(params))
    assert [i for i, _ in results["cuda"]] == [2, 0, 1]
    for (_, got), (_, want) in zip(results["cuda"], results["local"]):
        assert_stats_close(got, want)
        np.testing.assert_allclose(got.pair_loss, want.pair_loss, rtol=RTOL, atol=1e-14)
        assert_stats_close(got.proposal, want.proposal)


def small_data(n_rows=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [5.0, 1.0]])
    return centres[rng.integers(0, 2, n_rows)] + rng.standard_normal((n_rows, 2))


FITS = {
    "em-full": (fastvi.GaussianMixture, dict(covariance_type="full")),
    "em-tied": (fastvi.GaussianMixture, dict(covariance_type="tied")),
    "vb-diag": (fastvi.BayesianGaussianMixture, dict(covariance_type="diag")),
    "vb-spherical-memoized": (fastvi.BayesianGaussianMixture,
                              dict(covariance_type="spherical", algorithm="memoized",
                                   batch_size=15)),
    "vb-stochastic": (fastvi.BayesianGaussianMixture,
                      dict(algorithm="stochastic", batch_size=15)),
    "vb-merge": (fastvi.BayesianGaussianMixture,
                 dict(moves=("merge",), n_components=3, weight_concentration_prior=1e-3)),
    "vb-birth-memoized": (fastvi.BayesianGaussianMixture,
                          dict(algorithm="memoized", batch_size=15, moves=("birth", "delete"),
                               n_components=3, n_components_init=1)),
}


@pytest.mark.parametrize("kind", list(FITS))
def test_a_cuda_fit_equals_the_local_fit_and_repeats_bit_for_bit(kind, fit_launch):
    cls, extra = FITS[kind]
    X = small_data()
    kwargs = {**dict(n_components=2, random_state=0, chunk_size=15, max_iter=3, tol=0,
                     init_sample_size=40), **extra}
    fits = [cls(backend=backend, **kwargs).fit(X) for backend in ("cuda", "cuda", "local")]
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(fits[0], name), getattr(fits[1], name))
        np.testing.assert_allclose(getattr(fits[0], name), getattr(fits[2], name),
                                   rtol=1e-8, atol=1e-10)
    assert fits[0].lower_bound_ == fits[1].lower_bound_
    np.testing.assert_allclose(fits[0].lower_bound_, fits[2].lower_bound_, rtol=1e-8)
    model = fits[0]
    np.testing.assert_allclose(model.score_samples(X[:9]),
                               model.set_params(backend="local").score_samples(X[:9]),
                               rtol=1e-12)


def test_partial_fit_on_the_gpu_equals_partial_fit_on_the_cpu(fit_launch):
    X = small_data()
    models = [fastvi.BayesianGaussianMixture(n_components=2, random_state=0, backend=backend)
              for backend in ("cuda", "local")]
    for start in (0, 15, 30):
        for model in models:
            model.partial_fit(X[start:start + 15])
    np.testing.assert_allclose(models[0].means_, models[1].means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(models[0].predict(X), models[1].predict(X))


class _CrashAt:
    """A checkpoint callback that keeps the state of its n-th call, then crashes."""

    def __init__(self, n):
        self.n, self.seen, self.state = n, 0, None

    def __call__(self, state, force=False):
        self.seen += 1
        if self.seen == self.n:
            self.state = state
            raise RuntimeError("simulated crash")


def test_a_checkpointed_cuda_fit_resumes_to_the_uninterrupted_fit(fit_launch, tmp_path):
    X = small_data()
    kwargs = dict(n_components=2, random_state=0, chunk_size=15, max_iter=3, tol=0,
                  algorithm="memoized", batch_size=15, backend="cuda")
    whole = fastvi.BayesianGaussianMixture(**kwargs).fit(X)
    crash = _CrashAt(4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fastvi.BayesianGaussianMixture(**kwargs).fit(X, checkpoint=crash)
    # through a real checkpoint file, as a resumed process would read it
    path = tmp_path / "fit.ckpt"
    fastvi.Checkpointer(path, every_seconds=None, keep=True)(crash.state, force=True)
    state, _ = fastvi.load_checkpoint(path)
    resumed = fastvi.BayesianGaussianMixture(**kwargs).fit(X, resume=state)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    assert resumed.lower_bound_ == whole.lower_bound_


def test_truncated_q_is_refused_with_one_sentence():
    with pytest.raises(InvalidParameterError, match="does not run the truncated q"):
        fastvi.BayesianGaussianMixture(n_components=4, n_active=2,
                                       backend="cuda").fit(small_data())


@pytest.mark.skipif(not SIMULATED, reason="on a GPU 'auto' is the GPU")
def test_auto_is_the_local_backend_without_a_gpu():
    assert get_backend("auto").name == "local"
    model = fastvi.GaussianMixture(2, backend="auto", random_state=0).fit(small_data())
    assert model.means_.shape == (2, 2)


# ----------------------------------------------------------------------------- cannot run

@pytest.mark.parametrize("cause,expected", [
    ("numba-cuda", "needs numba-cuda, which is not installed: pip install 'fastvi[cuda]'"),
    ("driver", "found no CUDA driver on this machine"),
    ("no device", "the CUDA driver is installed but sees no GPU"),
    ("zero gpus", "the CUDA driver is installed but sees no GPU"),
])
def test_each_reason_the_gpu_cannot_be_used_is_one_sentence(cause, expected, monkeypatch):
    from numba.cuda.cudadrv.error import CudaSupportError
    from fastvi.engine import backend
    monkeypatch.setattr(backend, "_BY_NAME", {})     # no backend made before this test
    if cause == "numba-cuda":
        monkeypatch.setattr(engine_cuda, "_import_numba_cuda", lambda: None)
    elif cause == "driver":
        monkeypatch.setattr(engine_cuda, "_driver_error", lambda: CudaSupportError(
            "Error at driver init: \n\nCUDA driver library cannot be found.\nEnsure that a "
            "compatible NVIDIA driver is installed and available on your system path.\n:"))
    elif cause == "no device":
        monkeypatch.setattr(engine_cuda, "_driver_error", lambda: CudaSupportError(
            "Error at driver init: Call to cuInit results in CUDA_ERROR_NO_DEVICE (100)"))
    else:
        monkeypatch.setattr(engine_cuda, "_driver_error", lambda: None)
        monkeypatch.setattr(engine_cuda, "_gpu_count", lambda: 0)
    with pytest.raises(InvalidParameterError) as info:
        fastvi.GaussianMixture(2, backend="cuda").fit(small_data())
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert not engine_cuda.gpu_usable()


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


@pytest.mark.skipif(not SIMULATED, reason="this machine has a GPU")
def test_without_the_simulator_this_machine_has_no_driver_and_says_so():
    """For real: no simulator, no driver (CI's machines have no GPU)."""
    done = _run("""
        import numpy as np, fastvi
        from fastvi.engine.backend import get_backend
        assert get_backend("auto").name == "local"
        try:
            fastvi.GaussianMixture(2, backend="cuda").fit(np.eye(4))
        except ValueError as exc:
            print(exc)
    """, NUMBA_ENABLE_CUDASIM="0")
    assert done.returncode == 0, done.stderr
    assert ("found no CUDA driver" in done.stdout or "sees no GPU" in done.stdout
            or "failed to start" in done.stdout), done.stdout


def test_without_numba_cuda_the_error_names_the_extra():
    done = _run("""
        import sys
        sys.modules["numba_cuda"] = None        # as if it were not installed
        import numpy as np, fastvi
        try:
            fastvi.GaussianMixture(2, backend="cuda").fit(np.eye(4))
        except ValueError as exc:
            print(exc)
    """)
    assert done.returncode == 0, done.stderr
    assert "pip install 'fastvi[cuda]'" in done.stdout


# ----------------------------------------------------------------------------- on a GPU only

@pytest.mark.skipif(SIMULATED, reason="sizes for a GPU, not the simulator")
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_at_scale_the_gpu_agrees_with_the_cpu_and_with_itself(covariance_type):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300_000, 16)).astype(np.float32)
    params, _ = em_params(covariance_type, 64, 16, 0)
    sample_weight = rng.uniform(0.0, 2.0, X.shape[0])
    source = ArraySource(X, 65_536)
    gpu_stats = [total_stats(get_backend("cuda"), source, params, sample_weight)
                 for _ in range(2)]
    assert_stats_equal(*gpu_stats)
    assert_stats_close(gpu_stats[0], total_stats(get_backend("local"), source, params,
                                                 sample_weight), rtol=1e-9)


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture
def tiny_h5(tmp_path):
    from fastvi.cli import main
    path = tmp_path / "data.h5"
    assert main(["make-data", str(path), "--n-samples", "30", "--n-features", "2",
                 "--n-components", "2", "--seed", "1", "--chunk-rows", "15"]) == 0
    return path


def test_cli_fit_predict_and_score_run_on_the_gpu(tiny_h5, tmp_path, capsys, fit_launch):
    from fastvi.cli import main
    from fastvi.io.model import load_model
    import h5py
    models = {}
    for backend in ("cuda", "local"):
        out = tmp_path / f"{backend}.h5"
        assert main(["fit", str(tiny_h5), "--k", "2", "--cov", "full", "--max-iter", "3",
                     "--tol", "0", "--seed", "0", "--no-checkpoint", "--backend", backend,
                     "-o", str(out)]) == 0
        models[backend] = load_model(out)
    np.testing.assert_allclose(models["cuda"].means_, models["local"].means_, rtol=1e-8)
    predictions = tmp_path / "pred.h5"
    assert main(["predict", str(tmp_path / "cuda.h5"), str(tiny_h5), "-o", str(predictions),
                 "--proba", "--top", "2", "--backend", "cuda"]) == 0
    with h5py.File(tiny_h5, "r") as f:
        X = f["X"][()]
    with h5py.File(predictions, "r") as f:
        np.testing.assert_array_equal(f["labels"][()], models["cuda"].predict(X))
        np.testing.assert_allclose(f["resp"][()], models["cuda"].predict_proba(X), atol=1e-6)
    capsys.readouterr()
    assert main(["score", str(tmp_path / "cuda.h5"), str(tiny_h5), "--backend", "cuda"]) == 0
    assert "score" in capsys.readouterr().out


def test_cli_backend_cuda_with_a_cluster_is_one_error_line(tiny_h5, tmp_path, capsys):
    from fastvi.cli import main
    code = main(["fit", str(tiny_h5), "--k", "2", "--backend", "cuda", "--workers", "2",
                 "-o", str(tmp_path / "m.h5")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--backend cuda and --workers 2 cannot be combined" in err
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.skipif(not SIMULATED, reason="this machine has a GPU")
def test_cli_backend_cuda_without_a_driver_is_one_error_line(tiny_h5, tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastvi.cli", "fit", str(tiny_h5), "--k", "2",
                           "--backend", "cuda", "-o", str(tmp_path / "m.h5")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("fastvi: error: backend='cuda' ")
    assert done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "m.h5").exists()


def test_work_arrays_larger_than_the_free_gpu_memory_are_one_sentence(gpu, monkeypatch):
    from numba import cuda

    class Small:
        def get_memory_info(self):
            return 1_000, 80_000_000_000
    monkeypatch.setattr(cuda, "current_context", lambda: Small())
    params, _ = em_params("diag", 3, 2, 0)
    with pytest.raises(MemoryError, match=r"chunks of 50 rows with K = 3 need .* GB of GPU "
                                          r"memory .* lower chunk_size \(--chunk-size\)"):
        total_stats(gpu, ArraySource(np.zeros((50, 2)), 50), params)


def test_the_gpu_benchmark_runs_its_smoke_sizes(tmp_path):
    """bench/gpu.py is run unattended on a GPU (bench/gpu_check.sh): its smoke sizes run
    here, in the simulator, so that the script cannot rot while no GPU is at hand."""
    import json
    script = os.path.join(os.path.dirname(__file__), os.pardir, "bench", "gpu.py")
    done = subprocess.run([sys.executable, script, "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["cases"] and not [case for case in report["cases"]
                                    if case["status"].startswith("failed")]
    assert "fastvi on the GPU" in (tmp_path / "gpu.md").read_text()
