"""The data layer: where rows come from and how files are written.

* ``sources``: chunk sources (an ndarray, an HDF5 dataset read ahead in a thread, several
  files as one data set), the only way any layer above reads rows;
* ``checks``: validation of estimator inputs and parameters, with errors that name them;
* ``files``: opening data files by a spec string (``file.h5:/X``, ``rows.npy``);
* ``atomic``: writes that appear whole or not at all (every output of fastvi);
* ``generate``: the fixed-seed mixture data sets of the demo, tests and benchmarks;
* ``storage``: HDF5 datasets whose values live in other files (virtual, external),
  refused when those files are gone or short;
* ``memory``: sizes checked against this machine's memory before they are allocated;
* ``interrupts``: SIGINT and SIGTERM, stopping at safe points (the fit loop, every
  command).

Imports: NumPy, h5py and scikit-learn's validation only; nothing of fastvi above it.
"""
