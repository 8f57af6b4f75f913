"""``fastvi predict`` and ``fastvi score``: a fitted mixture over a data file, chunk by
chunk (``predict_to_h5``, ``score_chunks``).

With ``--scheduler`` or ``--workers`` the model runs on a Dask backend
(``jobs.cluster_backend``): the workers read the rows and compute the per-row outputs,
one task a chunk, and the outputs come back here, where the one output file is written
(atomically, as on one machine: an HDF5 file has no safe concurrent writers without MPI).
The values are the same bits as on one machine.

The model is read by ``fastvi.io.model``, which loads the estimators (and so
scikit-learn and Numba) only when a command reads one.
"""
import os
from contextlib import contextmanager

import numpy as np

from .. import __version__
from ..data.atomic import atomic_h5, check_writable
from ..data.files import open_source
from ..io.model import load_model
from .jobs import about as _about
from .jobs import cluster_backend as _cluster_backend
from .jobs import cluster_option as _cluster_option
from .jobs import progress_bar as _progress
from .jobs import spec_path as _spec_path
from .paths import check_paths as _check_paths

PREDICT_CHUNK_ROWS = 65536


def _check_model_data(model, model_path, X, label):
    if X.shape[1] != model.n_features_in_:
        raise ValueError(f"{label} has {X.shape[1]} features, but the model in "
                         f"{model_path!r} was fitted on {model.n_features_in_}")


def _as_chunk_source(X, chunk_rows):
    from ..data.sources import as_source
    return as_source(X, chunk_rows=chunk_rows)


def _check_chunk_memory(source, n_components, chunk_rows, float32_resp=False, **outputs):
    """Refuse a ``chunk_rows`` whose chunks and their per-row outputs cannot fit in memory.

    A size beyond the data is no error: a chunk holds at most the data's rows
    (``max_chunk_rows``), so ``--chunk-size 10**12`` reads them in one chunk.
    ``float32_resp``: the responsibilities are also converted to float32 for the file.
    """
    from ..mixture.sizes import check_outputs
    rows = source.max_chunk_rows
    extra = source.buffer_bytes() + (rows * n_components * 4 if float32_resp else 0)
    check_outputs(rows, n_components, f"chunk_rows (--chunk-size) {chunk_rows}", extra,
                  **outputs)


def predict_to_h5(model, X, output, proba=False, chunk_rows=PREDICT_CHUNK_ROWS, attrs=None,
                  top=None, whole=False, impute=False):
    """Write ``/labels`` (int32) and optionally ``/resp`` (float32) of ``X`` to ``output``;
    with ``top`` = L, ``/top_index`` (int32) and ``/top_resp`` (float32), (n, L): each row's
    L most probable components and their responsibilities renormalised over them (the
    layout for large K, where ``/resp`` would be N x K); with ``impute``, ``/imputed``
    (n, D) in the data's dtype: the rows with each NaN replaced by E[x_m | x_o]
    (``impute``).

    ``X`` is a chunk source (``fastvi.io.open_source``), an h5py dataset or an array; its
    chunks are read ahead in a thread while the previous one is predicted, into
    pre-created datasets.  The file appears (atomically) only when every chunk is done.

    ``whole=True`` asks the model for the outputs of the whole source at once (in one
    pass of its backend: a Dask backend runs its chunks as parallel tasks on the workers,
    which read the rows themselves) and writes them here; the client then holds the
    outputs of every row (8 bytes a row, 8 K more with ``proba``, 12 L with ``top`` = L)
    but never a row of data.
    """
    source = _as_chunk_source(X, chunk_rows)
    n_rows, n_components = source.n_rows, model.means_.shape[0]
    chunk = min(source.chunk_rows, n_rows)
    if not whole:       # (the model checks the outputs of all rows itself)
        _check_chunk_memory(source, n_components, chunk_rows, float32_resp=proba, labels=1,
                            resp=proba, top=min(int(top or 0), n_components))
    with atomic_h5(output, "the predict output") as out:
        out.attrs.update(attrs or {})
        labels = out.create_dataset("labels", (n_rows,), dtype=np.int32, chunks=(chunk,))
        resp = (out.create_dataset("resp", (n_rows, n_components), dtype=np.float32,
                                   chunks=(chunk, n_components)) if proba else None)
        if top is not None:
            top = min(int(top), n_components)
            top_index = out.create_dataset("top_index", (n_rows, top), dtype=np.int32,
                                           chunks=(chunk, top))
            top_resp = out.create_dataset("top_resp", (n_rows, top), dtype=np.float32,
                                          chunks=(chunk, top))
        imputed = (out.create_dataset("imputed", (n_rows, source.n_features),
                                      dtype=source.dtype, chunks=(chunk, source.n_features))
                   if impute else None)
        if whole:
            # one pass over the rows for every output (the estimator's own per-row call)
            outputs = model._per_row(source, labels=True, resp=proba, top=top or 0)
            for start, stop in source.chunk_bounds():
                labels[start:stop] = outputs["labels"][start:stop]
                if resp is not None:
                    resp[start:stop] = outputs["resp"][start:stop]
                if top is not None:
                    top_index[start:stop] = outputs["top_index"][start:stop]
                    top_resp[start:stop] = outputs["top_resp"][start:stop]
            if imputed is not None:
                filled = model.impute(source)
                for start, stop in source.chunk_bounds():
                    imputed[start:stop] = filled[start:stop]
            return
        for _, start, rows in _progress(source.chunks(), total=source.n_chunks,
                                        unit="chunk", desc="predict"):
            stop = start + rows.shape[0]
            labels[start:stop] = model.predict(rows)
            if resp is not None:
                resp[start:stop] = model.predict_proba(rows)
            if top is not None:
                top_index[start:stop], top_resp[start:stop] = model.top_responsibilities(
                    rows, top)
            if imputed is not None:
                imputed[start:stop] = model.impute(rows)


def cmd_predict(args):
    # The output replaces its path only at the end, after the inputs were read: naming an
    # input as the output would silently destroy it.
    _check_paths([("the model", args.model), ("the data", _spec_path(args.data))],
                 [("the predict output", args.output)])
    check_writable(args.output, "the predict output")      # before the work, not after
    model = load_model(args.model)
    if args.impute:     # the labels of incomplete rows from their observed entries too
        model.set_params(missing="marginalize")
    source = _open_data(args, model)
    with source as X, _about(source.label):
        _check_model_data(model, args.model, X, source.label)
        n_rows = X.n_rows
        with _on_cluster(args, model) as whole:
            predict_to_h5(model, X, args.output, proba=args.proba,
                          chunk_rows=args.chunk_size,
                          attrs={"model": os.path.abspath(args.model), "data": source.label,
                                 "fastvi_version": __version__}, top=args.top, whole=whole,
                          impute=args.impute)
    what = "/labels" + (", /resp" if args.proba else "") + (
        ", /top_index and /top_resp" if args.top else "") + (
        ", /imputed" if args.impute else "")
    print(f"wrote {what} of {n_rows} rows to {args.output}")
    return 0


def _open_data(args, model):
    """The DATA of ``predict`` / ``score``.  On a cluster in the model's working dtype, if
    it has one: the workers' tasks get the rows as the source reads them, where on one
    machine the estimator converts each chunk it is given."""
    dtype = getattr(model, "dtype", None) if _cluster_option(args) else None
    source = open_source(args.data, chunk_rows=args.chunk_size, dtype=dtype)
    source.allow_nan = getattr(model, "missing", "error") == "marginalize"
    return source


@contextmanager
def _on_cluster(args, model):
    """Run ``model`` on the backend of ``--backend``, ``--scheduler`` or ``--workers`` for
    the block; yields whether it is a Dask backend (then the outputs are asked for the
    whole source at once; the GPU, like the local backend, takes them chunk by chunk)."""
    with _cluster_backend(args) as backend:
        if backend is None:
            yield False
            return
        model.set_params(backend=backend)
        try:
            yield backend.name == "dask"
        finally:
            model.set_params(backend="local")


def score_chunks(model, X, chunk_rows=PREDICT_CHUNK_ROWS, whole=False):
    """Total and mean of ``model.score_samples`` over ``X`` (a chunk source, an h5py
    dataset or an array), read ``chunk_rows`` at a time (HDF5: aligned, read ahead).

    Returns
    -------
    mean, total : float
    """
    source = _as_chunk_source(X, chunk_rows)
    total = 0.0
    if not whole:
        _check_chunk_memory(source, model.means_.shape[0], chunk_rows, log_norm=True)
    if whole:
        # the per-row values of the whole source in one pass of the backend, summed by
        # chunk as below: the same bits
        values = model.score_samples(source)
        for start, stop in source.chunk_bounds():
            total += float(values[start:stop].sum())
        return total / source.n_rows, total
    for _, _, rows in source.chunks():
        total += float(model.score_samples(rows).sum())
    return total / source.n_rows, total


def cmd_score(args):
    model = load_model(args.model)
    source = _open_data(args, model)
    with source as X, _about(source.label):
        _check_model_data(model, args.model, X, source.label)
        with _on_cluster(args, model) as whole:
            mean, total = score_chunks(model, X, args.chunk_size, whole=whole)
        n_rows = X.n_rows
    what = ("log-likelihood" if type(model).__name__ == "GaussianMixture"
            else "log sum_k rho_nk (the per-row ELBO term)")
    print(f"score  {mean!r}  (mean {what} per row)")
    print(f"total  {total!r}  over {n_rows} rows of {source.label}")
    return 0
