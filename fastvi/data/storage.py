"""HDF5 datasets whose values live in other files: refused when those files are gone or
short, before any read (``check_storage``, called by ``sources.HDF5Source``).

HDF5 reads the missing parts of such a dataset without a word: a virtual dataset's missing
source as its fill value, a short external file as zeros.  Rows read so would fit, but
they are not the data.

This module imports nothing from fastvi.
"""
import os

import numpy as np


def check_storage(dataset, label):
    """Refuse an HDF5 dataset whose values live in other files that are gone or short.

    HDF5 reads the missing parts of such a dataset without a word: a virtual dataset's
    missing source as its fill value (0 by default: rows that fit, but are not the
    data), a short external file as zeros.  So, before any read:

    * a virtual dataset: each source file must be a regular file where HDF5 looks for it
      (``HDF5_VDS_PREFIX``, the folder of the virtual dataset's file, the working
      directory) and hold the source dataset;
    * external storage (the raw values in other files): each file must be a regular file
      (``HDF5_EXTFILE_PREFIX``, else the working directory, as HDF5 looks) and hold the
      bytes the dataset needs.

    Raises
    ------
    ValueError
        Naming ``label``, the file HDF5 would read, and what is wrong with it.
    """
    if dataset.is_virtual:
        for source in dataset.virtual_sources():
            _check_virtual_source(dataset, label, source.file_name, source.dset_name)
        return
    plist = dataset.id.get_create_plist()
    needed = int(np.prod(dataset.shape)) * dataset.dtype.itemsize
    for i in range(plist.get_external_count()):
        name, offset, size = plist.get_external(i)
        take = min(size, needed)
        needed -= take
        if take:
            _check_external_file(dataset, label, os.fsdecode(name), offset + take)


def _check_virtual_source(dataset, label, name, dset_name):
    """The source ``dset_name`` in file ``name`` of a virtual dataset must be there."""
    import h5py
    if "%" in name:
        return          # a printf-style pattern of an unlimited mapping: not one file
    if name == ".":     # a source in the same file
        path, found = dataset.file.filename, dataset.file.get(dset_name)
    else:
        home = os.path.dirname(os.path.abspath(dataset.file.filename))
        path = _vds_source_path(name, home)
        if path is None:
            raise ValueError(f"{label} is a virtual dataset whose source file {name!r} "
                             f"is missing (looked for it in {home!r} and the working "
                             "directory): HDF5 would read the fill value in place of its "
                             "rows; put the file back, or point at the real data")
        try:
            with h5py.File(path, "r") as f:
                found = f.get(dset_name)
        except OSError as exc:
            raise ValueError(f"{label} is a virtual dataset whose source {path!r} is not a "
                             f"readable HDF5 file ({exc})") from None
    if not isinstance(found, h5py.Dataset):
        raise ValueError(f"{label} is a virtual dataset whose source dataset "
                         f"{dset_name!r} is missing from {path!r}: HDF5 would read the "
                         "fill value in place of its rows")


def _vds_source_path(name, home):
    """Where HDF5 finds the source file ``name`` of a virtual dataset in the folder
    ``home`` (H5F_prefix_open_file's order), if it is a regular file there; else None."""
    if os.path.isabs(name):
        if os.path.isfile(name):
            return name
        name = os.path.basename(name)
    prefixes = [p.replace("${ORIGIN}", home)
                for p in os.environ.get("HDF5_VDS_PREFIX", "").split(":") if p]
    for folder in prefixes + [home, ""]:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _check_external_file(dataset, label, name, end):
    """The external file ``name`` of ``dataset`` must be a regular file of ``end`` bytes
    or more.  HDF5 opens it relative to ``HDF5_EXTFILE_PREFIX`` (``${ORIGIN}``: the
    folder of the HDF5 file), else to the working directory."""
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX", "")
    path = name
    if prefix not in ("", ".") and not os.path.isabs(name):
        home = os.path.dirname(os.path.abspath(dataset.file.filename))
        path = os.path.join(prefix.replace("${ORIGIN}", home), name)
    where = f"{label} keeps its values in the external file {path!r}"
    if not os.path.exists(path):
        raise ValueError(f"{where}, which does not exist (HDF5 looks for it relative to "
                         "the working directory, or HDF5_EXTFILE_PREFIX): put it back, or "
                         "store the rows in the HDF5 file itself")
    if not os.path.isfile(path):
        raise ValueError(f"{where}, which is not a regular file")
    size = os.path.getsize(path)
    if size < end:
        raise ValueError(f"{where}, which holds {size} bytes where the dataset needs {end} "
                         "(truncated?): HDF5 would read the missing values as zeros")
