"""What a command's files may be: no output over an input or over another output
(``check_paths``), and no generated file over a file that fastvi did not generate
(``check_replaceable``, for ``make-data`` and ``demo --out``).

Every command that writes calls these before any work, so that one mistyped path
(``--log DATA.h5``, ``--support-file ROWS.npy``, ``-o`` the checkpoint) is one error line
and never a destroyed file.  Like ``jobs`` it imports no heavy layer at its top.
"""
import os

from ..data.atomic import same_file


def check_paths(inputs=(), outputs=()):
    """Refuse, before any work, an output that would replace an input or another output.

    Every command calls it with all its files, so that one mistyped path (``--log
    DATA.h5``, ``--support-file ROWS.npy``, ``-o`` the checkpoint) is one error line and
    never a destroyed file.

    Parameters
    ----------
    inputs, outputs : iterable of (str, path or None)
        How a message names the file (``"the data"``, ``"the log"``) and its path; a path
        of None (an output not asked for) is skipped.

    Raises
    ------
    ValueError
        Naming both files of the first clash.
    """
    inputs = [(what, os.fspath(path)) for what, path in inputs if path is not None]
    outputs = [(what, os.fspath(path)) for what, path in outputs if path is not None]
    for i, (what, path) in enumerate(outputs):
        for input_what, input_path in inputs:
            if same_file(path, input_path):
                raise ValueError(f"{what} {path!r} would overwrite {input_what} "
                                 f"{input_path!r}: give {what} another path")
        for other_what, other in outputs[:i]:
            if same_file(path, other):
                raise ValueError(f"{other_what} {other!r} and {what} {path!r} are one file: "
                                 "give each its own path")


def written_by(path):
    """What wrote the HDF5 file ``path``: the root attribute ``generator`` of a generated
    data set (``fastvi.datasets.write_mixture_h5``) or ``written_by`` of a model (``fastvi
    demo``); None for any other file, or one that is not a readable regular HDF5 file."""
    import h5py
    if not os.path.isfile(path):        # a FIFO would block h5py's open
        return None
    try:
        if not h5py.is_hdf5(path):
            return None
        with h5py.File(path, "r") as f:
            value = f.attrs.get("generator", f.attrs.get("written_by"))
    except (OSError, RuntimeError):
        return None
    return value.decode() if isinstance(value, bytes) else value


def check_replaceable(path, what, writers, force=False):
    """Commands that create files (``make-data``, ``demo``) replace an existing ``path``
    only if one of ``writers`` wrote it (data that the same command can make again), or
    with ``--force``: never a user's own file without a word.

    Raises
    ------
    ValueError
        Naming the file, what it is not, and ``--force``.
    """
    if force or not os.path.lexists(path) or os.path.isdir(path):
        return              # a directory in the way is check_writable's error
    if written_by(path) in writers:
        return
    raise ValueError(f"{what} {os.fspath(path)!r} exists and was not written by fastvi "
                     "(it may be your own file): choose another path, remove it, or add "
                     "--force to replace it")
