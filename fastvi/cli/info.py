"""``fastvi info``: describe a model (mixture or amortized), HDF5 or .npy file.

It reads what it shows from the file (its attributes and datasets) and builds no
estimator, so on any file it loads neither the estimators nor Numba nor scikit-learn
(``tests/test_cli_startup.py``): a model file's summary takes a tenth of a second, not
the seconds of those imports.
"""
import json
import os

import numpy as np

from ..data.files import check_regular_file, list_datasets, open_h5
from ..io.amortized import FORMAT as AMORTIZED, describe_amortized
from ..io.model import describe_model, is_model_file
from .amortized import is_amortized_file


def _info_model(path):
    """The summary of a mixture model file.  Its params are those the file stores: for a
    file written by this fastvi, all of its class's; an older file lacks the parameters
    added since (its model gets their defaults when loaded)."""
    model = describe_model(path)
    status = "converged" if model["converged_"] else "not converged"
    lines = [f"{path}: fastvi model (format_version {model['format_version']}, written by "
             f"fastvi {model['fastvi_version']})",
             f"class        {model['class']}",
             f"params       {json.dumps(model['params'], sort_keys=True)}",
             f"n_features   {model['n_features_in_']}",
             f"K            {model['means_'].shape[0]}",
             f"iterations   {model['n_iter_']} ({status})",
             f"lower bound  {model['lower_bound_']:.6f} per row",
             "weights      " + " ".join(f"{w:.4f}" for w in model["weights_"])]
    if model["param_arrays"]:
        lines.insert(3, f"param arrays {', '.join(model['param_arrays'])}")
    return lines


def _info_amortized(path):
    """The summary of an amortized (VAE, PPCA) model file."""
    model = describe_amortized(path)
    params, history = model["params"], model["elbo_history_"]
    ppca = model["class"] == "PPCA"
    likelihood = "gaussian" if ppca else params.get("likelihood", "gaussian")
    widths = {name: "-".join(str(w) for w in params.get(f"{name}_hidden") or ()) or "linear"
              for name in ("encoder", "decoder")}
    inference = params.get("inference", "amortized") + (
        "" if model["encoder"] else f" ({model['psi_rows']} rows of psi)")
    return [f"{path}: fastvi amortized model (format {AMORTIZED}, format_version "
            f"{model['format_version']})",
            f"class        {model['class']}",
            f"n_latent     {params.get('n_latent')}",
            f"n_features   {model['n_features_in_']}",
            f"inference    {inference}"
            + (f", encoder {widths['encoder']}" if model["encoder"] else "")
            + ("" if ppca else f", decoder {widths['decoder']}"),
            f"likelihood   {likelihood}, variance {np.exp(model['log_variance_']):.6g}"
            if likelihood == "gaussian" else f"likelihood   {likelihood}",
            f"epochs       {len(history)}",
            f"final ELBO   {history[-1]:.6f} per row" if history else "final ELBO   -"]


def _info_h5(path):
    lines = [f"{path}: HDF5 file"]
    with open_h5(path) as f:
        for key, value in f.attrs.items():
            lines.append(f"  @{key} = {value}")
        for name in list_datasets(f):
            dset = f[name]
            extra = f", chunks {dset.chunks}" if dset.chunks else ", contiguous"
            if dset.compression:
                extra += f", {dset.compression}"
            lines.append(f"  {name}  shape {dset.shape}, {dset.dtype}{extra}")
    return lines


def cmd_info(args):
    path = args.path
    if not os.path.exists(path):
        raise FileNotFoundError(f"file {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a file")
    check_regular_file(path)            # the open below would wait on a FIFO
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY" or path.lower().endswith(".npy"):
        # Not open_data: info describes any .npy file, even one fastvi would not fit.
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"cannot read {path!r} as a .npy file: {exc}") from None
        lines = [f"{path}: NumPy file", f"  shape {X.shape}, {X.dtype}"]
    elif is_model_file(path):
        lines = _info_model(path)
    elif is_amortized_file(path):
        lines = _info_amortized(path)
    else:
        lines = _info_h5(path)
    print("\n".join(lines))
    return 0
