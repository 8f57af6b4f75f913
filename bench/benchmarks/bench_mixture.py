"""asv benchmarks: the fused E-step over grids of covariance type, dtype, D and K, and
whole iterations of fastvi and scikit-learn on the same data.

Run from ``bench/`` (README, "Benchmarks"): ``asv run --quick --python=same`` measures the
checkout installed in the current environment; ``asv continuous main HEAD`` compares two
commits.  ``FASTVI_BENCH_LARGE=1`` runs the large sizes: N = 2,000,000 rows instead of
200,000, and the grids reach D = 128 and K = 1024.  ``compare.py`` beside this folder
prints the peers side by side without asv.
"""
import os
import warnings

import fastvi
from fastvi.engine import local

from .common import mixture_data

LARGE = os.environ.get("FASTVI_BENCH_LARGE", "") not in ("", "0")
N_SAMPLES = 2_000_000 if LARGE else 200_000
N_FEATURES, N_COMPONENTS = 16, 16
FEATURES_GRID = [2, 16, 128] if LARGE else [4, 16, 64]
COMPONENTS_GRID = [4, 16, 256, 1024] if LARGE else [4, 16, 64]


class EStepPass:
    """The fused kernel alone: one pass over the rows, statistics included."""

    params = (["full", "diag"], ["float64", "float32"], FEATURES_GRID, COMPONENTS_GRID)
    param_names = ["covariance_type", "dtype", "n_features", "n_components"]
    timeout = 600

    def setup(self, covariance_type, dtype, n_features, n_components):
        self.X = mixture_data(N_SAMPLES, n_features, n_components, dtype)
        model = fastvi.GaussianMixture(n_components, covariance_type=covariance_type,
                                       init_params="random_from_data", max_iter=0,
                                       random_state=0).fit(self.X)
        self.kernel_params = model._kernel_params()
        local.accumulate(self.X[:1000], self.kernel_params)

    def time_accumulate(self, covariance_type, dtype, n_features, n_components):
        local.accumulate(self.X, self.kernel_params)


class Iteration:
    """Whole fits of a few iterations: fastvi and scikit-learn side by side."""

    params = (["fastvi", "sklearn"], ["em", "vb"], ["full", "diag"])
    param_names = ["library", "model", "covariance_type"]
    timeout = 300

    def setup(self, library, model, covariance_type):
        self.X = mixture_data(N_SAMPLES, N_FEATURES, N_COMPONENTS, "float64")
        if library == "fastvi":
            cls = fastvi.GaussianMixture if model == "em" else fastvi.BayesianGaussianMixture
        else:
            from sklearn import mixture as sk
            cls = sk.GaussianMixture if model == "em" else sk.BayesianGaussianMixture
        self.model = cls(n_components=N_COMPONENTS, covariance_type=covariance_type,
                         max_iter=3, tol=0.0, init_params="random_from_data", random_state=0)
        warnings.simplefilter("ignore")
        self.model.fit(self.X[:2000])

    def time_fit_3_iterations(self, library, model, covariance_type):
        self.model.fit(self.X)


class TruncatedPass:
    """One E-step pass at K = 256, dense against truncated (L, G) from settled supports
    (``bench/truncated.py`` runs the full-size comparison with fits)."""

    params = (["full", "diag"], ["dense", "1,8", "4,16", "8,32"])
    param_names = ["covariance_type", "setting"]
    timeout = 300

    def setup(self, covariance_type, setting):
        from fastvi.engine import truncation as _truncated
        from fastvi.engine.backend import Search
        from fastvi.engine.stats import SufficientStats
        self.X = mixture_data(N_SAMPLES, N_FEATURES, 256, "float32")
        model = fastvi.GaussianMixture(256, covariance_type=covariance_type,
                                       init_params="random_from_data", max_iter=0,
                                       random_state=0).fit(self.X)
        params = model._kernel_params()
        if setting == "dense":
            self.run = lambda: local.accumulate(self.X, params)
            return
        n_active, n_candidates = (int(v) for v in setting.split(","))
        truncation = _truncated.make_truncation(n_active, n_candidates, 256)
        neighbours = local.neighbour_lists(params, truncation)
        supports = _truncated.MemorySupports(self.X.shape[0], n_active)
        search = Search(truncation, supports, neighbours, 0)

        def run():
            stats = SufficientStats.zeros(params.means, params.full)
            for start in range(0, self.X.shape[0], 65536):
                local.accumulate_truncated(self.X[start:start + 65536], params, None, stats,
                                            search, start, 0)
        run()                      # seeds the supports (and compiles)
        self.run = run

    def time_pass(self, covariance_type, setting):
        self.run()


class VAEEpoch:
    """One training epoch of the digits VAE (``bench/vae_torch.py`` compares with PyTorch)."""

    params = (["float32", "float64"],)
    param_names = ["dtype"]

    def setup(self, dtype):
        from sklearn.datasets import load_digits
        self.X = (load_digits().data / 16.0).astype(dtype)
        self.make = lambda: fastvi.VAE(8, decoder_hidden=(256, 256), encoder_hidden=(256, 256),
                                       likelihood="bernoulli", max_epochs=1, dtype=dtype,
                                       random_state=0)
        self.make().fit(self.X)

    def time_epoch(self, dtype):
        self.make().fit(self.X)
