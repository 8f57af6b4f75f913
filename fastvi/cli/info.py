"""``fastvi info``: describe a model (mixture or amortized), HDF5 or .npy file.

On a data file (HDF5 or .npy) it loads neither the estimators nor Numba nor scikit-learn;
a model file is read by building its estimator, which does.
"""
import json
import os

import numpy as np

from ..data.files import check_regular_file, list_datasets, open_h5
from ..io.model import get_params, is_model_file, load_model
from .amortized import info_lines as amortized_info, is_amortized_file

def _info_model(path):
    model = load_model(path)
    with open_h5(path) as f:
        header = {key: f.attrs[key] for key in ("format_version", "fastvi_version")}
    params, arrays = get_params(model)
    status = "converged" if model.converged_ else "not converged"
    lines = [f"{path}: fastvi model (format_version {header['format_version']}, written by "
             f"fastvi {header['fastvi_version']})",
             f"class        {type(model).__name__}",
             f"params       {json.dumps(params, sort_keys=True)}",
             f"n_features   {model.n_features_in_}",
             f"K            {model.means_.shape[0]}",
             f"iterations   {model.n_iter_} ({status})",
             f"lower bound  {model.lower_bound_:.6f} per row",
             "weights      " + " ".join(f"{w:.4f}" for w in model.weights_)]
    if arrays:
        lines.insert(3, f"param arrays {', '.join(sorted(arrays))}")
    return lines


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
        lines = amortized_info(path)
    else:
        lines = _info_h5(path)
    print("\n".join(lines))
    return 0
