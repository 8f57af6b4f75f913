"""Write the legacy fixtures of ``tests/test_legacy.py``: what today's fastvi computes.

Usage::

    python tests/data/make_legacy_fixtures.py OUTDIR
    python tests/data/make_legacy_fixtures.py --refit OUTDIR REASON CASE [CASE ...]

(``--refit``: a change moved fitted bits on purpose; the named fits, what their model files
load to and every checkpoint's resumed fit are computed again by today's code, the files
of the old code kept.)

The committed copy is ``tests/data/legacy/``, written by the code before the package was
split into sub-packages (``fastvi.mixture``, ``fastvi.engine``, ...).  It lets the tests
prove that the code after that move still (a) fits bit for bit what the old code fitted,
(b) loads the model files and (c) resumes the checkpoints the old code wrote.

Only the public API is used (``import fastvi``, the names of ``fastvi.__all__``, the
estimators' methods and ``save``), so this script runs unchanged on the old and the new
code.  Nothing depends on the clock: two runs write the same arrays.

OUTDIR receives

* ``data.npz``: the fixed-seed data (stored, so the tests never regenerate them);
* ``cases.json``: every fit (constructor arguments, the calls and their data), every model
  file and every checkpoint, and how to rebuild / resume each;
* ``results.npz``: ``<case>/<attribute>`` for every numeric fitted attribute (names
  ending in ``_``) and ``<case>/predict:<method>`` for the predictions on the data;
* ``models/*.h5`` written by ``.save()`` and ``models.npz``: the fitted attributes and
  predictions of each model as ``fastvi.load`` reads it back;
* ``checkpoints/*.ckpt`` written mid-fit by ``fastvi.Checkpointer`` and
  ``checkpoints.npz``: the result of resuming each to the end (``<name>/resumed/...``) and
  of the uninterrupted fit (``<name>/uninterrupted/...``).
"""
import inspect
import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

import fastvi

SEED = 20240917
N_PER_CLUSTER = 200
CENTRES = ((0.0, 0.0, 0.0), (6.0, 0.0, 0.0), (0.0, 7.0, 1.0))
SCALES = (1.0, 0.7, 1.3)

# constructor arguments that are arrays (stored in JSON as {"array": nested lists})
ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init", "mean_prior",
                "covariance_prior")
# constructor arguments that are tuples (JSON lists)
TUPLE_PARAMS = ("decoder_hidden", "encoder_hidden", "hidden")
# predictions are made on the first PREDICT_ROWS rows
PREDICT_ROWS = 100
# fitted attributes that are objects, not numbers (only ``mixture_`` is looked into)
OBJECT_ATTRS = ("decoder_", "encoder_", "network_")


# ----------------------------------------------------------------------------- data

def make_data():
    """Three well-separated clusters, 600 x 3, rows shuffled; held-out rows; weights."""
    rng = np.random.default_rng(SEED)
    centres = np.asarray(CENTRES)
    X = np.vstack([c + s * rng.standard_normal((N_PER_CLUSTER, 3))
                   for c, s in zip(centres, SCALES)])
    labels = np.repeat(np.arange(3), N_PER_CLUSTER)
    order = rng.permutation(X.shape[0])
    X, labels = X[order], labels[order]
    X_val = np.vstack([c + s * rng.standard_normal((50, 3)) for c, s in zip(centres, SCALES)])
    # integer weights 0..3 (about a quarter zero) and some fractional ones
    weights = rng.integers(0, 4, size=X.shape[0]).astype(np.float64)
    weights[rng.choice(X.shape[0], 60, replace=False)] = 0.5
    weights[:3] = 0.0
    # a whole chunk of 128 rows (rows 128:256) weighs zero
    zero_chunk = np.ones(X.shape[0])
    zero_chunk[128:256] = 0.0
    lo, hi = X.min(axis=0), X.max(axis=0)
    return {"X": X, "X32": X.astype(np.float32), "X_val": X_val,
            "sample_weight": weights, "zero_chunk_weight": zero_chunk, "labels": labels,
            "Xunit": (X - lo) / (hi - lo), "Xstd": (X - X.mean(axis=0)) / X.std(axis=0)}


# ----------------------------------------------------------------------------- cases

def arr(value):
    return {"array": np.asarray(value, dtype=np.float64).tolist()}


def fit_call(X="X", sample_weight=None, X_val=None, method="fit", **extra):
    call = {"method": method, "X": X if isinstance(X, dict) else {"array": X}}
    if sample_weight is not None:
        call["sample_weight"] = sample_weight
    if X_val is not None:
        call["X_val"] = X_val
    call.update(extra)
    return call


def mixture_case(name, cls, params, calls=None, predict_on="X"):
    base = {"random_state": 0, "max_iter": 10}
    base.update(params)
    return {"name": name, "kind": "mixture", "class": cls, "params": base,
            "calls": calls or [fit_call()], "predict_on": predict_on}


def cases():
    G, B = "GaussianMixture", "BayesianGaussianMixture"
    C = 128                              # rows per chunk: 600 rows are 5 chunks
    dp = {"weight_concentration_prior_type": "dirichlet_process"}
    dd = {"weight_concentration_prior_type": "dirichlet_distribution"}
    trunc = {"n_components": 5, "n_active": 2, "n_candidates": 3}
    onl = {"batch_size": C}
    w, zw = "sample_weight", "zero_chunk_weight"
    f32 = fit_call("X32")
    halves = [fit_call("X", method="partial_fit", rows=[i, i + 150]) for i in (0, 150, 300, 450)]
    thirds = [fit_call("X32", sample_weight=w, method="partial_fit", rows=[i, i + 200])
              for i in (0, 200, 400)]
    hdf5 = {"hdf5": "X", "hdf5_chunks": 64, "chunk_rows": C}
    dataset = {"h5py_dataset": "X", "hdf5_chunks": 100}
    concat = {"concat": "X", "parts": [[0, 300], [300, 600]], "chunk_rows": C}
    given_init = {
        "weights_init": arr([0.3, 0.3, 0.4]),
        "means_init": arr([[0.5, 0.0, 0.0], [5.0, 0.5, 0.0], [0.0, 6.0, 0.5]]),
        "precisions_init": arr([np.eye(3), 2.0 * np.eye(3), 0.5 * np.eye(3)])}
    priors = {"weight_concentration_prior": 0.5, "mean_precision_prior": 0.8,
              "mean_prior": arr([1.0, 2.0, 0.5]), "degrees_of_freedom_prior": 4.0,
              "covariance_prior": arr([[2.0, 0.1, 0.0], [0.1, 1.5, 0.0], [0.0, 0.0, 1.0]])}
    out = [
        # GaussianMixture, batch
        mixture_case("gmm-batch-full", G, {"n_components": 3, "covariance_type": "full",
                                           "chunk_size": C, "tol": 0.0}),
        mixture_case("gmm-batch-tied-f32-onechunk", G, {
            "n_components": 3, "covariance_type": "tied", "chunk_size": 1024, "tol": 0.0,
            "max_iter": 8, "init_params": "k-means++"}, [f32], "X32"),
        mixture_case("gmm-batch-diag-weights", G, {
            "n_components": 3, "covariance_type": "diag", "chunk_size": C, "tol": 0.0,
            "init_params": "random"}, [fit_call(sample_weight=w)]),
        mixture_case("gmm-batch-spherical-rfd", G, {
            "n_components": 3, "covariance_type": "spherical", "chunk_size": 100,
            "max_iter": 20, "init_params": "random_from_data"}),
        mixture_case("gmm-batch-full-ninit2", G, {
            "n_components": 3, "covariance_type": "full", "chunk_size": C, "n_init": 2,
            "init_params": "random", "max_iter": 5, "tol": 0.0}),
        mixture_case("gmm-batch-full-warm", G, {
            "n_components": 3, "covariance_type": "full", "chunk_size": C, "max_iter": 4,
            "tol": 0.0, "warm_start": True}, [fit_call(), fit_call()]),
        mixture_case("gmm-batch-full-given-init", G, {
            "n_components": 3, "covariance_type": "full", "chunk_size": C, "tol": 0.0,
            "max_iter": 6, "reg_covar": 1e-4, **given_init}),
        mixture_case("gmm-batch-diag-dtype32", G, {
            "n_components": 3, "covariance_type": "diag", "chunk_size": C, "tol": 0.0,
            "dtype": "float32", "n_jobs": 1}),
        mixture_case("gmm-batch-full-hdf5source", G, {
            "n_components": 3, "covariance_type": "full", "tol": 0.0},
            [fit_call(hdf5)]),
        mixture_case("gmm-batch-tied-h5pydataset", G, {
            "n_components": 3, "covariance_type": "tied", "chunk_size": 200, "tol": 0.0},
            [fit_call(dataset)]),
        # Chunks of several kernel blocks (BLOCK_ROWS = 256): the batch sum over such chunks
        # is where the backend seam changed the order of additions (ROUNDING_ONLY in
        # tests/test_legacy.py); the online algorithms add per-chunk statistics already.
        mixture_case("gmm-batch-full-multiblock", G, {
            "n_components": 3, "covariance_type": "full", "chunk_size": 300, "tol": 0.0}),
        mixture_case("bgmm-dp-batch-diag-multiblock", B, {
            **dp, "n_components": 3, "covariance_type": "diag", "chunk_size": 300,
            "tol": 0.0}, [fit_call(sample_weight=w)]),
        mixture_case("gmm-memoized-full-multiblock", G, {
            "n_components": 3, "covariance_type": "full", "algorithm": "memoized",
            "chunk_size": 300, "tol": 0.0}),
        mixture_case("bgmm-dd-stochastic-tied-multiblock", B, {
            **dd, "n_components": 3, "covariance_type": "tied", "algorithm": "stochastic",
            "batch_size": 300, "tol": 0.0}),
        # GaussianMixture, stochastic
        mixture_case("gmm-stochastic-full-val", G, {
            "n_components": 3, "covariance_type": "full", "algorithm": "stochastic",
            "tol": 0.0, **onl}, [fit_call(X_val={"array": "X_val"})]),
        mixture_case("gmm-stochastic-tied-weights", G, {
            "n_components": 3, "covariance_type": "tied", "algorithm": "stochastic",
            "tol": 0.0, "learning_offset": 5.0, "learning_decay": 0.9, **onl},
            [fit_call(sample_weight=w)]),
        mixture_case("gmm-stochastic-diag-f32", G, {
            "n_components": 3, "covariance_type": "diag", "algorithm": "stochastic",
            "tol": 0.0, "init_params": "random_from_data", "batch_size": 96}, [f32], "X32"),
        mixture_case("gmm-stochastic-spherical-onechunk", G, {
            "n_components": 3, "covariance_type": "spherical", "algorithm": "stochastic",
            "tol": 0.0, "batch_size": 1024, "chunk_size": 1024}),
        mixture_case("gmm-stochastic-full-zerochunk", G, {
            "n_components": 3, "covariance_type": "full", "algorithm": "stochastic",
            "tol": 0.0, "shuffle": False, **onl}, [fit_call(sample_weight=zw)]),
        # GaussianMixture, memoized
        mixture_case("gmm-memoized-full", G, {
            "n_components": 3, "covariance_type": "full", "algorithm": "memoized",
            "tol": 0.0, **onl}),
        mixture_case("gmm-memoized-tied-f32-weights", G, {
            "n_components": 3, "covariance_type": "tied", "algorithm": "memoized",
            "tol": 0.0, "init_params": "k-means++", **onl},
            [fit_call("X32", sample_weight=w)], "X32"),
        mixture_case("gmm-memoized-diag-noshuffle", G, {
            "n_components": 3, "covariance_type": "diag", "algorithm": "memoized",
            "tol": 0.0, "init_params": "random", "shuffle": False, **onl}),
        mixture_case("gmm-memoized-spherical-onechunk", G, {
            "n_components": 3, "covariance_type": "spherical", "algorithm": "memoized",
            "max_iter": 20, "chunk_size": 1024}),
        mixture_case("gmm-memoized-diag-zerochunk", G, {
            "n_components": 3, "covariance_type": "diag", "algorithm": "memoized",
            "tol": 0.0, **onl}, [fit_call(sample_weight=zw)]),
        mixture_case("gmm-memoized-full-concatsource", G, {
            "n_components": 3, "covariance_type": "full", "algorithm": "memoized",
            "tol": 0.0}, [fit_call(concat)]),
        # GaussianMixture, truncated q (K = 5, L = 2, G = 3), and the exact top-L
        mixture_case("gmm-trunc-batch-full", G, {
            **trunc, "covariance_type": "full", "chunk_size": C, "tol": 0.0}),
        mixture_case("gmm-trunc-memoized-diag", G, {
            **trunc, "covariance_type": "diag", "algorithm": "memoized", "tol": 0.0, **onl}),
        mixture_case("gmm-trunc-stochastic-spherical", G, {
            **trunc, "covariance_type": "spherical", "algorithm": "stochastic", "tol": 0.0,
            **onl}),
        mixture_case("gmm-trunc-exact-batch-tied", G, {
            "n_components": 4, "n_active": 2, "covariance_type": "tied", "chunk_size": C,
            "tol": 0.0}, [fit_call(sample_weight=w)]),
        # GaussianMixture, partial_fit sequences
        mixture_case("gmm-partial-fit-full", G, {
            "n_components": 3, "covariance_type": "full", "chunk_size": 64,
            "total_samples": 600.0}, halves),
        mixture_case("gmm-partial-fit-diag-f32-weights", G, {
            "n_components": 3, "covariance_type": "diag", "chunk_size": 64}, thirds, "X32"),
        mixture_case("gmm-partial-fit-trunc-full", G, {
            **trunc, "covariance_type": "full", "chunk_size": 64, "total_samples": 600.0},
            halves),
        # BayesianGaussianMixture, batch
        mixture_case("bgmm-dp-batch-full", B, {
            **dp, "n_components": 3, "covariance_type": "full", "chunk_size": C,
            "tol": 0.0}),
        mixture_case("bgmm-dd-batch-tied-onechunk", B, {
            **dd, "n_components": 3, "covariance_type": "tied", "chunk_size": 1024,
            "tol": 0.0}),
        mixture_case("bgmm-dp-batch-diag-weights", B, {
            **dp, "n_components": 3, "covariance_type": "diag", "chunk_size": C, "tol": 0.0,
            "init_params": "random"}, [fit_call(sample_weight=w)]),
        mixture_case("bgmm-dd-batch-spherical-f32", B, {
            **dd, "n_components": 3, "covariance_type": "spherical", "chunk_size": C,
            "tol": 0.0, "init_params": "random_from_data"}, [f32], "X32"),
        mixture_case("bgmm-dp-batch-full-priors", B, {
            **dp, "n_components": 3, "covariance_type": "full", "chunk_size": C, "tol": 0.0,
            "reg_covar": 1e-3, **priors}),
        mixture_case("bgmm-dd-batch-full-ninit2-kmpp", B, {
            **dd, "n_components": 4, "covariance_type": "full", "chunk_size": C,
            "n_init": 2, "init_params": "k-means++", "max_iter": 6, "tol": 0.0}),
        mixture_case("bgmm-dp-batch-diag-warm", B, {
            **dp, "n_components": 3, "covariance_type": "diag", "chunk_size": C,
            "max_iter": 4, "tol": 0.0, "warm_start": True}, [fit_call(), fit_call()]),
        mixture_case("bgmm-dp-batch-spherical-converge", B, {
            **dp, "n_components": 3, "covariance_type": "spherical", "chunk_size": C,
            "max_iter": 20}),
        # BayesianGaussianMixture, stochastic
        mixture_case("bgmm-dp-stochastic-full-val", B, {
            **dp, "n_components": 3, "covariance_type": "full", "algorithm": "stochastic",
            "tol": 0.0, **onl}, [fit_call(X_val={"array": "X_val"})]),
        mixture_case("bgmm-dd-stochastic-tied-weights", B, {
            **dd, "n_components": 3, "covariance_type": "tied", "algorithm": "stochastic",
            "tol": 0.0, **onl}, [fit_call(sample_weight=w)]),
        mixture_case("bgmm-dp-stochastic-diag-f32", B, {
            **dp, "n_components": 3, "covariance_type": "diag", "algorithm": "stochastic",
            "tol": 0.0, "batch_size": 96, "init_params": "k-means++"}, [f32], "X32"),
        mixture_case("bgmm-dd-stochastic-spherical-onechunk", B, {
            **dd, "n_components": 3, "covariance_type": "spherical",
            "algorithm": "stochastic", "tol": 0.0, "batch_size": 1024}),
        # BayesianGaussianMixture, memoized
        mixture_case("bgmm-dp-memoized-full", B, {
            **dp, "n_components": 3, "covariance_type": "full", "algorithm": "memoized",
            "tol": 0.0, **onl}),
        mixture_case("bgmm-dd-memoized-tied-f32-weights", B, {
            **dd, "n_components": 3, "covariance_type": "tied", "algorithm": "memoized",
            "tol": 0.0, **onl}, [fit_call("X32", sample_weight=w)], "X32"),
        mixture_case("bgmm-dp-memoized-diag-zerochunk", B, {
            **dp, "n_components": 3, "covariance_type": "diag", "algorithm": "memoized",
            "tol": 0.0, "init_params": "random_from_data", **onl},
            [fit_call(sample_weight=zw)]),
        mixture_case("bgmm-dd-memoized-spherical-onechunk", B, {
            **dd, "n_components": 3, "covariance_type": "spherical",
            "algorithm": "memoized", "max_iter": 20, "chunk_size": 1024}),
        # BayesianGaussianMixture, truncated q
        mixture_case("bgmm-dp-trunc-memoized-full", B, {
            **dp, **trunc, "covariance_type": "full", "algorithm": "memoized", "tol": 0.0,
            **onl}),
        mixture_case("bgmm-dd-trunc-batch-diag", B, {
            **dd, **trunc, "covariance_type": "diag", "chunk_size": C, "tol": 0.0}),
        # BayesianGaussianMixture, partial_fit sequences
        mixture_case("bgmm-dp-partial-fit-full", B, {
            **dp, "n_components": 3, "covariance_type": "full", "chunk_size": 64,
            "total_samples": 600.0}, halves),
        mixture_case("bgmm-dd-partial-fit-spherical-f32-weights", B, {
            **dd, "n_components": 3, "covariance_type": "spherical", "chunk_size": 64},
            thirds, "X32"),
    ]
    # the amortized models (few epochs, small layers)
    vae = {"random_state": 0, "max_epochs": 3, "batch_size": 64, "chunk_size": 256,
           "learning_rate": 0.01}

    def amortized(name, cls, params, X="Xstd"):
        return {"name": name, "kind": "amortized", "class": cls, "params": {**vae, **params},
                "calls": [fit_call(X)], "predict_on": X}

    out += [
        amortized("vae-amortized", "VAE", {"n_latent": 2, "decoder_hidden": [8],
                                           "encoder_hidden": [8]}),
        amortized("vae-per-example-fixedvar", "VAE", {
            "n_latent": 1, "decoder_hidden": [6], "inference": "per_example",
            "variance": 0.5, "refine_steps": 3, "max_epochs": 2}),
        amortized("vae-semi-amortized-f32-relu", "VAE", {
            "n_latent": 2, "decoder_hidden": [8], "encoder_hidden": [8],
            "inference": "semi_amortized", "refine_steps": 3, "activation": "relu",
            "dtype": "float32", "max_epochs": 2}),
        amortized("vae-bernoulli", "VAE", {"n_latent": 1, "likelihood": "bernoulli",
                                           "encoder_hidden": [4]}, "Xunit"),
        amortized("ppca-amortized", "PPCA", {"n_latent": 2}),
        amortized("ppca-per-example", "PPCA", {"n_latent": 1, "inference": "per_example",
                                               "refine_steps": 3, "max_epochs": 2}),
        {"name": "encoder-gmm", "kind": "encoder", "class": "MixtureEncoder",
         "params": {"mixture": {"estimator": "GaussianMixture", "params": {
             "n_components": 3, "random_state": 0, "max_iter": 10, "chunk_size": C}},
             "hidden": [8], "max_epochs": 3, "batch_size": 64, "learning_rate": 0.01,
             "random_state": 0},
         "calls": [fit_call()], "predict_on": "X"},
        {"name": "encoder-bgmm-diag", "kind": "encoder", "class": "MixtureEncoder",
         "params": {"mixture": {"estimator": "BayesianGaussianMixture", "params": {
             "n_components": 3, "covariance_type": "diag", "max_iter": 10,
             "chunk_size": C}}, "hidden": [], "max_epochs": 2, "batch_size": 100,
             "random_state": 1},
         "calls": [fit_call()], "predict_on": "X"},
    ]
    return out


# model files: (file name, the case whose fitted estimator is saved)
MODELS = [("gmm_full.h5", "gmm-batch-full"),
          ("gmm_tied_f32.h5", "gmm-batch-tied-f32-onechunk"),
          ("gmm_diag.h5", "gmm-batch-diag-weights"),
          ("gmm_spherical.h5", "gmm-batch-spherical-rfd"),
          ("gmm_full_given_init.h5", "gmm-batch-full-given-init"),
          ("gmm_trunc_full.h5", "gmm-trunc-batch-full"),
          ("bgmm_dp_full.h5", "bgmm-dp-batch-full"),
          ("bgmm_dp_full_priors.h5", "bgmm-dp-batch-full-priors"),
          ("bgmm_dd_spherical_f32.h5", "bgmm-dd-batch-spherical-f32"),
          ("bgmm_dd_trunc_diag.h5", "bgmm-dd-trunc-batch-diag"),
          ("vae_amortized.h5", "vae-amortized"),
          ("vae_per_example.h5", "vae-per-example-fixedvar"),
          ("vae_semi_amortized_f32.h5", "vae-semi-amortized-f32-relu"),
          ("vae_bernoulli.h5", "vae-bernoulli"),
          ("ppca_amortized.h5", "ppca-amortized"),
          ("ppca_per_example.h5", "ppca-per-example")]

# checkpoints: (name, the case that is interrupted, stop after this many chunks / epochs)
# A fit is stopped by a callback that raises after ``stop`` chunks; the Checkpointer
# (every_seconds=0) wrote the state after each chunk before that, so the checkpoint is
# the state after ``stop - 1`` chunks.  The VAE / PPCA checkpoint after every epoch; the
# fit is stopped after ``stop`` epochs.
CHECKPOINTS = [("ck-gmm-batch-full", "gmm-batch-full", 8),           # pass 1, chunk 2 of 5
               ("ck-gmm-batch-diag-weights", "gmm-batch-diag-weights", 16),   # pass 3, 0
               ("ck-gmm-stochastic-tied-weights", "gmm-stochastic-tied-weights", 9),
               ("ck-gmm-stochastic-diag-f32", "gmm-stochastic-diag-f32", 10),
               ("ck-gmm-memoized-full", "gmm-memoized-full", 4),     # first pass, part way
               ("ck-gmm-memoized-tied-f32-weights", "gmm-memoized-tied-f32-weights", 13),
               ("ck-bgmm-dp-memoized-full", "bgmm-dp-memoized-full", 12),
               ("ck-bgmm-dd-stochastic-tied-weights", "bgmm-dd-stochastic-tied-weights", 7),
               ("ck-bgmm-dp-batch-full", "bgmm-dp-batch-full", 9),
               ("ck-gmm-trunc-memoized-diag", "gmm-trunc-memoized-diag", 13),
               ("ck-gmm-trunc-batch-full", "gmm-trunc-batch-full", 12),
               ("ck-bgmm-dp-trunc-memoized-full", "bgmm-dp-trunc-memoized-full", 8),
               ("ck-gmm-batch-full-multiblock", "gmm-batch-full-multiblock", 4),  # 1, 1 of 2
               ("ck-vae-amortized", "vae-amortized", 2),
               ("ck-vae-per-example", "vae-per-example-fixedvar", 1),
               ("ck-ppca-amortized", "ppca-amortized", 1)]


# ----------------------------------------------------------------------------- running

def decode_params(params):
    """Constructor arguments from their JSON form."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict) and "array" in value:
            value = np.asarray(value["array"], dtype=np.float64)
        elif isinstance(value, dict) and "estimator" in value:
            value = getattr(fastvi, value["estimator"])(**decode_params(value["params"]))
        elif key in TUPLE_PARAMS and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


# constructor defaults that changed after the fixtures were written, with the value the
# old code used: a case that does not give the parameter is rebuilt as it was then
# (issue 30: PPCA starts from its closed-form solution unless init="random")
FORMER_DEFAULTS = {"PPCA": {"init": "random"}}


def build(case):
    params = decode_params(case["params"])
    for name, value in FORMER_DEFAULTS.get(case["class"], {}).items():
        if name in inspect.signature(getattr(fastvi, case["class"])).parameters:
            params.setdefault(name, value)
    return getattr(fastvi, case["class"])(**params)


class Inputs:
    """The arrays, HDF5 files and sources that the calls of a case read (closed at exit)."""

    def __init__(self, data, workdir):
        self.data, self.workdir, self._open = data, workdir, []

    def X(self, spec, rows=None):
        import h5py
        if "array" in spec:
            X = self.data[spec["array"]]
            return X if rows is None else X[rows[0]:rows[1]]
        assert rows is None
        if "hdf5" in spec or "h5py_dataset" in spec:
            name = spec.get("hdf5") or spec["h5py_dataset"]
            path = os.path.join(self.workdir, f"{name}_{spec['hdf5_chunks']}.h5")
            if not os.path.exists(path):
                with h5py.File(path, "w") as f:
                    f.create_dataset("X", data=self.data[name],
                                     chunks=(spec["hdf5_chunks"], self.data[name].shape[1]))
            if "hdf5" in spec:
                source = fastvi.HDF5Source(path, "/X", chunk_rows=spec["chunk_rows"])
                self._open.append(source)
                return source
            f = h5py.File(path, "r")
            self._open.append(f)
            return f["X"]
        if "concat" in spec:
            X = self.data[spec["concat"]]
            return fastvi.ConcatSource([fastvi.ArraySource(X[a:b], chunk_rows=spec["chunk_rows"])
                                        for a, b in spec["parts"]])
        raise ValueError(f"unknown data spec {spec!r}")

    def close(self):
        for thing in self._open:
            thing.close()
        self._open = []


def call_kwargs(call, inputs):
    kwargs = {}
    if call.get("sample_weight") is not None:
        weights = inputs.data[call["sample_weight"]]
        rows = call.get("rows")
        kwargs["sample_weight"] = weights if rows is None else weights[rows[0]:rows[1]]
    if call.get("X_val") is not None:
        kwargs["X_val"] = inputs.X(call["X_val"])
    return kwargs


def run_calls(estimator, case, inputs, **extra):
    """Make every call of the case (``extra`` goes to the last one); return the
    warnings' class names."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, call in enumerate(case["calls"]):
            kwargs = call_kwargs(call, inputs)
            if i == len(case["calls"]) - 1:
                kwargs.update(extra)
            getattr(estimator, call["method"])(inputs.X(call["X"], call.get("rows")), **kwargs)
    # library deprecations are the environment's, not fastvi's behaviour
    ignored = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    return sorted({w.category.__name__ for w in caught if not issubclass(w.category, ignored)})


def _numeric(value):
    if isinstance(value, (bool, int, float, np.generic)):
        return np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return None


def fitted_attributes(estimator, prefix=""):
    """Every public attribute ending in ``_`` that is a number or a numeric array, lists
    of numbers as arrays, tuples of arrays as ``name.0``, ``name.1``, ...; a
    ``mixture_`` (MixtureEncoder) is looked into."""
    out = {}
    for name in dir(estimator):
        if name.startswith("_") or not name.endswith("_") or name in OBJECT_ATTRS:
            continue
        try:
            value = getattr(estimator, name)
        except Exception:           # a property of an unfitted part (AttributeError, ...)
            continue
        if callable(value):
            continue
        if name == "mixture_":
            out.update(fitted_attributes(value, prefix + "mixture_."))
            continue
        got = _numeric(value)
        if got is not None:
            out[prefix + name] = got
        elif isinstance(value, tuple) and all(_numeric(v) is not None for v in value):
            for i, v in enumerate(value):
                out[f"{prefix}{name}.{i}"] = _numeric(v)
        elif isinstance(value, list) and all(
                isinstance(v, (bool, int, float, np.generic)) for v in value):
            out[prefix + name] = np.asarray(value, dtype=np.float64)
    return out


def predictions(estimator, kind, X):
    """What the fitted estimator computes on ``X``: ``predict:<method>`` -> array."""
    out = {}
    if kind == "mixture":
        out["predict"] = estimator.predict(X)
        out["predict_proba"] = estimator.predict_proba(X)
        out["score_samples"] = estimator.score_samples(X)
        out["score"] = np.asarray(estimator.score(X))
        if type(estimator).__name__ == "GaussianMixture":
            out["bic"] = np.asarray(estimator.bic(X))
            out["aic"] = np.asarray(estimator.aic(X))
        else:
            out["elbo"] = np.asarray(estimator.elbo(X))
        if estimator.n_active is not None:
            out["predict_proba_sparse"] = estimator.predict_proba(X, sparse=True).toarray()
        sample_X, sample_y = estimator.sample(7)
        out["sample.X"], out["sample.y"] = sample_X, sample_y
    elif kind == "amortized":
        out["transform"] = estimator.transform(X)
        out["score_samples"] = estimator.score_samples(X, n_samples=8)
        out["score"] = np.asarray(estimator.score(X))
        out["importance_weighted_bound"] = estimator.importance_weighted_bound(
            X[:50], n_samples=20)
        if type(estimator).__name__ == "PPCA":
            out["log_likelihood"] = estimator.log_likelihood(X)
            report = estimator.gap_report(X)
        else:
            # computed as the fixtures' code computed it: psi*'s steps by the 'plain'
            # optimiser and the decoder in the model's dtype, which later code names
            # (its defaults became 'control' and float32); older code has no such
            # arguments and computes so anyway
            accepted = inspect.signature(estimator.gap_report).parameters
            plain = {key: value for key, value in (("optimiser", "plain"),
                                                    ("precision", "model"))
                     if key in accepted}
            report = estimator.gap_report(X[:40], n_importance=20, optimise_steps=5,
                                          n_samples=4, **plain)
        for key, value in report.items():
            out[f"gap_report.{key}"] = np.asarray(value)
    elif kind == "encoder":
        out["predict"] = estimator.predict(X)
        out["predict_proba"] = estimator.predict_proba(X)
        out["score_samples"] = estimator.score_samples(X)
        for key, value in estimator.gap_report(X).items():
            out[f"gap_report.{key}"] = np.asarray(value)
    return {f"predict:{k}": np.asarray(v) for k, v in out.items()}


def outcome(estimator, case, inputs):
    """Fitted attributes and predictions of a fitted estimator (on the first
    ``PREDICT_ROWS`` rows of the case's data: the fitted attributes determine the rest)."""
    result = fitted_attributes(estimator)
    X = inputs.X({"array": case["predict_on"]})[:PREDICT_ROWS]
    result.update(predictions(estimator, case["kind"], X))
    return result


class StopFit(Exception):
    """Raised by the callback that interrupts a fit to leave a mid-fit checkpoint."""


def interrupted_fit(case, inputs, path, stop):
    """Fit the case with a Checkpointer, stopped after ``stop`` chunks (mixtures) or
    epochs (VAE, PPCA); the checkpoint holds the state the Checkpointer wrote last."""
    estimator = build(case)
    meta = {"class": case["class"], "params": estimator.get_params(), "case": case["name"]}
    checkpointer = fastvi.Checkpointer(path, every_seconds=0, keep=True, meta=meta)
    seen = []
    if case["kind"] == "mixture":
        def callback(record):
            if record["event"] == "chunk":
                seen.append(record)
                if len(seen) == stop:
                    raise StopFit
        extra = {"callback": callback, "checkpoint": checkpointer}
    else:
        def checkpoint(state, force=False):
            checkpointer(state, force=force)
            seen.append(state)
            if len(seen) == stop:
                raise StopFit
        extra = {"checkpoint": checkpoint}
    try:
        run_calls(estimator, case, inputs, **extra)
    except StopFit:
        pass
    else:
        raise AssertionError(f"{case['name']}: the fit ended before {stop} chunks")


def resume(case, state, meta, inputs):
    """Resume a checkpoint as the API does: the estimator rebuilt from the checkpoint's
    meta, ``fit(X, ..., resume=state)`` with the case's data and weights; with
    ``checkpoint=False``, so that the fixture file is never written (a resumed fit goes
    on checkpointing to the file it was read from, and removes it when it ends)."""
    estimator = getattr(fastvi, meta["class"])(**meta["params"])
    run_calls(estimator, case, inputs, resume=state, checkpoint=False)
    return estimator


def same(a, b):
    if a.keys() != b.keys():
        return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
               and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


# ----------------------------------------------------------------------------- main

def versions():
    import h5py
    import numba
    import scipy
    import sklearn
    return {"fastvi": fastvi.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "scikit-learn": sklearn.__version__,
            "h5py": h5py.__version__, "python": sys.version.split()[0]}


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    for sub in ("models", "checkpoints"):
        shutil.rmtree(os.path.join(outdir, sub), ignore_errors=True)
        os.makedirs(os.path.join(outdir, sub))
    data = make_data()
    np.savez_compressed(os.path.join(outdir, "data.npz"), **data)
    all_cases = cases()
    by_name = {case["name"]: case for case in all_cases}
    assert len(by_name) == len(all_cases), "case names must be unique"
    results, estimators = {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        inputs = Inputs(data, workdir)
        try:
            # (a) fits
            for case in all_cases:
                estimator = build(case)
                case["warnings"] = run_calls(estimator, case, inputs)
                estimators[case["name"]] = estimator
                for key, value in outcome(estimator, case, inputs).items():
                    results[f"{case['name']}/{key}"] = value
                inputs.close()
            # (b) model files
            models, model_specs = {}, []
            for filename, name in MODELS:
                case = by_name[name]
                path = os.path.join(outdir, "models", filename)
                estimators[name].save(path)
                loaded = fastvi.load(path)
                for key, value in outcome(loaded, case, inputs).items():
                    models[f"{filename}/{key}"] = value
                model_specs.append({"file": f"models/{filename}", "case": name,
                                    "class": type(loaded).__name__, "kind": case["kind"],
                                    "predict_on": case["predict_on"]})
            # (c) checkpoints
            checkpoints, checkpoint_specs = {}, []
            for name, case_name, stop in CHECKPOINTS:
                case = by_name[case_name]
                path = os.path.join(outdir, "checkpoints", f"{name}.ckpt")
                interrupted_fit(case, inputs, path, stop)
                inputs.close()
                state, meta = fastvi.load_checkpoint(path)
                where = {key: int(getattr(state, key)) for key in
                         ("n_pass", "position", "step", "epochs") if hasattr(state, key)}
                resumed = resume(case, state, meta, inputs)
                got = outcome(resumed, case, inputs)
                inputs.close()
                uninterrupted = {k.split("/", 1)[1]: v for k, v in results.items()
                                 if k.startswith(case_name + "/")}
                identical = same(got, uninterrupted)
                if not identical:
                    print(f"warning: {name}: the resumed fit differs from the uninterrupted "
                          "one", file=sys.stderr)
                for key, value in got.items():
                    checkpoints[f"{name}/resumed/{key}"] = value
                for key, value in uninterrupted.items():
                    if not key.startswith("predict:"):     # the attributes decide those
                        checkpoints[f"{name}/uninterrupted/{key}"] = value
                checkpoint_specs.append({
                    "name": name, "file": f"checkpoints/{name}.ckpt", "case": case_name,
                    "class": case["class"], "kind": case["kind"], "stop_after": stop,
                    "state": where, "resumed_equals_uninterrupted": identical,
                    "how": "state, meta = fastvi.load_checkpoint(file); "
                           "est = getattr(fastvi, meta['class'])(**meta['params']); "
                           "est.<calls of the case>(X, sample_weight=..., X_val=..., "
                           "resume=state)"})
        finally:
            inputs.close()
    np.savez_compressed(os.path.join(outdir, "results.npz"), **results)
    np.savez_compressed(os.path.join(outdir, "models.npz"), **models)
    np.savez_compressed(os.path.join(outdir, "checkpoints.npz"), **checkpoints)
    spec = {"format": 1, "written_by": versions(),
            "seed": SEED, "data": {k: [list(v.shape), v.dtype.str] for k, v in data.items()},
            "cases": all_cases, "models": model_specs, "checkpoints": checkpoint_specs}
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump(spec, f, indent=1, sort_keys=False)
        f.write("\n")
    return spec


def largest_difference(got, expected):
    """The largest difference between the float attributes of ``expected`` and ``got``,
    relative to each array's largest magnitude (0.0: the same bits; inf: not comparable)."""
    largest = 0.0
    for key, want in expected.items():
        have = got.get(key)
        if have is None or have.shape != want.shape:
            return float("inf")
        if want.dtype.kind != "f" or want.size == 0:
            if not np.array_equal(have, want):
                return float("inf")
            continue
        scale = float(np.nanmax(np.abs(want))) or 1.0
        with np.errstate(invalid="ignore"):
            diff = np.atleast_1d(np.abs(have.astype(np.float64) - want))
        diff[np.atleast_1d(np.isnan(have) & np.isnan(want))] = 0.0
        largest = max(largest, float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) / scale)
    return largest


def has_avx512():
    """Whether this x86-64 CPU has AVX-512 (Linux: /proc/cpuinfo's flags)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return any(line.startswith("flags") and " avx512f" in line for line in fh)
    except OSError:
        return False


def refit(outdir, reason, case_names):
    """Rewrite, with today's code, the results of the fits ``case_names`` (a), of
    loading their model files (b) and of resuming every checkpoint file (c), keeping the
    data, the model files and the checkpoint files that the old code wrote: for a change
    that moves fitted bits on purpose.  Each rewritten entry records ``refitted``: the
    reason, the versions, and whether this CPU has AVX-512 (the tests compare bit for bit
    only on a CPU of the same SIMD width; see tests/test_legacy.py).  A checkpoint whose
    results come out the same bits as before keeps its entry and its stamp."""
    with open(os.path.join(outdir, "cases.json")) as f:
        spec = json.load(f)
    with np.load(os.path.join(outdir, "data.npz")) as f:
        data = {key: f[key] for key in f.files}
    with np.load(os.path.join(outdir, "results.npz")) as f:
        results = {key: f[key] for key in f.files}
    with np.load(os.path.join(outdir, "models.npz")) as f:
        models = {key: f[key] for key in f.files}
    with np.load(os.path.join(outdir, "checkpoints.npz")) as f:
        old_checkpoints = {key: f[key] for key in f.files}
    by_name = {case["name"]: case for case in spec["cases"]}
    unknown = sorted(set(case_names) - set(by_name))
    if unknown:
        sys.exit(f"no such case: {', '.join(unknown)}")
    stamp = {"reason": reason, "written_by": versions(), "avx512": has_avx512()}
    checkpoints = {}
    with tempfile.TemporaryDirectory() as workdir:
        inputs = Inputs(data, workdir)
        try:
            for name in case_names:
                case = by_name[name]
                estimator = build(case)
                case["warnings"] = run_calls(estimator, case, inputs)
                results = {k: v for k, v in results.items() if not k.startswith(name + "/")}
                for key, value in outcome(estimator, case, inputs).items():
                    results[f"{name}/{key}"] = value
                case["refitted"] = stamp
                inputs.close()
            for model in spec["models"]:
                if model["case"] not in case_names:
                    continue
                filename = os.path.basename(model["file"])
                loaded = fastvi.load(os.path.join(outdir, model["file"]))
                models = {k: v for k, v in models.items() if not k.startswith(filename + "/")}
                for key, value in outcome(loaded, by_name[model["case"]], inputs).items():
                    models[f"{filename}/{key}"] = value
                model["refitted"] = stamp
                inputs.close()
            for ckpt in spec["checkpoints"]:
                case = by_name[ckpt["case"]]
                state, meta = fastvi.load_checkpoint(os.path.join(outdir, ckpt["file"]))
                got = outcome(resume(case, state, meta, inputs), case, inputs)
                inputs.close()
                uninterrupted = {k.split("/", 1)[1]: v for k, v in results.items()
                                 if k.startswith(case["name"] + "/")}
                entries = {f"{ckpt['name']}/resumed/{key}": value
                           for key, value in got.items()}
                entries.update({f"{ckpt['name']}/uninterrupted/{key}": value
                                for key, value in uninterrupted.items()
                                if not key.startswith("predict:")})
                before = {k: v for k, v in old_checkpoints.items()
                          if k.startswith(ckpt["name"] + "/")}
                checkpoints.update(entries)
                if same(entries, before):
                    continue
                ckpt["resumed_equals_uninterrupted"] = same(got, uninterrupted)
                ckpt["resumed_differs_by"] = largest_difference(got, uninterrupted)
                ckpt["refitted"] = stamp
        finally:
            inputs.close()
    np.savez_compressed(os.path.join(outdir, "results.npz"), **results)
    np.savez_compressed(os.path.join(outdir, "models.npz"), **models)
    np.savez_compressed(os.path.join(outdir, "checkpoints.npz"), **checkpoints)
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump(spec, f, indent=1, sort_keys=False)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--refit":
        # python tests/data/make_legacy_fixtures.py --refit OUTDIR "why" CASE [CASE ...]
        refit(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit("usage: python tests/data/make_legacy_fixtures.py OUTDIR\n"
                 "       python tests/data/make_legacy_fixtures.py --refit OUTDIR REASON "
                 "CASE [CASE ...]")
